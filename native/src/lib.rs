//! dynamodb_wire: one pass from a DynamoDB GetRecords / Scan response body to the
//! Kafka (key, value) bytes of app.domain.envelope.Encoder, in its "native" or "seed"
//! format.  app/fastwire.py is the only caller and holds the contract:
//!
//! * a page this parser cannot take as a whole (not strict JSON, repeated top-level
//!   names, deeper than json::MAX_DEPTH, a number orjson might read otherwise ...)
//!   returns None: the caller runs the Python reference over the whole body;
//! * a record or item it cannot encode exactly as the reference would is *refused*:
//!   its index and byte span are returned and the caller encodes it the reference way
//!   (which returns the same bytes, or raises the CodecError the dead-letter needs);
//! * a panic (a bug) refuses the page or record the same way: never an exception.

mod codec;
mod json;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use bumpalo::Bump;
use codec::{escape, key_value, plain_map, v1_map, write_str};
use json::{get, Parser, Str, Value};

const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// A parsed page: the list's elements with their byte spans and whether they hold a
/// repeated name, and the spans of the other top-level members.
struct Page<'a> {
    elems: Vec<(Value<'a>, usize, usize, bool)>,
    fields: Vec<(String, usize, usize)>,
}

fn parse_page<'a>(body: &'a str, arena: &'a Bump, list: &str) -> Option<Page<'a>> {
    let mut p = Parser::new(body, arena);
    let mut page = Page {
        elems: Vec::new(),
        fields: Vec::new(),
    };
    let mut names: Vec<String> = Vec::new();
    p.eat(b'{').ok()?;
    p.ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            p.ws();
            if p.peek() != Some(b'"') {
                return None;
            }
            let name = p.string().ok()?.text().into_owned();
            if names.contains(&name) {
                return None; // the reference decides which one counts
            }
            p.eat(b':').ok()?;
            p.ws();
            if name == list {
                p.eat(b'[').ok()?; // null or another type: the reference decides
                p.ws();
                if p.peek() == Some(b']') {
                    p.pos += 1;
                } else {
                    loop {
                        p.ws();
                        let start = p.pos;
                        p.dup = false;
                        let v = p.value(2).ok()?;
                        page.elems.push((v, start, p.pos, p.dup));
                        p.ws();
                        match p.peek() {
                            Some(b',') => p.pos += 1,
                            Some(b']') => {
                                p.pos += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
            } else {
                let start = p.pos;
                p.dup = false;
                p.value(1).ok()?;
                if p.dup {
                    return None;
                }
                page.fields.push((name.clone(), start, p.pos));
            }
            names.push(name);
            p.ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b'}') => {
                    p.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    p.ws();
    if p.pos != body.len() {
        return None;
    }
    Some(page)
}

/// int(float(value) * 1000), for a JSON number token.  An integer beyond 19 digits
/// (orjson makes it a float its own way) is left to the reference.
fn ts_ms(token: &str) -> Option<i64> {
    let int_token = !token.contains(['.', 'e', 'E']);
    if int_token && token.trim_start_matches('-').len() > 19 {
        return None;
    }
    let x: f64 = token.parse().ok()?;
    let v = (x * 1000.0).trunc();
    if !v.is_finite() || v.abs() >= 9.0e18 {
        return None;
    }
    Some(v as i64)
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// The Kafka key: key attributes sorted by name (orjson's OPT_SORT_KEYS order is the
/// code point order of the names, which is the byte order of their UTF-8).
fn sorted_key(keys: &[(&Str, &Value)], seed: bool) -> Option<Vec<u8>> {
    let mut order: Vec<(std::borrow::Cow<str>, &Value)> =
        keys.iter().map(|(k, v)| (k.text(), *v)).collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (name, v)) in order.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escape(&mut out, name.as_bytes());
        out.push(b':');
        key_value(&mut out, v, seed)?;
    }
    out.push(b'}');
    Some(out)
}

struct ChangeCtx<'c> {
    seed: bool,
    tombstones: bool,
    table: &'c [u8],
    arn: &'c [u8],
    shard: &'c [u8],
    seed_source: &'c [u8],
}

struct Change {
    key: Vec<u8>,
    tombstone: bool,
    seq: String,
    ts_ms: i64,
    event: &'static str,
    size: i64,
    ttl: bool,
}

type Image<'v, 'a> = Option<&'v [(Str<'a>, Value<'a>)]>;

fn image<'v, 'a>(d: &'v [(Str<'a>, Value<'a>)], name: &str) -> Option<Image<'v, 'a>> {
    match get(d, name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Obj(m)) => Some(Some(*m)),
        _ => None,
    }
}

/// app.aws.dynamodb.to_record + Encoder.change, for one record of a GetRecords body.
/// The value is written into `value` (`doc`: scratch for the seed document), buffers
/// the caller reuses for every record.
fn change(rec: &Value, c: &ChangeCtx, value: &mut Vec<u8>, doc: &mut Vec<u8>) -> Option<Change> {
    value.clear();
    doc.clear();
    let r = rec.obj()?;
    let Value::Str(ev) = get(r, "eventName")? else {
        return None;
    };
    let (op, event) = match &*ev.text() {
        "INSERT" => ("c", "INSERT"),
        "MODIFY" => ("u", "MODIFY"),
        "REMOVE" => ("d", "REMOVE"),
        _ => return None,
    };
    let d = get(r, "dynamodb")?.obj()?;
    let Value::Str(seq) = get(d, "SequenceNumber")? else {
        return None;
    };
    let Value::Num(t) = get(d, "ApproximateCreationDateTime")? else {
        return None;
    };
    let ts = ts_ms(t)?;
    let keys = match get(d, "Keys") {
        Some(Value::Obj(k)) if !k.is_empty() => *k,
        _ => return None, // empty: the reference takes them from the image (key_of)
    };
    let new = image(d, "NewImage")?;
    let old = image(d, "OldImage")?;
    let ttl = match get(r, "userIdentity") {
        None | Some(Value::Null) => false,
        // GetRecords spells them Type / PrincipalId, Lambda's events type / principalId:
        // the reference decides the first spelling (a TTL delete: rare)
        Some(Value::Obj(u)) if get(u, "Type").is_some() || get(u, "PrincipalId").is_some() => {
            return None
        }
        Some(Value::Obj(u)) => {
            matches!(get(u, "type"), Some(Value::Str(s)) if s.is("Service"))
                && matches!(get(u, "principalId"), Some(Value::Str(s)) if s.is(TTL_PRINCIPAL))
        }
        _ => return None,
    };
    let size = match get(d, "SizeBytes") {
        None | Some(Value::Null) => 0,
        Some(Value::Num(n)) => n.parse::<i64>().ok()?,
        _ => return None,
    };
    let key_list: Vec<(&Str, &Value)> = keys.iter().map(|(k, v)| (k, v)).collect();
    let key = sorted_key(&key_list, c.seed)?;
    if c.seed {
        let doc_item = match new {
            Some(m) if op != "d" => m,
            _ => keys,
        };
        v1_map(doc, doc_item)?;
        value.extend_from_slice(b"{\"version\":\"1.0\",\"document\":");
        escape(value, doc);
        value.extend_from_slice(b",\"source\":");
        value.extend_from_slice(c.seed_source);
        value.extend_from_slice(b",\"op\":\"");
        value.extend_from_slice(op.as_bytes());
        value.extend_from_slice(b"\",\"ts_ms\":");
        push_i64(value, ts);
        value.push(b'}');
    } else {
        value.extend_from_slice(b"{\"op\":\"");
        value.extend_from_slice(op.as_bytes());
        value.extend_from_slice(b"\",\"table\":");
        value.extend_from_slice(c.table);
        value.extend_from_slice(b",\"keys\":");
        plain_map(value, keys)?;
        value.extend_from_slice(b",\"before\":");
        match old {
            Some(m) => plain_map(value, m)?,
            None => value.extend_from_slice(b"null"),
        }
        value.extend_from_slice(b",\"after\":");
        match new {
            Some(m) => plain_map(value, m)?,
            None => value.extend_from_slice(b"null"),
        }
        value.extend_from_slice(b",\"ts_ms\":");
        push_i64(value, ts);
        value.extend_from_slice(b",\"source\":{\"stream_arn\":");
        value.extend_from_slice(c.arn);
        value.extend_from_slice(b",\"shard_id\":");
        value.extend_from_slice(c.shard);
        value.extend_from_slice(b",\"seq\":");
        write_str(value, seq);
        value.extend_from_slice(
            b",\"snapshot\":false,\"segment\":null,\"total_segments\":null,\"ttl_delete\":",
        );
        value.extend_from_slice(if ttl { b"true" } else { b"false" });
        value.extend_from_slice(b"}}");
    }
    Some(Change {
        key,
        tombstone: op == "d" && c.tombstones,
        seq: seq.text().into_owned(),
        ts_ms: ts,
        event,
        size,
        ttl,
    })
}

struct ScanCtx<'c> {
    seed: bool,
    table: &'c [u8],
    key_names: &'c [String],
    ts: &'c [u8],
    native_source: &'c [u8],
    seed_source: &'c [u8],
}

