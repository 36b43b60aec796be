//! Event flattening: walks an event (a `serde_json::Value` or raw JSON bytes) once, descending
//! only into keys that some pattern mentions, and reports each leaf value at a pattern field
//! with its array trail: the (array, element) choices made on the way down through arrays of
//! objects, which the matcher uses to keep one pattern object inside one array element.

use std::borrow::Cow;

use serde_json::Value;

use crate::{MAX_EVENT_DEPTH, index::LeafVal, value::FxMap};

pub(crate) type FieldId = u32;
/// (array number within this event, element index)
pub(crate) type Step = (u32, u32);

/// The field paths of all patterns as a trie over keys.
#[derive(Clone, Debug)]
pub(crate) struct PathTrie {
    nodes: Vec<PathNode>,
}

#[derive(Clone, Debug, Default)]
struct PathNode {
    children: FxMap<Box<[u8]>, u32>,
    field: Option<FieldId>,
}

impl Default for PathTrie {
    fn default() -> Self {
        PathTrie {
            nodes: vec![PathNode::default()],
        }
    }
}

impl PathTrie {
    /// The field at `path`, created by `make` when new.
    pub fn intern(&mut self, path: &[String], make: impl FnOnce() -> FieldId) -> FieldId {
        let mut n = 0usize;
        for key in path {
            let k = key.as_bytes();
            n = match self.nodes[n].children.get(k) {
                Some(&c) => c as usize,
                None => {
                    let c = self.nodes.len();
                    self.nodes.push(PathNode::default());
                    self.nodes[n].children.insert(k.into(), c as u32);
                    c
                }
            };
        }
        *self.nodes[n].field.get_or_insert_with(make)
    }
}

/// Receives each leaf: its field, its value and the array trail of the object holding it.
pub(crate) trait Sink<'a> {
    fn leaf(&mut self, field: FieldId, value: LeafVal<'a>, trail: &[Step]);
}

struct Walk<'t, S> {
    trie: &'t PathTrie,
    trail: Vec<Step>,
    arrays: u32,
    sink: S,
}

/// Flattens a parsed event.
pub(crate) fn flatten_value<'a, S: Sink<'a>>(trie: &PathTrie, event: &'a Value, sink: S) -> S {
    let mut w = Walk {
        trie,
        trail: Vec::new(),
        arrays: 0,
        sink,
    };
    w.value(0, event, 0, 0);
    w.sink
}

impl<'a, S: Sink<'a>> Walk<'_, S> {
    /// `obj_trail` is the length of the trail when the innermost enclosing object was entered:
    /// arrays below it hold leaves, not objects, and must not split a field.
    fn value(&mut self, node: usize, v: &'a Value, depth: usize, obj_trail: usize) {
        if depth > MAX_EVENT_DEPTH {
            return;
        }
        let n = &self.trie.nodes[node];
        match v {
            Value::Array(items) => {
                let id = self.arrays;
                self.arrays += 1;
                for (i, e) in items.iter().enumerate() {
                    self.trail.push((id, i as u32));
                    self.value(node, e, depth + 1, obj_trail);
                    self.trail.pop();
                }
            }
            Value::Object(map) => {
                if n.children.is_empty() {
                    return;
                }
                let here = self.trail.len();
                if map.len() <= n.children.len() {
                    for (k, child) in map {
                        if let Some(&c) = n.children.get(k.as_bytes()) {
                            self.value(c as usize, child, depth + 1, here);
                        }
                    }
                } else {
                    for (k, &c) in &n.children {
                        if let Some(child) = std::str::from_utf8(k).ok().and_then(|k| map.get(k)) {
                            self.value(c as usize, child, depth + 1, here);
                        }
                    }
                }
            }
            scalar => {
                if let Some(f) = n.field {
                    let leaf = match scalar {
                        Value::String(s) => LeafVal::Str(Cow::Borrowed(s)),
                        Value::Number(x) => match x.as_f64() {
                            Some(x) => LeafVal::Num(x),
                            None => return,
                        },
                        Value::Bool(b) => LeafVal::Bool(*b),
                        _ => LeafVal::Null,
                    };
                    self.sink.leaf(f, leaf, &self.trail[..obj_trail]);
                }
            }
        }
    }
}

/// Why raw event bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event is not valid JSON at byte {offset}: {reason}")]
pub struct EventError {
    pub offset: usize,
    pub reason: &'static str,
}

