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
    /// Every child key, in insertion order.
    children: Vec<(Box<[u8]>, u32)>,
    /// The same, hashed.
    by_key: FxMap<Box<[u8]>, u32>,
    /// Per [`slot`] of a key: 0 no child, [`SHARED`] several (ask `by_key`), else the index
    /// in `children` plus one. Most keys of an event are no pattern's, and this says so from
    /// a key's length and end bytes, without hashing or comparing it.
    slots: [u8; 32],
    field: Option<FieldId>,
}

const SHARED: u8 = u8::MAX;

#[inline]
fn slot(key: &[u8]) -> usize {
    let byte = |b: Option<&u8>| usize::from(b.copied().unwrap_or(0));
    let (first, last) = (byte(key.first()), byte(key.last()));
    (key.len() ^ (first * 7) ^ (last * 13)) & 31
}

impl PathNode {
    #[inline]
    fn child(&self, key: &[u8]) -> Option<u32> {
        match self.slots[slot(key)] {
            0 => None,
            SHARED => self.by_key.get(key).copied(),
            i => {
                let (k, c) = &self.children[usize::from(i) - 1];
                (**k == *key).then_some(*c)
            }
        }
    }

    fn add(&mut self, key: &[u8], child: u32) {
        self.children.push((key.into(), child));
        self.by_key.insert(key.into(), child);
        let at = &mut self.slots[slot(key)];
        *at = match (*at, u8::try_from(self.children.len())) {
            (0, Ok(i)) if i < SHARED => i,
            _ => SHARED,
        };
    }
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
            n = match self.nodes[n].child(k) {
                Some(c) => c as usize,
                None => {
                    let c = self.nodes.len();
                    self.nodes.push(PathNode::default());
                    self.nodes[n].add(k, c as u32);
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
                        if let Some(c) = n.child(k.as_bytes()) {
                            self.value(c as usize, child, depth + 1, here);
                        }
                    }
                } else {
                    for &(ref k, c) in &n.children {
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
/// both entry points agree. `Done` is the early stop of [`Read::UntilDecided`]; the walk
/// turns it into success.
pub(crate) enum Stop {
    Bad(EventError),
    DuplicateKey,
    Done,
}

/// How much of the bytes a walk reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// To the end: the whole document is checked to be JSON, and a key repeated on a pattern
    /// path anywhere is found.
    All,
    /// Until every key a pattern names has been read, then stop (at the top level) or skip to
    /// the end of the object (inside one). For JSON known to be valid with unique keys, such
    /// as the events Sluice itself wrote: what follows is never decoded, so with `data`
    /// placed last an attribute-only pattern never scans the payload.
    UntilDecided,
}

type R<T> = Result<T, Stop>;

/// Flattens raw JSON bytes without building a tree. Parts no pattern reads are skipped by a
/// bracket-counting scan that checks strings but not the grammar inside them.
pub(crate) fn flatten_bytes<'a, S: Sink<'a>>(
    trie: &PathTrie,
    bytes: &'a [u8],
    read: Read,
    bufs: &mut WalkBuffers,
    sink: S,
) -> Result<S, Stop> {
    let mut trail = std::mem::take(&mut bufs.trail);
    let mut seen = std::mem::take(&mut bufs.seen);
    trail.clear();
    seen.clear();
    let mut p = Parser {
        b: bytes,
        pos: 0,
        walk: Walk {
            trie,
            trail,
            arrays: 0,
            sink,
        },
        seen,
        early: read == Read::UntilDecided,
    };
    p.ws();
    let r = match p.value(0, 0, 0, true) {
        Ok(()) => {
            p.ws();
            if p.pos == p.b.len() {
                Ok(())
            } else {
                Err(p.bad("trailing characters"))
            }
        }
        Err(Stop::Done) => Ok(()),
        Err(e) => Err(e),
    };
    bufs.trail = p.walk.trail;
    bufs.seen = p.seen;
    r.map(|()| p.walk.sink)
}

/// A byte walk's working memory, kept between events so that a walk allocates nothing.
#[derive(Default)]
pub(crate) struct WalkBuffers {
    trail: Vec<Step>,
    seen: Vec<u32>,
}

/// Where the next `"` or `\\` is, from `from`. Eight bytes at a time (a word compared
/// against both bytes at once): most strings of an event are short, where setting up a vector
/// search costs more than the search.
#[inline]
fn quote_or_escape(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const ESCAPE: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        let (q, e) = (w ^ QUOTE, w ^ ESCAPE);
        // A byte's high bit is set where it equals the sought one; the lowest such is exact.
        let hit = (q.wrapping_sub(ONES) & !q | e.wrapping_sub(ONES) & !e) & HIGH;
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|p| i + p)
}

struct Parser<'a, 't, S> {
    b: &'a [u8],
    pos: usize,
    walk: Walk<'t, S>,
    /// Pattern keys met in each open object, to detect duplicates.
    seen: Vec<u32>,
    /// [`Read::UntilDecided`].
    early: bool,
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

