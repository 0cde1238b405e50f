//! A strict RFC 8259 parser into a tree that borrows from the body.
//!
//! Strings keep their raw text (between the quotes) and whether it holds escapes, so
//! the common string is copied to the output as it is; numbers keep their token text.
//! It accepts a subset of what `orjson.loads` accepts: whatever it rejects (and every
//! number token orjson might read differently) makes the caller fall back to the
//! Python reference for the whole page, which then decides.

use std::borrow::Cow;

use bumpalo::Bump;

pub const MAX_DEPTH: usize = 256;

#[derive(Clone, Copy)]
pub struct Str<'a> {
    pub raw: &'a str,
    pub esc: bool,
}

impl<'a> Str<'a> {
    /// The string's value (escapes resolved; the parser checked them).
    pub fn text(&self) -> Cow<'a, str> {
        if self.esc {
            Cow::Owned(unescape(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    pub fn is(&self, s: &str) -> bool {
        if self.esc {
            unescape(self.raw) == s
        } else {
            self.raw == s
        }
    }
}

/// Arrays and objects are slices in the page's arena (see Parser).
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Str<'a>),
    Arr(&'a [Value<'a>]),
    Obj(&'a [(Str<'a>, Value<'a>)]),
}

impl<'a> Value<'a> {
    pub fn obj(&self) -> Option<&[(Str<'a>, Value<'a>)]> {
        match self {
            Value::Obj(m) => Some(m),
            _ => None,
        }
    }
}

/// The member named `name` (objects with duplicate names never get here).
pub fn get<'v, 'a>(m: &'v [(Str<'a>, Value<'a>)], name: &str) -> Option<&'v Value<'a>> {
    m.iter().find(|(k, _)| k.is(name)).map(|(_, v)| v)
}

pub struct Parser<'a> {
    pub s: &'a str,
    pub b: &'a [u8],
    pub pos: usize,
    /// Set when an object repeats a member name (Python keeps the first position and
    /// the last value: such records go to the reference).
    pub dup: bool,
    arena: &'a Bump,
    // Children of the containers being parsed, innermost last: a container's children
    // move into the arena as one slice when it closes.
    values: Vec<Value<'a>>,
    members: Vec<(Str<'a>, Value<'a>)>,
}

pub type R<T> = Result<T, ()>;

impl<'a> Parser<'a> {
    pub fn new(s: &'a str, arena: &'a Bump) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            pos: 0,
            dup: false,
            arena,
            values: Vec::with_capacity(64),
            members: Vec::with_capacity(256),
        }
    }

    pub fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    pub fn eat(&mut self, c: u8) -> R<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    pub fn value(&mut self, depth: usize) -> R<Value<'a>> {
        if depth > MAX_DEPTH {
            return Err(());
        }
        self.ws();
        match self.peek().ok_or(())? {
            b'{' => {
                self.pos += 1;
                let base = self.members.len();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Value::Obj(&[]));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(());
                    }
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value(depth + 1)?;
                    if self.members[base..].iter().any(|(o, _)| same(o, &k)) {
                        self.dup = true;
                    }
                    self.members.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            let m = self.arena.alloc_slice_copy(&self.members[base..]);
                            self.members.truncate(base);
                            return Ok(Value::Obj(m));
                        }
                        _ => return Err(()),
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                let base = self.values.len();
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Value::Arr(&[]));
                }
                loop {
                    let v = self.value(depth + 1)?;
                    self.values.push(v);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            let a = self.arena.alloc_slice_copy(&self.values[base..]);
                            self.values.truncate(base);
                            return Ok(Value::Arr(a));
                        }
                        _ => return Err(()),
                    }
                }
            }
            b'"' => Ok(Value::Str(self.string()?)),
            b't' => self.word(b"true", Value::Bool(true)),
            b'f' => self.word(b"false", Value::Bool(false)),
            b'n' => self.word(b"null", Value::Null),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &[u8], v: Value<'a>) -> R<Value<'a>> {
        if self.b[self.pos..].starts_with(w) {
            self.pos += w.len();
            Ok(v)
        } else {
            Err(())
        }
    }

    /// RFC 8259 number.  Tokens orjson might refuse (a value that overflows a double) are
    /// refused: at most 200 digits before an exponent of at most 2 digits.
    fn number(&mut self) -> R<Value<'a>> {
        let start = self.pos;
        let b = self.b;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(c) if c.is_ascii_digit() => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(()),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let f = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                return Err(());
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let e = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == e || i - e > 2 {
                return Err(());
            }
        }
        if i - start > 200 {
            return Err(());
        }
        self.pos = i;
        Ok(Value::Num(&self.s[start..i]))
    }

    /// A string: checks escapes (surrogates must pair) and rejects raw control bytes.
    pub fn string(&mut self) -> R<Str<'a>> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        let b = self.b;
        let mut i = start;
        let mut esc = false;
        loop {
            while i + 8 <= b.len() && !special8(&b[i..i + 8]) {
                i += 8; // eight plain bytes at a time
            }
            let c = *b.get(i).ok_or(())?;
            match c {
                b'"' => break,
                b'\\' => {
                    esc = true;
                    match *b.get(i + 1).ok_or(())? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => {
                            let u = hex4(b, i + 2)?;
                            i += 6;
                            if (0xD800..0xDC00).contains(&u) {
                                if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                                    return Err(());
                                }
                                let lo = hex4(b, i + 2)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(());
                                }
                                i += 6;
                            } else if (0xDC00..0xE000).contains(&u) {
                                return Err(());
                            }
                        }
                        _ => return Err(()),
                    }
                }
                0..=0x1f => return Err(()),
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        Ok(Str {
            raw: &self.s[start..i],
            esc,
        })
    }
}

/// Does any of these 8 bytes end or escape a JSON string (`"`, `\\`, a C0 control)?
#[inline]
pub fn special8(bytes: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let w = u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI; // exact as "any byte is 0"
    let quote = zero(w ^ (LO * b'"' as u64));
    let backslash = zero(w ^ (LO * b'\\' as u64));
    let control = w.wrapping_sub(LO * 0x20) & !w & HI; // any byte < 0x20
    quote | backslash | control != 0
}

fn same(a: &Str, b: &Str) -> bool {
    if !a.esc && !b.esc {
        a.raw == b.raw
    } else {
        a.text() == b.text()
    }
}

fn hex4(b: &[u8], i: usize) -> R<u32> {
    let h = b.get(i..i + 4).ok_or(())?;
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16).ok_or(())?;
    }
    Ok(v)
}

/// Resolve the escapes of a string the parser accepted.
fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut run = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[run..i]);
        let c = b[i + 1];
        i += 2;
        match c {
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let mut u = hex4(b, i).unwrap_or(0xFFFD);
                i += 4;
                if (0xD800..0xDC00).contains(&u) {
                    let lo = hex4(b, i + 2).unwrap_or(0xDC00);
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                out.push(char::from_u32(u).unwrap_or('\u{FFFD}'));
            }
            other => out.push(other as char), // " \ /
        }
        run = i;
    }
    out.push_str(&raw[run..]);
    out
}