/// What stopped a byte walk: bad JSON, or a repeated key on a path a pattern reads. JSON
/// leaves duplicates undefined; the caller then re-parses with serde_json (last key wins) so
/// both entry points agree.
pub(crate) enum Stop {
    Bad(EventError),
    DuplicateKey,
}

type R<T> = Result<T, Stop>;

/// Flattens raw JSON bytes without building a tree. Parts no pattern reads are skipped by a
/// bracket-counting scan that checks strings but not the grammar inside them.
pub(crate) fn flatten_bytes<'a, S: Sink<'a>>(
    trie: &PathTrie,
    bytes: &'a [u8],
    sink: S,
) -> Result<S, Stop> {
    let mut p = Parser {
        b: bytes,
        pos: 0,
        walk: Walk {
            trie,
            trail: Vec::new(),
            arrays: 0,
            sink,
        },
        seen: Vec::new(),
    };
    p.ws();
    p.value(0, 0, 0)?;
    p.ws();
    if p.pos != p.b.len() {
        return Err(p.bad("trailing characters"));
    }
    Ok(p.walk.sink)
}

struct Parser<'a, 't, S> {
    b: &'a [u8],
    pos: usize,
    walk: Walk<'t, S>,
    /// Pattern keys met in each open object, to detect duplicates.
    seen: Vec<u32>,
}

/// Bytes that matter to the skipping scan.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

impl<'a, S: Sink<'a>> Parser<'a, '_, S> {
    fn bad(&self, reason: &'static str) -> Stop {
        Stop::Bad(EventError {
            offset: self.pos,
            reason,
        })
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> R<u8> {
        self.b
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.bad("unexpected end"))
    }

