//! Templates: JSON with placeholders. `<name>` (EventBridge's form) and `${expr}` stand for a
//! value where a JSON value may stand, or for text inside a string (object keys included).
//! Parts without placeholders are built once, at compile time.

use serde_json::{Map, Value};

use crate::{
    At, Context, MAX_DEPTH, MAX_OUTPUT_BYTES,
    expr::{self, Expr, Names, size_hint},
    func::text,
};

#[derive(Clone, Debug)]
pub(crate) enum Node {
    Lit(Value),
    Hole(Expr),
    Str(Vec<Part>),
    Array(Vec<Node>),
    Object(Vec<(Key, Node)>),
}

#[derive(Clone, Debug)]
pub(crate) enum Part {
    Text(String),
    Hole(Expr),
}

#[derive(Clone, Debug)]
pub(crate) struct Key {
    at: usize,
    parts: Vec<Part>,
}

pub(crate) fn parse(src: &str, names: &Names) -> Result<Node, At> {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        i: 0,
        names,
        depth: 0,
    };
    p.ws();
    if p.i == p.b.len() {
        return Err(At::new(
            0,
            "the template is empty; write the JSON the handler gets",
        ));
    }
    let node = p.value()?;
    p.ws();
    if p.i < p.b.len() {
        return Err(At::new(
            p.i,
            "unexpected text after the template's value (one JSON value, with placeholders)",
        ));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    i: usize,
    names: &'a Names,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Node, At> {
        let at = self.i;
        let Some(&c) = self.b.get(at) else {
            return Err(At::new(
                at,
                "expected a value, found the end of the template",
            ));
        };
        match c {
            b'{' => self.nested(at, Self::object),
            b'[' => self.nested(at, Self::array),
            b'"' => {
                let parts = self.string()?;
                Ok(fold_str(parts))
            }
            b'<' => Ok(Node::Hole(self.angle()?)),
            b'$' if self.b.get(at + 1) == Some(&b'{') => Ok(Node::Hole(self.dollar()?)),
            b't' | b'f' | b'n' => {
                for (word, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.src[at..].starts_with(word) {
                        self.i += word.len();
                        return Ok(Node::Lit(v));
                    }
                }
                Err(self.unexpected())
            }
            b'-' | b'0'..=b'9' => {
                let mut j = at + 1;
                while j < self.b.len()
                    && matches!(self.b[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    j += 1;
                }
                let n: serde_json::Number =
                    serde_json::from_str(&self.src[at..j]).map_err(|_| {
                        At::new(at, format!("{:?} is not a JSON number", &self.src[at..j]))
                    })?;
                self.i = j;
                Ok(Node::Lit(Value::Number(n)))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn unexpected(&self) -> At {
        let ch = self.src[self.i..].chars().next().unwrap_or(' ');
        At::new(
            self.i,
            format!("unexpected {ch:?}: expected a JSON value, <name> or ${{expression}}"),
        )
    }

    fn nested(&mut self, at: usize, f: fn(&mut Self) -> Result<Node, At>) -> Result<Node, At> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(At::new(at, format!("nested more than {MAX_DEPTH} deep")));
        }
        let n = f(self)?;
        self.depth -= 1;
        Ok(n)
    }

    fn object(&mut self) -> Result<Node, At> {
        let open = self.i;
        self.i += 1;
        let mut fields: Vec<(Key, Node)> = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Node::Lit(Value::Object(Map::new())));
        }
        loop {
            self.ws();
            let at = self.i;
            if self.b.get(at) != Some(&b'"') {
                return Err(if at >= self.b.len() {
                    At::new(open, "this { is not closed")
                } else {
                    At::new(at, "expected a quoted key")
                });
            }
            let parts = self.string()?;
            if let [Part::Text(k)] = parts.as_slice()
                && fields
                    .iter()
                    .any(|(f, _)| matches!(f.parts.as_slice(), [Part::Text(o)] if o == k))
            {
                return Err(At::new(at, format!("key {k:?} appears twice")));
            }
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(At::new(self.i, "expected : after the key"));
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            fields.push((Key { at, parts }, v));
            if self.closed_after(open, b'}', "a field")? {
                break;
            }
        }
        let all_lit = fields.iter().all(|(k, v)| {
            matches!(k.parts.as_slice(), [] | [Part::Text(_)]) && matches!(v, Node::Lit(_))
        });
        if all_lit {
            let mut m = Map::new();
            for (k, v) in fields {
                let key = match k.parts.into_iter().next() {
                    Some(Part::Text(t)) => t,
                    _ => String::new(),
                };
                if let Node::Lit(v) = v {
                    m.insert(key, v);
                }
            }
            return Ok(Node::Lit(Value::Object(m)));
        }
        Ok(Node::Object(fields))
    }

    fn array(&mut self) -> Result<Node, At> {
        let open = self.i;
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Node::Lit(Value::Array(Vec::new())));
        }
        loop {
            self.ws();
            if self.i >= self.b.len() {
                return Err(At::new(open, "this [ is not closed"));
            }
            items.push(self.value()?);
            if self.closed_after(open, b']', "an item")? {
                break;
            }
        }
        if items.iter().all(|n| matches!(n, Node::Lit(_))) {
            let vals = items
                .into_iter()
                .filter_map(|n| match n {
                    Node::Lit(v) => Some(v),
                    _ => None,
                })
                .collect();
            return Ok(Node::Lit(Value::Array(vals)));
        }
        Ok(Node::Array(items))
    }

    /// After a field or item of the object or array opened at `open`: whether `close` ended it
    /// (taken), or a comma says another follows (taken).
    fn closed_after(&mut self, open: usize, close: u8, what: &str) -> Result<bool, At> {
        self.ws();
        let bracket = if close == b'}' { '{' } else { '[' };
        match self.b.get(self.i) {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(&c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            None => Err(At::new(open, format!("this {bracket} is not closed"))),
            Some(_) => Err(At::new(
                self.i,
                format!("expected , or {} after {what}", close as char),
            )),
        }
    }

    /// A JSON string starting at the `"` under the cursor, split at its placeholders.
    fn string(&mut self) -> Result<Vec<Part>, At> {
        let open = self.i;
        self.i += 1;
        let mut parts = Vec::new();
        let mut buf = String::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(At::new(open, "this string is not closed"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => buf.push(self.escape()?),
                b'<' if angle_name(&self.src[self.i..]).is_some() => {
                    flush(&mut buf, &mut parts);
                    parts.push(Part::Hole(self.angle()?));
                }
                b'$' if self.b.get(self.i + 1) == Some(&b'{') => {
                    flush(&mut buf, &mut parts);
                    parts.push(Part::Hole(self.dollar()?));
                }
                b'\n' | b'\r' => {
                    return Err(At::new(self.i, "a line break inside a string; write \\n"));
                }
                c if c < 0x20 => {
                    return Err(At::new(
                        self.i,
                        "a control character inside a string; escape it",
                    ));
                }
                _ => {
                    let ch = self.src[self.i..].chars().next().unwrap_or(' ');
                    buf.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
        flush(&mut buf, &mut parts);
        Ok(parts)
    }

    fn escape(&mut self) -> Result<char, At> {
        let at = self.i;
        let e = self.b.get(self.i + 1).copied();
        self.i += 2;
        Ok(match e {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self.hex4(at)?;
                if (0xD800..0xDC00).contains(&hi) {
                    if self.src.get(self.i..self.i + 2) != Some("\\u") {
                        return Err(At::new(at, "a lone surrogate in \\u escapes"));
                    }
                    self.i += 2;
                    let lo = self.hex4(at)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(At::new(at, "a lone surrogate in \\u escapes"));
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        .ok_or_else(|| At::new(at, "an invalid \\u escape"))?
                } else {
                    char::from_u32(hi)
                        .ok_or_else(|| At::new(at, "a lone surrogate in \\u escapes"))?
                }
            }
            _ => {
                return Err(At::new(
                    at,
                    "unknown escape (JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                ));
            }
        })
    }

    fn hex4(&mut self, at: usize) -> Result<u32, At> {
        let h = self
            .src
            .get(self.i..self.i + 4)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| At::new(at, "\\u needs four hex digits"))?;
        self.i += 4;
        Ok(h)
    }

    /// `<name>` under the cursor.
    fn angle(&mut self) -> Result<Expr, At> {
        let at = self.i;
        let Some(name) = angle_name(&self.src[at..]) else {
            return Err(At::new(
                at,
                "< starts a placeholder <name>; name letters, digits and _ (write \\u003c in a string for a literal <)",
            ));
        };
        self.i += name.len() + 2;
        self.names.resolve(name, at).map_err(|mut e| {
            e.message
                .push_str("; write \\u003c in a string for a literal <");
            e
        })
    }

    /// `${expr}` under the cursor.
    fn dollar(&mut self) -> Result<Expr, At> {
        let (e, end) = expr::parse_placeholder(self.src, self.i + 2, self.names, self.depth)?;
        self.i = end;
        Ok(e)
    }
}

/// The name of a `<name>` placeholder at the start of `s`.
fn angle_name(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    let name = &rest[..end];
    expr::is_identifier(name).then_some(name)
}

fn flush(buf: &mut String, parts: &mut Vec<Part>) {
    if !buf.is_empty() {
        parts.push(Part::Text(std::mem::take(buf)));
    }
}

fn fold_str(parts: Vec<Part>) -> Node {
    match parts.as_slice() {
        [] => Node::Lit(Value::String(String::new())),
        [Part::Text(t)] => Node::Lit(Value::String(t.clone())),
        _ => Node::Str(parts),
    }
}

/// Builds the output for one event.
pub(crate) fn render(n: &Node, event: &Value, cx: Context<'_>) -> Result<Value, At> {
    let mut budget = MAX_OUTPUT_BYTES;
    render_in(n, event, cx, &mut budget)
}

fn render_in(n: &Node, event: &Value, cx: Context<'_>, budget: &mut usize) -> Result<Value, At> {
    Ok(match n {
        Node::Lit(v) => v.clone(),
        Node::Hole(e) => {
            let v = e.eval(event, cx)?.into_owned();
            spend(budget, size_hint(&v), e.at)?;
            v
        }
        Node::Str(parts) => Value::String(interpolate(parts, event, cx, budget)?),
        Node::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(render_in(i, event, cx, budget)?);
            }
            Value::Array(out)
        }
        Node::Object(fields) => {
            let mut m = Map::new();
            for (k, v) in fields {
                let key = interpolate(&k.parts, event, cx, budget)?;
                if m.contains_key(&key) {
                    return Err(At::new(k.at, format!("builds the key {key:?} twice")));
                }
                let v = render_in(v, event, cx, budget)?;
                m.insert(key, v);
            }
            Value::Object(m)
        }
    })
}

fn interpolate(
    parts: &[Part],
    event: &Value,
    cx: Context<'_>,
    budget: &mut usize,
) -> Result<String, At> {
    let mut s = String::new();
    for p in parts {
        match p {
            Part::Text(t) => s.push_str(t),
            Part::Hole(e) => {
                let v = e.eval(event, cx)?;
                let t = text(&v);
                spend(budget, t.len(), e.at)?;
                s.push_str(&t);
            }
        }
    }
    Ok(s)
}

fn spend(budget: &mut usize, n: usize, at: usize) -> Result<(), At> {
    *budget = budget.checked_sub(n).ok_or_else(|| {
        At::new(
            at,
            format!("the output would be over {MAX_OUTPUT_BYTES} bytes"),
        )
    })?;
    Ok(())
}