    /// `last`: no key a pattern names can follow this value (it is the last one its object
    /// needs, in an object that is itself the last, up to the top, with no array between), so
    /// an early walk is done once it has been read.
    fn value(&mut self, node: usize, depth: usize, obj_trail: usize, last: bool) -> R<()> {
        if depth > MAX_EVENT_DEPTH {
            return Err(self.bad("nested too deeply"));
        }
        let trie = self.walk.trie;
        let n = &trie.nodes[node];
        match self.peek()? {
            b'{' if n.children.is_empty() => self.skip_container(),
            b'{' => self.object(node, depth, last),
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

    fn object(&mut self, node: usize, depth: usize, last: bool) -> R<()> {
        let trie = self.walk.trie;
        let mut wanted = trie.nodes[node].children.len();
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
            let child = trie.nodes[node].child(&key);
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
                    wanted -= 1;
                    self.value(c as usize, depth + 1, here, last && wanted == 0)?;
                    if self.early && wanted == 0 {
                        if last {
                            return Err(Stop::Done);
                        }
                        self.seen.truncate(seen_start);
                        return self.skip_open(1);
                    }
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
            let r = self.value(node, depth + 1, obj_trail, false);
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
        self.skip_open(0)
    }

    /// Skips to just past the bracket that closes `depth` containers already open.
    fn skip_open(&mut self, mut depth: usize) -> R<()> {
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
            match quote_or_escape(self.b, self.pos) {
                Some(i) if self.b[i] == b'"' => {
                    self.pos = i + 1;
                    return Ok(());
                }
                Some(i) => self.pos = i + 2,
                None => break,
            }
            if self.pos > self.b.len() {
                break;
            }
        }
        self.pos = self.b.len();
        Err(self.bad("unterminated string"))
    }

    /// A key as bytes for the trie lookup: borrowed unless it has escapes. Its UTF-8 is not
    /// checked: a key that is not a pattern's key is skipped like any unread part, and one
    /// that is equals a Rust string's bytes.
    fn key(&mut self) -> R<Cow<'a, [u8]>> {
        let start = self.pos + 1;
        match quote_or_escape(self.b, start) {
            Some(i) if self.b[i] == b'"' => {
                self.pos = i + 1;
                Ok(Cow::Borrowed(&self.b[start..i]))
            }
            Some(_) => {
                self.pos = start;
                Ok(Cow::Owned(self.escaped(start)?.into_bytes()))
            }
            None => Err(self.bad("unterminated string")),
        }
    }

    fn string(&mut self) -> R<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        let b = self.b;
        match quote_or_escape(b, start) {
            Some(i) if b[i] == b'"' => {
                self.pos = i + 1;
                std::str::from_utf8(&b[start..i])
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::quote_or_escape;

    proptest! {
        /// The word-at-a-time search finds what a byte-by-byte one finds, from any start.
        #[test]
        fn quote_or_escape_equals_a_plain_scan(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(0x22 ^ 0x80), Just(0xa2), any::<u8>()],
                0..40,
            ),
            from in 0usize..45,
        ) {
            let plain = bytes
                .get(from..)
                .and_then(|t| t.iter().position(|&c| c == b'"' || c == b'\\'))
                .map(|p| from + p);
            prop_assert_eq!(quote_or_escape(&bytes, from), plain);
        }
    }
}
