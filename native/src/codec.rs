//! The output side of app/domain/codec.py for values parsed from the wire: plain
//! (native format) and SDK v1 (seed format) JSON, written straight into a buffer.
//!
//! Every function returns `None` where the Python codec would raise or where its
//! result is not reproduced here (numbers with huge exponents, base64 with stray
//! padding, attribute values that are not strings where strings are expected ...):
//! the record then goes through the Python reference, which returns the same value
//! or raises the error.  The one rule: never accept what the reference rejects,
//! never write other bytes than it does.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::json::{special8, Str, Value};

// ------------------------------------------------------------------ strings

/// A JSON string exactly as orjson writes it: `"` `\` and C0 controls escaped (short
/// forms for \b \t \n \f \r, else \u00xx), everything else as UTF-8.
pub fn escape(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < s.len() {
        if i + 8 <= s.len() && !special8(&s[i..i + 8]) {
            i += 8;
            continue;
        }
        let c = s[i];
        i += 1;
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\t' => b't',
            b'\r' => b'r',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&s[run..i - 1]);
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        }
        run = i;
    }
    out.extend_from_slice(&s[run..]);
    out.push(b'"');
}

/// A parsed string: without escapes its raw text is already what orjson writes
/// (the parser rejected raw control characters).
pub fn write_str(out: &mut Vec<u8>, s: &Str) {
    if s.esc {
        escape(out, s.text().as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(s.raw.as_bytes());
        out.push(b'"');
    }
}

// ------------------------------------------------------------------ numbers

/// codec._json_number: RFC 8259 number, ASCII digits.
fn is_json_number(s: &[u8]) -> bool {
    let mut i = 0;
    if s.first() == Some(&b'-') {
        i = 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1
            }
        }
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1
        }
        if i == f {
            return false;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1
        }
        let e = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1
        }
        if i == e {
            return false;
        }
    }
    i == s.len()
}

fn py_space(c: u8) -> bool {
    // \s under re.ASCII
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// codec.number_text: the text itself when it is a JSON number, else what
/// `str(Decimal(text))` gives for texts matching codec._loose_number.  Exponents
/// beyond 15 digits are left to the reference (Decimal's limits decide there).
pub fn number_text(s: &str) -> Option<Cow<'_, str>> {
    let b = s.as_bytes();
    if is_json_number(b) {
        return Some(Cow::Borrowed(s));
    }
    // _loose_number: \s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*
    let mut i = 0;
    let mut end = b.len();
    while i < end && py_space(b[i]) {
        i += 1
    }
    while end > i && py_space(b[end - 1]) {
        end -= 1
    }
    let b = &b[i..end];
    let mut i = 0;
    let neg = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let is = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1
    }
    let int_digits = &b[is..i];
    let mut frac_digits: &[u8] = &[];
    if b.get(i) == Some(&b'.') {
        i += 1;
        let fs = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1
        }
        frac_digits = &b[fs..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let es = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1
        }
        if i == es || i - es > 15 {
            return None;
        }
        exp = std::str::from_utf8(&b[es..i]).ok()?.parse().ok()?;
        if eneg {
            exp = -exp;
        }
    }
    if i != b.len() {
        return None;
    }
    // Decimal: coefficient digits without leading zeros ("0" if none), exponent.
    let mut digits: Vec<u8> = int_digits.iter().chain(frac_digits).copied().collect();
    let lead = digits.iter().take_while(|&&c| c == b'0').count();
    digits.drain(..lead.min(digits.len() - 1));
    if digits.iter().all(|&c| c == b'0') {
        digits.truncate(1);
    }
    let exp = exp - frac_digits.len() as i64;
    Some(Cow::Owned(decimal_str(neg, &digits, exp)))
}

/// Decimal.__str__ (to-sci-string) of sign, coefficient digits and exponent.
fn decimal_str(neg: bool, digits: &[u8], exp: i64) -> String {
    let n = digits.len() as i64;
    let left = exp + n;
    let dot = if exp <= 0 && left > -6 { left } else { 1 };
    let mut out = String::with_capacity(digits.len() + 24);
    if neg {
        out.push('-');
    }
    let d = std::str::from_utf8(digits).unwrap_or("0");
    if dot <= 0 {
        out.push_str("0.");
        for _ in 0..(-dot) {
            out.push('0');
        }
        out.push_str(d);
    } else if dot >= n {
        out.push_str(d);
        for _ in 0..(dot - n) {
            out.push('0');
        }
    } else {
        out.push_str(&d[..dot as usize]);
        out.push('.');
        out.push_str(&d[dot as usize..]);
    }
    if left != dot {
        out.push('E');
        let e = left - dot;
        if e >= 0 {
            out.push('+');
        }
        out.push_str(&e.to_string());
    }
    out
}