/// Encoder.snapshot for one item of a Scan body.
/// The key is returned, the value written into `value` (see `change`).
fn snapshot(item: &Value, c: &ScanCtx, value: &mut Vec<u8>, doc: &mut Vec<u8>) -> Option<Vec<u8>> {
    value.clear();
    doc.clear();
    let m = item.obj()?;
    let mut keys: Vec<(&Str, &Value)> = Vec::with_capacity(c.key_names.len());
    for name in c.key_names {
        let (k, v) = m.iter().find(|(k, _)| k.is(name))?;
        keys.push((k, v));
    }
    let key = sorted_key(&keys, c.seed)?;
    if c.seed {
        v1_map(doc, m)?;
        value.extend_from_slice(b"{\"version\":\"1.0\",\"document\":");
        escape(value, doc);
        value.extend_from_slice(b",\"source\":");
        value.extend_from_slice(c.seed_source);
        value.extend_from_slice(b",\"op\":\"r\",\"ts_ms\":");
        value.extend_from_slice(c.ts);
        value.push(b'}');
    } else {
        value.extend_from_slice(b"{\"op\":\"r\",\"table\":");
        value.extend_from_slice(c.table);
        value.extend_from_slice(b",\"keys\":{");
        for (i, (k, v)) in keys.iter().enumerate() {
            if i > 0 {
                value.push(b',');
            }
            write_str(value, k);
            value.push(b':');
            key_value(value, v, false)?;
        }
        value.extend_from_slice(b"},\"before\":null,\"after\":");
        plain_map(value, m)?;
        value.extend_from_slice(b",\"ts_ms\":");
        value.extend_from_slice(c.ts);
        value.extend_from_slice(b",\"source\":");
        value.extend_from_slice(c.native_source);
        value.push(b'}');
    }
    Some(key)
}