    fn value(&mut self, node: usize, depth: usize, obj_trail: usize) -> R<()> {
        if depth > MAX_EVENT_DEPTH {
            return Err(self.bad("nested too deeply"));
        }
        let trie = self.walk.trie;
        let n = &trie.nodes[node];
        match self.peek()? {
            b'{' if n.children.is_empty() => self.skip_container(),
            b'{' => self.object(node, depth),
            b'[' => self.array(node, depth, obj_trail),
            b'"' if n.field.is_none() => self.skip_string(),
            b'"' => {
                let s = self.string()?;
                self.emit(node, LeafVal::Str(s), obj_trail);
                Ok(())
            }
            b't' => self.literal(b"true", node, LeafVal::Bool(true), obj_trail),
            b'f' => self.literal(b"false", node, LeafVal::Bool(false), obj_trail),
            b'n' => self.literal(b"null", node, LeafVal::Null, obj_trail),
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') =
                    self.b.get(self.pos)
                {
                    self.pos += 1;
                }
                if n.field.is_some() {
                    // serde_json's own number parser, so both entry points round alike.
                    let x: f64 = serde_json::from_slice(&self.b[start..self.pos])
                        .map_err(|_| self.bad("invalid number"))?;
                    self.emit(node, LeafVal::Num(x), obj_trail);
                }
                Ok(())
            }
            _ => Err(self.bad("expected a value")),
        }
    }

    fn emit(&mut self, node: usize, v: LeafVal<'a>, obj_trail: usize) {
        if let Some(f) = self.walk.trie.nodes[node].field {
            let w = &mut self.walk;
            w.sink.leaf(f, v, &w.trail[..obj_trail]);
        }
    }

    fn literal(&mut self, word: &[u8], node: usize, v: LeafVal<'a>, obj_trail: usize) -> R<()> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            self.emit(node, v, obj_trail);
            Ok(())
        } else {
            Err(self.bad("invalid literal"))
        }
    }

    fn object(&mut self, node: usize, depth: usize) -> R<()> {
        let trie = self.walk.trie;
        let here = self.walk.trail.len();
        let seen_start = self.seen.len();
        self.pos += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek()? != b'"' {
                return Err(self.bad("expected a key"));
            }
            let key = self.key()?;
            let child = trie.nodes[node].children.get(&*key).copied();
            self.ws();
            if self.peek()? != b':' {
                return Err(self.bad("expected ':'"));
            }
            self.pos += 1;
            self.ws();
            match child {
                Some(c) => {
                    if self.seen[seen_start..].contains(&c) {
                        return Err(Stop::DuplicateKey);
                    }
                    self.seen.push(c);
                    self.value(c as usize, depth + 1, here)?;
                }
                None => self.skip_value()?,
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                b'}' => {
                    self.pos += 1;
                    self.seen.truncate(seen_start);
                    return Ok(());
                }
                _ => return Err(self.bad("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, node: usize, depth: usize, obj_trail: usize) -> R<()> {
        let id = self.walk.arrays;
        self.walk.arrays += 1;
        self.pos += 1;
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(());
        }
        let mut i = 0u32;
        loop {
            self.walk.trail.push((id, i));
            let r = self.value(node, depth + 1, obj_trail);
            self.walk.trail.pop();
            r?;
            i = i.wrapping_add(1);
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.bad("expected ',' or ']'")),
            }
        }
    }

    fn skip_value(&mut self) -> R<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => self.skip_container(),
            b't' => self.skip_word(b"true"),
            b'f' => self.skip_word(b"false"),
            b'n' => self.skip_word(b"null"),
            b'-' | b'0'..=b'9' => {
                while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') =
                    self.b.get(self.pos)
                {
                    self.pos += 1;
                }
                Ok(())
            }
            _ => Err(self.bad("expected a value")),
        }
    }

    fn skip_word(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.bad("invalid literal"))
        }
    }

    /// Skips a whole object or array by counting brackets; iterative, so any depth is safe.
    fn skip_container(&mut self) -> R<()> {
        let mut depth = 0usize;
        while self.pos < self.b.len() {
            let c = self.b[self.pos];
            if !STRUCTURAL[c as usize] {
                self.pos += 1;
                continue;
            }
            match c {
                b'"' => {
                    self.skip_string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                _ => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
            }
            self.pos += 1;
        }
        Err(self.bad("unterminated object or array"))
    }

    fn skip_string(&mut self) -> R<()> {
        self.pos += 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.b[self.pos..]) {
                Some(i) if self.b[self.pos + i] == b'"' => {
                    self.pos += i + 1;
                    return Ok(());
                }
                Some(i) => self.pos += i + 2,
                None => break,
            }
            if self.pos > self.b.len() {
                break;
            }
        }
        self.pos = self.b.len();
        Err(self.bad("unterminated string"))
    }

    /// A key as bytes for the trie lookup: borrowed unless it has escapes.
    fn key(&mut self) -> R<Cow<'a, [u8]>> {
        Ok(match self.string()? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        })
    }

    fn string(&mut self) -> R<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        let b = self.b;
        match memchr::memchr2(b'"', b'\\', &b[start..]) {
            Some(i) if b[start + i] == b'"' => {
                self.pos = start + i + 1;
                std::str::from_utf8(&b[start..start + i])
                    .map(Cow::Borrowed)
                    .map_err(|_| self.bad("invalid UTF-8 in string"))
            }
            Some(_) => self.escaped(start).map(Cow::Owned),
            None => Err(self.bad("unterminated string")),
        }
    }

    fn escaped(&mut self, start: usize) -> R<String> {
        let b = self.b;
        let mut out: Vec<u8> = Vec::new();
        let mut i = start;
        loop {
            let Some(j) = memchr::memchr2(b'"', b'\\', &b[i..]) else {
                self.pos = b.len();
                return Err(self.bad("unterminated string"));
            };
            out.extend_from_slice(&b[i..i + j]);
            i += j;
            if b[i] == b'"' {
                self.pos = i + 1;
                return String::from_utf8(out).map_err(|_| self.bad("invalid UTF-8 in string"));
            }
            self.pos = i;
            let esc = *b
                .get(i + 1)
                .ok_or_else(|| self.bad("unterminated string"))?;
            i += 2;
            let c = match esc {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = self.hex4(i)?;
                    i += 4;
                    let code = if (0xD800..0xDC00).contains(&hi) {
                        if b.get(i..i + 2) != Some(b"\\u") {
                            return Err(self.bad("lone surrogate"));
                        }
                        let lo = self.hex4(i + 2)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(self.bad("lone surrogate"));
                        }
                        i += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        hi
                    };
                    char::from_u32(code).ok_or_else(|| self.bad("lone surrogate"))?
                }
                _ => return Err(self.bad("invalid escape")),
            };
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }

    fn hex4(&self, at: usize) -> R<u32> {
        let digits = self
            .b
            .get(at..at + 4)
            .ok_or_else(|| self.bad("invalid \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let x = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.bad("invalid \\u escape"))?;
            v = v * 16 + x;
        }
        Ok(v)
    }
}
