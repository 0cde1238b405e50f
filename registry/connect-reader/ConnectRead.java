// A Kafka Connect-style consumer of the replicator's records: Apicurio's Kafka Connect
// AvroConverter (the same AvroData conversion Confluent's converter does) in its
// Confluent-compatible mode turns each record's bytes into Connect data, as a sink
// connector would receive them. Used by tests/integration/test_schema_registry.py.
//
//   java -cp 'libs/*' ConnectRead.java <registry v2 API URL> <topic> < records
//
// stdin: one record a line, "<key base64> <value base64 or ->"; stdout: one JSON object a
// line with the Connect schema names and the values as Connect converts them.
import io.apicurio.registry.utils.converter.AvroConverter;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.data.Struct;

public class ConnectRead {
    static AvroConverter converter(String url, boolean isKey) {
        Map<String, Object> conf = new HashMap<>();
        conf.put("apicurio.registry.url", url);
        conf.put("apicurio.registry.as-confluent", "true"); // magic byte + 4-byte id
        conf.put("apicurio.registry.use-id", "contentId");  // the ids ccompat hands out
        conf.put("apicurio.registry.headers.enabled", "false");
        AvroConverter c = new AvroConverter();
        c.configure(conf, isKey);
        return c;
    }

    static String json(Object v) {
        if (v == null) return "null";
        if (v instanceof Struct) {
            Struct s = (Struct) v;
            StringBuilder b = new StringBuilder("{");
            for (Field f : s.schema().fields()) {
                if (b.length() > 1) b.append(',');
                b.append(json(f.name())).append(':').append(json(s.get(f)));
            }
            return b.append('}').toString();
        }
        if (v instanceof CharSequence) { // String, or Avro's Utf8 where Connect passes it on
            String s = v.toString();
            StringBuilder b = new StringBuilder("\"");
            for (char ch : s.toCharArray()) {
                if (ch == '"' || ch == '\\') b.append('\\').append(ch);
                else if (ch < 0x20 || ch > 0x7e) b.append(String.format("\\u%04x", (int) ch));
                else b.append(ch);
            }
            return b.append('"').toString();
        }
        return String.valueOf(v);
    }

    static String describe(SchemaAndValue sv) {
        Schema s = sv.schema();
        return "{\"schema_name\":" + json(s == null ? null : s.name())
            + ",\"schema_type\":" + json(s == null ? null : s.type().toString())
            + ",\"value\":" + json(sv.value()) + "}";
    }

    public static void main(String[] args) throws Exception {
        AvroConverter keys = converter(args[0], true), values = converter(args[0], false);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        Base64.Decoder b64 = Base64.getDecoder();
        for (String line; (line = in.readLine()) != null; ) {
            String[] kv = line.trim().split(" ");
            SchemaAndValue k = keys.toConnectData(args[1], b64.decode(kv[0]));
            SchemaAndValue v = kv[1].equals("-") ? SchemaAndValue.NULL
                : values.toConnectData(args[1], b64.decode(kv[1]));
            System.out.println("{\"key\":" + describe(k) + ",\"value\":" + describe(v) + "}");
        }
    }
}
