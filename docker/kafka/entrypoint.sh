#!/bin/sh
# A single-node KRaft broker configured like apache/kafka: defaults below, then every
# KAFKA_<NAME> variable as a property (`_` -> `.`, `__` -> `_`, `___` -> `-`, lower case);
# KAFKA_HEAP_OPTS and KAFKA_OPTS are JVM options, CLUSTER_ID the cluster id (random if unset).
set -euf  # -f: the classpath wildcard is for java, not the shell
CONF=/opt/kafka/config/server.properties
JAVA="java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} -XX:+UseG1GC ${KAFKA_OPTS:-}"
JAVA="$JAVA -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties -cp /opt/kafka/libs/*"

cat > "$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
advertised.listeners=PLAINTEXT://localhost:9092
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=/var/lib/kafka/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
env | while IFS= read -r line; do
    name=${line%%=*}
    case "$name" in
        KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_VERSION) continue ;;
        KAFKA_[A-Z]*) ;;
        *) continue ;;
    esac
    key=$(printf '%s' "${name#KAFKA_}" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' \
          | tr 'A-Z' 'a-z')
    printf '%s=%s\n' "$key" "${line#*=}" >> "$CONF"
done

data=$(sed -n 's/^log\.dirs=//p' "$CONF" | tail -n 1 | cut -d, -f1)
if [ ! -f "$data/meta.properties" ]; then
    # a random Kafka Uuid (what `StorageTool random-uuid` prints: 16 bytes, base64url)
    # without a JVM start of its own
    random=$(head -c 16 /dev/urandom | base64 | tr -- '+/' '-_' | tr -d '=')
    cluster=${CLUSTER_ID:-$random}
    $JAVA -XX:TieredStopAtLevel=1 kafka.tools.StorageTool format -t "$cluster" -c "$CONF" \
        >/dev/null
    echo "[kafka] storage formatted in $data (cluster $cluster)"
fi
# shellcheck disable=SC2086
exec $JAVA kafka.Kafka "$CONF"