/// Numeric order of two JSON number texts (what sorting by int / Decimal gives).
fn num_cmp(a: &str, b: &str) -> Ordering {
    let (an, ad, ae) = num_parts(a);
    let (bn, bd, be) = num_parts(b);
    let (az, bz) = (ad.is_empty(), bd.is_empty());
    let sign = |neg: bool, zero: bool| {
        if zero {
            0
        } else if neg {
            -1
        } else {
            1
        }
    };
    let (sa, sb) = (sign(an, az), sign(bn, bz));
    if sa != sb || sa == 0 {
        return sa.cmp(&sb);
    }
    // same sign, both non-zero: compare magnitudes 0.DIGITS x 10^E
    let mag = ae.cmp(&be).then_with(|| {
        let n = ad.len().max(bd.len());
        (0..n)
            .map(|i| ad.get(i).unwrap_or(&b'0').cmp(bd.get(i).unwrap_or(&b'0')))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    if sa < 0 {
        mag.reverse()
    } else {
        mag
    }
}

/// (negative, significant digits without leading/trailing zeros, exponent E such that
/// the value is 0.DIGITS x 10^E).  The text is a JSON number.
fn num_parts(s: &str) -> (bool, Vec<u8>, i64) {
    let b = s.as_bytes();
    let neg = b.first() == Some(&b'-');
    let body = if neg { &b[1..] } else { b };
    let (mant, exp) = match body.iter().position(|&c| c == b'e' || c == b'E') {
        Some(p) => (
            &body[..p],
            std::str::from_utf8(&body[p + 1..])
                .ok()
                .and_then(|e| e.parse::<i64>().ok())
                .unwrap_or(0),
        ),
        None => (body, 0),
    };
    let (ip, fp) = match mant.iter().position(|&c| c == b'.') {
        Some(p) => (&mant[..p], &mant[p + 1..]),
        None => (mant, &mant[mant.len()..]),
    };
    let mut digits: Vec<u8> = ip.iter().chain(fp).copied().collect();
    let mut e = exp + ip.len() as i64;
    let lead = digits.iter().take_while(|&&c| c == b'0').count();
    digits.drain(..lead);
    e -= lead as i64;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    (neg, digits, e)
}

// ------------------------------------------------------------------ base64

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decode canonical-form base64 (length a multiple of 4, alphabet, 0-2 final `=`):
/// a subset of what a2b_base64(strict_mode=True) accepts, with its result.
pub fn b64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() & 3 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (q, chunk) in s.chunks_exact(4).enumerate() {
        let last = q == s.len() / 4 - 1;
        let pad = if last {
            chunk.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut v = 0u32;
        for &c in &chunk[..4 - pad] {
            v = (v << 6) | b64_val(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

pub fn b64_encode(out: &mut Vec<u8>, data: &[u8]) {
    for chunk in data.chunks(3) {
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(B64[(v >> 18) as usize & 63]);
        out.push(B64[(v >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            B64[(v >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            B64[v as usize & 63]
        } else {
            b'='
        });
    }
}

/// A B value as the codec writes it: b2a(a2b(text)), as a JSON string.
fn write_b64(out: &mut Vec<u8>, s: &Str) -> Option<()> {
    let raw = s.raw.as_bytes();
    if s.esc {
        return None; // base64 never needs escapes; leave the oddity to the reference
    }
    let data = b64_decode(raw)?;
    out.push(b'"');
    b64_encode(out, &data);
    out.push(b'"');
    Some(())
}

// ------------------------------------------------------------------ attribute values

/// The single (tag, value) of a typed attribute value.
pub fn tagged<'v, 'a>(av: &'v Value<'a>) -> Option<(&'v Str<'a>, &'v Value<'a>)> {
    match av.obj()? {
        [(tag, v)] => Some((tag, v)),
        _ => None,
    }
}

fn strs<'v, 'a>(v: &'v Value<'a>) -> Option<Vec<&'v Str<'a>>> {
    match v {
        Value::Arr(a) => a
            .iter()
            .map(|m| match m {
                Value::Str(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn tag_is(tag: &Str, t: &str) -> bool {
    !tag.esc && tag.raw == t
}

/// codec.to_plain, written as orjson writes it.
pub fn plain(out: &mut Vec<u8>, av: &Value) -> Option<()> {
    let (tag, v) = tagged(av)?;
    if tag.esc {
        return None;
    }
    match (tag.raw, v) {
        ("S", Value::Str(s)) => write_str(out, s),
        ("N", Value::Str(s)) => {
            if s.esc {
                out.extend_from_slice(number_text(&s.text())?.as_bytes());
            } else {
                out.extend_from_slice(number_text(s.raw)?.as_bytes());
            }
        }
        ("M", Value::Obj(m)) => plain_map(out, m)?,
        ("L", Value::Arr(a)) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                plain(out, x)?;
            }
            out.push(b']');
        }
        ("BOOL", Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        ("NULL", Value::Bool(true)) => out.extend_from_slice(b"null"),
        ("B", Value::Str(s)) => write_b64(out, s)?,
        ("SS", v) => {
            let mut texts: Vec<Cow<str>> = strs(v)?.iter().map(|s| s.text()).collect();
            texts.sort(); // code point order, like sorted() on str
            out.push(b'[');
            for (i, t) in texts.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                escape(out, t.as_bytes());
            }
            out.push(b']');
        }
        ("NS", v) => {
            let members = strs(v)?;
            let mut texts: Vec<String> = Vec::with_capacity(members.len());
            for s in members {
                texts.push(number_text(&s.text())?.into_owned());
            }
            texts.sort_by(|a, b| num_cmp(a, b)); // stable, like list.sort
            out.push(b'[');
            for (i, t) in texts.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(t.as_bytes());
            }
            out.push(b']');
        }
        ("BS", v) => {
            let mut raw: Vec<Vec<u8>> = Vec::new();
            for s in strs(v)? {
                if s.esc {
                    return None;
                }
                raw.push(b64_decode(s.raw.as_bytes())?);
            }
            raw.sort();
            out.push(b'[');
            for (i, r) in raw.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                b64_encode(out, r);
                out.push(b'"');
            }
            out.push(b']');
        }
        _ => return None,
    }
    Some(())
}

/// An item (or M value) in the plain form, attribute order kept.
pub fn plain_map(out: &mut Vec<u8>, m: &[(Str, Value)]) -> Option<()> {
    out.push(b'{');
    for (i, (k, av)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        plain(out, av)?;
    }
    out.push(b'}');
    Some(())
}

/// codec._v1: the seed connector's SDK v1 document form.
pub fn v1(out: &mut Vec<u8>, av: &Value) -> Option<()> {
    let (tag, v) = tagged(av)?;
    if tag.esc {
        return None;
    }
    match (tag.raw, v) {
        ("S", Value::Str(s)) => {
            out.extend_from_slice(b"{\"s\":");
            write_str(out, s);
        }
        ("N", Value::Str(s)) => {
            out.extend_from_slice(b"{\"n\":\"");
            out.extend_from_slice(number_text(&s.text())?.as_bytes());
            out.push(b'"');
        }
        ("M", Value::Obj(m)) => {
            out.extend_from_slice(b"{\"m\":");
            v1_map(out, m)?;
        }
        ("L", Value::Arr(a)) => {
            out.extend_from_slice(b"{\"l\":[");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                v1(out, x)?;
            }
            out.push(b']');
        }
        ("BOOL", Value::Bool(b)) => out.extend_from_slice(if *b {
            b"{\"bool\":true"
        } else {
            b"{\"bool\":false"
        }),
        ("NULL", Value::Bool(true)) => out.extend_from_slice(b"{\"null\":true"),
        ("B", Value::Str(s)) => {
            out.extend_from_slice(b"{\"b\":");
            write_b64(out, s)?;
        }
        ("SS", v) => {
            out.extend_from_slice(b"{\"ss\":[");
            for (i, s) in strs(v)?.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, s);
            }
            out.push(b']');
        }
        ("NS", v) => {
            out.extend_from_slice(b"{\"ns\":[");
            for (i, s) in strs(v)?.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(number_text(&s.text())?.as_bytes());
                out.push(b'"');
            }
            out.push(b']');
        }
        ("BS", v) => {
            out.extend_from_slice(b"{\"bs\":[");
            for (i, s) in strs(v)?.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_b64(out, s)?;
            }
            out.push(b']');
        }
        _ => return None,
    }
    out.push(b'}');
    Some(())
}

pub fn v1_map(out: &mut Vec<u8>, m: &[(Str, Value)]) -> Option<()> {
    out.push(b'{');
    for (i, (k, av)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        v1(out, av)?;
    }
    out.push(b'}');
    Some(())
}

/// A key attribute's value: S, N or B only (anything else goes to the reference).
/// `seed`: the old connector's form, every value a JSON string.
pub fn key_value(out: &mut Vec<u8>, av: &Value, seed: bool) -> Option<()> {
    let (tag, v) = tagged(av)?;
    let Value::Str(s) = v else { return None };
    if tag_is(tag, "S") {
        write_str(out, s);
    } else if tag_is(tag, "N") {
        let t = s.text();
        let n = number_text(&t)?;
        if seed {
            out.push(b'"');
            out.extend_from_slice(n.as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(n.as_bytes());
        }
    } else if tag_is(tag, "B") {
        write_b64(out, s)?;
    } else {
        return None;
    }
    Some(())
}