/// A panic (a bug here) refuses the page or record instead of raising into the worker:
/// the reference encodes it, and the panic message is still printed (stderr).
fn guard<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(None)
}

thread_local! {
    /// One arena per thread, emptied (not freed) after each page: a page's tree takes a
    /// few MB, and fresh pages of memory for every call cost their page faults.
    static ARENA: std::cell::Cell<Option<Bump>> = const { std::cell::Cell::new(None) };
}

fn with_arena<T>(f: impl FnOnce(&Bump) -> T) -> T {
    let mut arena = ARENA.with(|a| a.take()).unwrap_or_default();
    let out = f(&arena);
    arena.reset();
    ARENA.with(|a| a.set(Some(arena)));
    out
}

fn fields<'py>(py: Python<'py>, page: &Page) -> PyResult<Bound<'py, PyList>> {
    let items: Vec<Bound<'py, PyTuple>> = page
        .fields
        .iter()
        .map(|(n, s, e)| (n.as_str(), *s, *e).into_pyobject(py))
        .collect::<PyResult<_>>()?;
    PyList::new(py, items)
}

/// A GetRecords body -> None (the whole page goes to the reference) or
/// (records, refused, fields):
/// records: [(index, messages, seq, ts_ms, event_name, size_bytes, ttl_delete)] (the
///          fields of fastwire.EncodedRecord; messages [(key, value)], then (key, None)
///          after a delete when tombstones are on),
/// refused: [(index, start, end)] byte spans of records for the reference,
/// fields:  [(name, start, end)] byte spans of the other top-level members.
/// `table`, `arn`, `shard` and `seed_source` are JSON texts, encoded by the caller.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (body, seed, tombstones, table, arn, shard, seed_source))]
fn encode_records<'py>(
    py: Python<'py>,
    body: &[u8],
    seed: bool,
    tombstones: bool,
    table: &[u8],
    arn: &[u8],
    shard: &[u8],
    seed_source: &[u8],
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(None);
    };
    with_arena(|arena| {
        let Some(page) = guard(|| parse_page(text, arena, "Records")) else {
            return Ok(None);
        };
        let c = ChangeCtx {
            seed,
            tombstones,
            table,
            arn,
            shard,
            seed_source,
        };
        let mut done: Vec<Bound<'py, PyTuple>> = Vec::with_capacity(page.elems.len());
        let mut refused: Vec<Bound<'py, PyTuple>> = Vec::new();
        let (mut value, mut doc) = (Vec::with_capacity(8192), Vec::with_capacity(4096));
        for (i, (v, start, end, dup)) in page.elems.iter().enumerate() {
            match if *dup {
                None
            } else {
                guard(|| change(v, &c, &mut value, &mut doc))
            } {
                Some(ch) => {
                    let key = PyBytes::new(py, &ch.key);
                    let message = (key.clone(), PyBytes::new(py, &value)).into_pyobject(py)?;
                    let messages = if ch.tombstone {
                        let tombstone = (key, py.None()).into_pyobject(py)?.into_any();
                        PyList::new(py, [message.into_any(), tombstone])?
                    } else {
                        PyList::new(py, [message])?
                    };
                    let row = (i, messages, ch.seq, ch.ts_ms, ch.event, ch.size, ch.ttl);
                    done.push(row.into_pyobject(py)?)
                }
                None => refused.push((i, *start, *end).into_pyobject(py)?),
            }
        }
        let out = (
            PyList::new(py, done)?,
            PyList::new(py, refused)?,
            fields(py, &page)?,
        );
        Ok(Some(out.into_pyobject(py)?))
    })
}

/// A Scan body -> None or (items, refused, fields): items [(index, [(key, value)])],
/// the rest as encode_records.  `key_names`: the table's key attribute names (no
/// repeats); `ts`: ts_ms as JSON text; the sources: the envelope's source blocks.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (body, seed, table, key_names, ts, native_source, seed_source))]
fn encode_scan<'py>(
    py: Python<'py>,
    body: &[u8],
    seed: bool,
    table: &[u8],
    key_names: Vec<String>,
    ts: &[u8],
    native_source: &[u8],
    seed_source: &[u8],
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(None);
    };
    with_arena(|arena| {
        let Some(page) = guard(|| parse_page(text, arena, "Items")) else {
            return Ok(None);
        };
        let c = ScanCtx {
            seed,
            table,
            key_names: &key_names,
            ts,
            native_source,
            seed_source,
        };
        let mut done: Vec<Bound<'py, PyTuple>> = Vec::with_capacity(page.elems.len());
        let mut refused: Vec<Bound<'py, PyTuple>> = Vec::new();
        let (mut value, mut doc) = (Vec::with_capacity(8192), Vec::with_capacity(4096));
        for (i, (v, start, end, dup)) in page.elems.iter().enumerate() {
            match if *dup {
                None
            } else {
                guard(|| snapshot(v, &c, &mut value, &mut doc))
            } {
                Some(k) => {
                    let message = (PyBytes::new(py, &k), PyBytes::new(py, &value));
                    let row = (i, PyList::new(py, [message.into_pyobject(py)?])?);
                    done.push(row.into_pyobject(py)?)
                }
                None => refused.push((i, *start, *end).into_pyobject(py)?),
            }
        }
        let out = (
            PyList::new(py, done)?,
            PyList::new(py, refused)?,
            fields(py, &page)?,
        );
        Ok(Some(out.into_pyobject(py)?))
    })
}

/// Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), unsigned.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition Kafka's default partitioner picks for a non-null key (the reference:
/// app/domain/partition.py, tested equal).
#[pyfunction]
fn partition_for(key: &[u8], partitions: u32) -> PyResult<u32> {
    if partitions == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err("no partitions"));
    }
    Ok((murmur2(key) & 0x7fff_ffff) % partitions)
}

#[pymodule]
fn dynamodb_wire(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_records, m)?)?;
    m.add_function(wrap_pyfunction!(encode_scan, m)?)?;
    m.add_function(wrap_pyfunction!(partition_for, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
