//! The expression language of `${…}` placeholders, and input paths.
//!
//! ```text
//! expr    := cond
//! cond    := coalesce ("?" expr ":" expr)?
//! coalesce:= or ("??" or)*              a ?? b: a unless it is null
//! or      := and ("||" and)*            booleans only, short-circuit
//! and     := cmp ("&&" cmp)*
//! cmp     := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum     := product (("+" | "-") product)*     + adds numbers, joins strings or arrays
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := ("!" | "-") unary | postfix
//! postfix := primary ("." name | "[" expr "]")*  a missing field or index is null
//! primary := number | 'text' | "text" | true | false | null | "$" | name | name "(" args ")"
//!          | "[" (expr ("," expr)*)? "]" | "(" expr ")"
//! ```
//!
//! `$` is the event; a name is an input path or a built-in (`event`, `trigger`). Functions:
//! see [`crate::func`]. Arithmetic is exact on integers and falls back to floating point; a
//! type mismatch is an error, never a silent conversion.

use std::{borrow::Cow, collections::HashMap};

use serde_json::{Number, Value};

use crate::{At, Context, MAX_DEPTH, MAX_OUTPUT_BYTES, func::Func};

/// A compiled expression; `at` is its byte offset in the template, for errors.
#[derive(Clone, Debug)]
pub struct Expr {
    pub(crate) at: usize,
    pub(crate) kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Lit(Value),
    Root,
    Trigger,
    Field(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Coalesce(Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    List(Vec<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The input paths of a transform by name, compiled.
#[derive(Clone, Debug, Default)]
pub struct Names {
    paths: HashMap<String, Expr>,
}

impl Names {
    pub(crate) fn insert(&mut self, name: &str, path: Expr) {
        self.paths.insert(name.to_owned(), path);
    }

    /// What `name` stands for at offset `at`, or why it stands for nothing.
    pub(crate) fn resolve(&self, name: &str, at: usize) -> Result<Expr, At> {
        let kind = match name {
            "event" => Kind::Root,
            "trigger" => Kind::Trigger,
            _ => match self.paths.get(name) {
                Some(p) => return Ok(relocated(p, at)),
                None => {
                    let mut known: Vec<&str> = self.paths.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    let known = if known.is_empty() {
                        "none are defined".to_owned()
                    } else {
                        format!("inputPaths defines {}", known.join(", "))
                    };
                    return Err(At::new(
                        at,
                        format!("unknown name {name:?} ({known}; built in: event, trigger)"),
                    ));
                }
            },
        };
        Ok(Expr { at, kind })
    }
}

/// A copy of a compiled input path whose errors point at the placeholder that used it.
fn relocated(e: &Expr, at: usize) -> Expr {
    let kind = match &e.kind {
        Kind::Field(inner, k) => Kind::Field(Box::new(relocated(inner, at)), k.clone()),
        Kind::Index(inner, i) => Kind::Index(Box::new(relocated(inner, at)), i.clone()),
        other => other.clone(),
    };
    Expr { at, kind }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn is_keyword(s: &str) -> bool {
    matches!(s, "true" | "false" | "null")
}

/// An input path: `$` then `.name` (letters, digits, `_`, `-`), `['key']` or `[index]` steps.
/// A path that no CloudEvent can have is refused: attributes are lowercase letters and digits,
/// and only `data` has anything inside it.
pub fn parse_path(path: &str) -> Result<Expr, String> {
    let steps = path_steps(path)?;
    let mut e = Expr {
        at: 0,
        kind: Kind::Root,
    };
    for s in steps {
        e = match s {
            Value::String(k) => Expr {
                at: 0,
                kind: Kind::Field(Box::new(e), k),
            },
            index => Expr {
                at: 0,
                kind: Kind::Index(
                    Box::new(e),
                    Box::new(Expr {
                        at: 0,
                        kind: Kind::Lit(index),
                    }),
                ),
            },
        };
    }
    Ok(e)
}

/// The steps of an input path from the event's root: a string is a key, a number an index.
pub fn path_steps(path: &str) -> Result<Vec<Value>, String> {
    let b = path.as_bytes();
    if b.first() != Some(&b'$') {
        return Err(format!(
            "{path:?} must start with $ (the event), e.g. $.data.id"
        ));
    }
    let mut steps: Vec<Value> = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-')
                {
                    j += 1;
                }
                if j == start {
                    return Err(format!(
                        "{path:?}: expected a field name after the . at character {}",
                        i + 1
                    ));
                }
                steps.push(Value::String(path[start..j].to_owned()));
                i = j;
            }
            b'[' => {
                let close = path[i..]
                    .find(']')
                    .map(|k| i + k)
                    .ok_or_else(|| format!("{path:?}: [ at character {} is not closed", i + 1))?;
                let inner = path[i + 1..close].trim();
                let step = if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    Value::String(q.to_owned())
                } else if let Ok(n) = inner.parse::<i64>() {
                    Value::from(n)
                } else {
                    return Err(format!(
                        "{path:?}: [{inner}] must be an index ([0], [-1] for the last) or a quoted key (['a b'])"
                    ));
                };
                steps.push(step);
                i = close + 1;
            }
            _ => {
                return Err(format!(
                    "{path:?}: unexpected {:?} at character {}; steps are .name, ['key'] or [index]",
                    path[i..].chars().next().unwrap_or(' '),
                    i + 1
                ));
            }
        }
    }
    check_reachable(&steps).map_err(|why| format!("{path:?} cannot exist: {why}"))?;
    Ok(steps)
}

/// Why steps from the event's root cannot lead anywhere in a CloudEvent, if they cannot.
fn check_reachable(steps: &[Value]) -> Result<(), String> {
    let Some(first) = steps.first() else {
        return Ok(());
    };
    let Value::String(attr) = first else {
        return Err("the event is an object, not an array".into());
    };
    let lower_alnum = !attr.is_empty()
        && attr
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if attr != "data_base64" && !lower_alnum {
        return Err(format!(
            "{attr:?} is not an attribute name (CloudEvents attributes are lowercase letters and digits; the payload is under data)"
        ));
    }
    if attr != "data" && steps.len() > 1 {
        return Err(format!(
            "{attr} is a single value (only data has fields inside it)"
        ));
    }
    Ok(())
}

// ---- lexing ----

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Number),
    Str(String),
    Ident(String),
    Dollar,
    Dot,
    LBrack,
    RBrack,
    LParen,
    RParen,
    Comma,
    Question,
    Colon,
    Coalesce,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Not,
    /// The `}` that closes the placeholder.
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Ident(s) => format!("name {s:?}"),
        Tok::End => "the closing }".into(),
        other => format!("{:?}", symbol(other)),
    }
}

fn symbol(t: &Tok) -> &'static str {
    match t {
        Tok::Dollar => "$",
        Tok::Dot => ".",
        Tok::LBrack => "[",
        Tok::RBrack => "]",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::Comma => ",",
        Tok::Question => "?",
        Tok::Colon => ":",
        Tok::Coalesce => "??",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        Tok::Percent => "%",
        Tok::EqEq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        Tok::And => "&&",
        Tok::Or => "||",
        Tok::Not => "!",
        _ => "?",
    }
}

/// Tokens from `src[start..]` up to and including the `}` that ends the placeholder, each
/// with its offset; and the offset just past that `}`.
fn lex(src: &str, start: usize) -> Result<(Vec<(usize, Tok)>, usize), At> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = start;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return Err(At::new(start, "this ${ is not closed by }"));
        };
        let at = i;
        let two = |s: &[u8]| b.get(i..i + 2) == Some(s);
        let (tok, len) = match c {
            b'}' => {
                out.push((at, Tok::End));
                return Ok((out, i + 1));
            }
            b'$' => (Tok::Dollar, 1),
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => (Tok::Dot, 1),
            b'[' => (Tok::LBrack, 1),
            b']' => (Tok::RBrack, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b',' => (Tok::Comma, 1),
            b'?' if two(b"??") => (Tok::Coalesce, 2),
            b'?' => (Tok::Question, 1),
            b':' => (Tok::Colon, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'%' => (Tok::Percent, 1),
            b'=' if two(b"==") => (Tok::EqEq, 2),
            b'!' if two(b"!=") => (Tok::Ne, 2),
            b'!' => (Tok::Not, 1),
            b'<' if two(b"<=") => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if two(b">=") => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'&' if two(b"&&") => (Tok::And, 2),
            b'|' if two(b"||") => (Tok::Or, 2),
            b'\'' | b'"' => {
                let (s, end) = lex_string(src, i)?;
                out.push((at, Tok::Str(s)));
                i = end;
                continue;
            }
            c if c.is_ascii_digit() || c == b'.' => {
                let mut j = i;
                while j < b.len()
                    && (b[j].is_ascii_digit()
                        || b[j] == b'.'
                        || b[j] == b'e'
                        || b[j] == b'E'
                        || ((b[j] == b'+' || b[j] == b'-') && matches!(b[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                let text = &src[i..j];
                let n = text
                    .parse::<i64>()
                    .ok()
                    .map(Number::from)
                    .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
                    .ok_or_else(|| At::new(at, format!("{text:?} is not a number")))?;
                out.push((at, Tok::Num(n)));
                i = j;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                out.push((at, Tok::Ident(src[i..j].to_owned())));
                i = j;
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                let hint = match c {
                    b'=' => " (compare with ==)",
                    b'&' => " (and is &&)",
                    b'|' => " (or is ||)",
                    b'{' => " (placeholders do not nest)",
                    _ => "",
                };
                return Err(At::new(at, format!("unexpected {ch:?}{hint}")));
            }
        };
        out.push((at, tok));
        i += len;
    }
}

/// A quoted string starting at `src[start]` (`'` or `"`), with JSON's escapes; its text and
/// the offset past the closing quote.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), At> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        let at = start + 1 + k;
        match c {
            c if c == quote => return Ok((out, at + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' | '\'' | '"' | '/' => e,
                    _ => {
                        return Err(At::new(
                            at,
                            format!("unknown escape \\{e} (known: \\n \\t \\r \\\\ \\' \\\")"),
                        ));
                    }
                });
            }
            '\n' => return Err(At::new(at, "a line break inside a string; write \\n")),
            c => out.push(c),
        }
    }
    Err(At::new(start, "this string is not closed"))
}

// ---- parsing ----

/// How a left-associative operator joins its operands.
#[derive(Clone, Copy)]
enum Joint {
    Coalesce,
    Or,
    And,
    Bin(Op),
}

struct Parser<'n> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    names: &'n Names,
    depth: usize,
}

/// Parses the expression of a `${` whose contents start at `src[start]`; the expression and
/// the offset past its `}`. `depth` is the template nesting it sits in.
pub(crate) fn parse_placeholder(
    src: &str,
    start: usize,
    names: &Names,
    depth: usize,
) -> Result<(Expr, usize), At> {
    let (toks, end) = lex(src, start)?;
    if toks.len() == 1 {
        return Err(At::new(start, "empty ${}: write an expression inside"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        names,
        depth,
    };
    let e = p.expr()?;
    let (at, t) = p.peek();
    if *t != Tok::End {
        return Err(At::new(
            at,
            format!(
                "expected the closing }} or an operator, found {}",
                describe(t)
            ),
        ));
    }
    Ok((e, end))
}

impl Parser<'_> {
    fn peek(&self) -> (usize, &Tok) {
        let (at, t) = &self.toks[self.pos.min(self.toks.len() - 1)];
        (*at, t)
    }

    fn next(&mut self) -> (usize, Tok) {
        let (at, t) = self.toks[self.pos.min(self.toks.len() - 1)].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        (at, t)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek().1 == t {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), At> {
        let (at, found) = self.peek();
        if found == t {
            self.pos += 1;
            Ok(())
        } else {
            Err(At::new(
                at,
                format!("expected {:?} {what}, found {}", symbol(t), describe(found)),
            ))
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), At> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(At::new(at, format!("nested more than {MAX_DEPTH} deep")));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, At> {
        let at = self.peek().0;
        self.enter(at)?;
        let cond = self.coalesce()?;
        let e = if self.eat(&Tok::Question) {
            let then = self.expr()?;
            self.expect(&Tok::Colon, "between the branches of ?:")?;
            let other = self.expr()?;
            Expr {
                at,
                kind: Kind::Cond(Box::new(cond), Box::new(then), Box::new(other)),
            }
        } else {
            cond
        };
        self.depth -= 1;
        Ok(e)
    }

    /// Left-associative operators of one precedence level: `next` parses the operands, `pick`
    /// says which tokens join them and how.
    fn chain(
        &mut self,
        next: fn(&mut Self) -> Result<Expr, At>,
        pick: fn(&Tok) -> Option<Joint>,
    ) -> Result<Expr, At> {
        let mut e = next(self)?;
        while let Some(joint) = pick(self.peek().1) {
            let at = self.next().0;
            let (l, r) = (Box::new(e), Box::new(next(self)?));
            let kind = match joint {
                Joint::Coalesce => Kind::Coalesce(l, r),
                Joint::Or => Kind::Or(l, r),
                Joint::And => Kind::And(l, r),
                Joint::Bin(op) => Kind::Bin(op, l, r),
            };
            e = Expr { at, kind };
        }
        Ok(e)
    }

    fn coalesce(&mut self) -> Result<Expr, At> {
        self.chain(Self::or, |t| {
            (*t == Tok::Coalesce).then_some(Joint::Coalesce)
        })
    }

    fn or(&mut self) -> Result<Expr, At> {
        self.chain(Self::and, |t| (*t == Tok::Or).then_some(Joint::Or))
    }

    fn and(&mut self) -> Result<Expr, At> {
        self.chain(Self::cmp, |t| (*t == Tok::And).then_some(Joint::And))
    }

    fn cmp(&mut self) -> Result<Expr, At> {
        let e = self.sum()?;
        let op = match self.peek().1 {
            Tok::EqEq => Op::Eq,
            Tok::Ne => Op::Ne,
            Tok::Lt => Op::Lt,
            Tok::Le => Op::Le,
            Tok::Gt => Op::Gt,
            Tok::Ge => Op::Ge,
            _ => return Ok(e),
        };
        let at = self.next().0;
        let r = self.sum()?;
        if matches!(
            self.peek().1,
            Tok::EqEq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge
        ) {
            return Err(At::new(
                self.peek().0,
                "comparisons do not chain: write a < b && b < c",
            ));
        }
        Ok(Expr {
            at,
            kind: Kind::Bin(op, Box::new(e), Box::new(r)),
        })
    }

    fn sum(&mut self) -> Result<Expr, At> {
        self.chain(Self::product, |t| match t {
            Tok::Plus => Some(Joint::Bin(Op::Add)),
            Tok::Minus => Some(Joint::Bin(Op::Sub)),
            _ => None,
        })
    }

    fn product(&mut self) -> Result<Expr, At> {
        self.chain(Self::unary, |t| match t {
            Tok::Star => Some(Joint::Bin(Op::Mul)),
            Tok::Slash => Some(Joint::Bin(Op::Div)),
            Tok::Percent => Some(Joint::Bin(Op::Rem)),
            _ => None,
        })
    }

    fn unary(&mut self) -> Result<Expr, At> {
        let (at, t) = self.peek();
        let neg = match t {
            Tok::Not => false,
            Tok::Minus => true,
            _ => return self.postfix(),
        };
        self.pos += 1;
        self.enter(at)?;
        let inner = Box::new(self.unary()?);
        self.depth -= 1;
        Ok(Expr {
            at,
            kind: if neg {
                Kind::Neg(inner)
            } else {
                Kind::Not(inner)
            },
        })
    }

    fn postfix(&mut self) -> Result<Expr, At> {
        let mut e = self.primary()?;
        loop {
            let (at, t) = self.peek();
            match t {
                Tok::Dot => {
                    self.pos += 1;
                    let (nat, n) = self.next();
                    let Tok::Ident(name) = n else {
                        return Err(At::new(
                            nat,
                            format!(
                                "expected a field name after ., found {} (write ['key'] for other keys)",
                                describe(&n)
                            ),
                        ));
                    };
                    e = Expr {
                        at,
                        kind: Kind::Field(Box::new(e), name),
                    };
                }
                Tok::LBrack => {
                    self.pos += 1;
                    let index = self.expr()?;
                    self.expect(&Tok::RBrack, "to close the index")?;
                    e = Expr {
                        at,
                        kind: Kind::Index(Box::new(e), Box::new(index)),
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    /// Comma-separated expressions up to and including `close` (the opening token is taken).
    fn list(&mut self, close: &Tok, between: &str) -> Result<Vec<Expr>, At> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(&Tok::Comma, between)?;
        }
    }

    fn primary(&mut self) -> Result<Expr, At> {
        let (at, t) = self.next();
        let kind = match t {
            Tok::Num(n) => Kind::Lit(Value::Number(n)),
            Tok::Str(s) => Kind::Lit(Value::String(s)),
            Tok::Dollar => Kind::Root,
            Tok::LBrack => Kind::List(self.list(&Tok::RBrack, "between items")?),
            Tok::LParen => {
                let e = self.expr()?;
                self.expect(&Tok::RParen, "to close the (")?;
                return Ok(e);
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Kind::Lit(Value::Bool(true)),
                "false" => Kind::Lit(Value::Bool(false)),
                "null" => Kind::Lit(Value::Null),
                _ if self.peek().1 == &Tok::LParen => {
                    self.pos += 1;
                    let func = Func::named(&name).ok_or_else(|| {
                        At::new(
                            at,
                            format!(
                                "unknown function {name:?} (known: {})",
                                Func::ALL.join(", ")
                            ),
                        )
                    })?;
                    let args = self.list(&Tok::RParen, "between arguments")?;
                    func.check_arity(args.len())
                        .map_err(|m| At::new(at, format!("{name}: {m}")))?;
                    Kind::Call(func, args)
                }
                _ => return self.names.resolve(&name, at),
            },
            other => {
                return Err(At::new(
                    at,
                    format!("expected a value, found {}", describe(&other)),
                ));
            }
        };
        Ok(Expr { at, kind })
    }
}

// ---- evaluation ----

pub(crate) type Val<'e> = Cow<'e, Value>;

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A number as i64 when it is one, else as f64.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Num {
    I(i64),
    F(f64),
}

impl Num {
    pub(crate) fn of(n: &Number) -> Num {
        match n.as_i64() {
            Some(i) => Num::I(i),
            None => Num::F(n.as_f64().unwrap_or(f64::NAN)),
        }
    }

    pub(crate) fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

/// `f` as JSON: an integer when it is a whole number that an f64 holds exactly.
pub(crate) fn number(f: f64, at: usize) -> Result<Value, At> {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| At::new(at, "the result is not a finite number"))
}

/// `v` as a number, or an error saying that `what` needs one.
pub(crate) fn num(v: &Value, at: usize, what: &str) -> Result<Num, At> {
    match v {
        Value::Number(n) => Ok(Num::of(n)),
        other => Err(At::new(
            at,
            format!("{what} needs a number, got {}", type_name(other)),
        )),
    }
}

/// Whether two values are equal, numbers by value (1 == 1.0).
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (Num::of(x), Num::of(y)) {
            (Num::I(x), Num::I(y)) => x == y,
            (x, y) => x.f() == y.f(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

pub(crate) fn check_len(s: &str, at: usize) -> Result<(), At> {
    check_size(s.len(), at)
}

fn check_size(n: usize, at: usize) -> Result<(), At> {
    if n > MAX_OUTPUT_BYTES {
        return Err(At::new(
            at,
            format!("builds a value over {MAX_OUTPUT_BYTES} bytes"),
        ));
    }
    Ok(())
}

impl Expr {
    pub(crate) fn eval<'e>(&'e self, event: &'e Value, cx: Context<'_>) -> Result<Val<'e>, At> {
        let at = self.at;
        Ok(match &self.kind {
            Kind::Lit(v) => Cow::Borrowed(v),
            Kind::Root => Cow::Borrowed(event),
            Kind::Trigger => Cow::Owned(Value::String(cx.trigger.to_owned())),
            Kind::Field(inner, key) => match inner.eval(event, cx)? {
                Cow::Borrowed(v) => Cow::Borrowed(v.get(key).unwrap_or(&Value::Null)),
                Cow::Owned(v) => Cow::Owned(v.get(key).cloned().unwrap_or(Value::Null)),
            },
            Kind::Index(inner, index) => {
                let base = inner.eval(event, cx)?;
                let index = index.eval(event, cx)?;
                let pick = |v: &Value| -> Result<Option<usize>, At> {
                    match (v, index.as_ref()) {
                        (Value::Array(items), Value::Number(n)) => {
                            let Some(i) = n.as_i64() else {
                                return Err(At::new(
                                    at,
                                    format!("index {n} is not a whole number"),
                                ));
                            };
                            let len = items.len() as i64;
                            let i = if i < 0 { len + i } else { i };
                            Ok((0..len).contains(&i).then_some(i as usize))
                        }
                        (_, Value::Number(_) | Value::String(_)) => Ok(None),
                        (_, other) => Err(At::new(
                            at,
                            format!("an index is a number or a string, got {}", type_name(other)),
                        )),
                    }
                };
                let key = index.as_str();
                match base {
                    Cow::Borrowed(v) => Cow::Borrowed(match (key, pick(v)?) {
                        (Some(k), _) => v.get(k).unwrap_or(&Value::Null),
                        (None, Some(i)) => &v[i],
                        (None, None) => &Value::Null,
                    }),
                    Cow::Owned(v) => Cow::Owned(match (key, pick(&v)?) {
                        (Some(k), _) => v.get(k).cloned().unwrap_or(Value::Null),
                        (None, Some(i)) => v[i].clone(),
                        (None, None) => Value::Null,
                    }),
                }
            }
            Kind::Not(inner) => Cow::Owned(Value::Bool(!boolean(
                inner.eval(event, cx)?.as_ref(),
                at,
                "!",
            )?)),
            Kind::Neg(inner) => {
                let v = inner.eval(event, cx)?;
                Cow::Owned(match num(&v, at, "-")? {
                    Num::I(i) => match i.checked_neg() {
                        Some(n) => Value::from(n),
                        None => number(-(i as f64), at)?,
                    },
                    Num::F(f) => number(-f, at)?,
                })
            }
            Kind::And(a, b) => Cow::Owned(Value::Bool(
                boolean(a.eval(event, cx)?.as_ref(), at, "&&")?
                    && boolean(b.eval(event, cx)?.as_ref(), at, "&&")?,
            )),
            Kind::Or(a, b) => Cow::Owned(Value::Bool(
                boolean(a.eval(event, cx)?.as_ref(), at, "||")?
                    || boolean(b.eval(event, cx)?.as_ref(), at, "||")?,
            )),
            Kind::Coalesce(a, b) => match a.eval(event, cx)? {
                v if v.is_null() => b.eval(event, cx)?,
                v => v,
            },
            Kind::Cond(c, t, e) => {
                if boolean(c.eval(event, cx)?.as_ref(), at, "the condition of ?:")? {
                    t.eval(event, cx)?
                } else {
                    e.eval(event, cx)?
                }
            }
            Kind::Bin(op, a, b) => {
                let (a, b) = (a.eval(event, cx)?, b.eval(event, cx)?);
                Cow::Owned(binary(*op, &a, &b, at)?)
            }
            Kind::List(items) => {
                let mut vals = Vec::with_capacity(items.len());
                let mut size = 0;
                for i in items {
                    let v = i.eval(event, cx)?.into_owned();
                    size += size_hint(&v);
                    check_size(size, at)?;
                    vals.push(v);
                }
                Cow::Owned(Value::Array(vals))
            }
            Kind::Call(f, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(a.eval(event, cx)?);
                }
                Cow::Owned(f.call(&vals, at)?)
            }
        })
    }
}

fn boolean(v: &Value, at: usize, what: &str) -> Result<bool, At> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(At::new(
            at,
            format!(
                "{what} needs a boolean, got {} (compare it, or use ?? for a default)",
                type_name(other)
            ),
        )),
    }
}

fn binary(op: Op, a: &Value, b: &Value, at: usize) -> Result<Value, At> {
    match op {
        Op::Eq => return Ok(Value::Bool(equal(a, b))),
        Op::Ne => return Ok(Value::Bool(!equal(a, b))),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let ord = match (a, b) {
                (Value::Number(x), Value::Number(y)) => match (Num::of(x), Num::of(y)) {
                    (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
                    (x, y) => x.f().partial_cmp(&y.f()),
                },
                (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                _ => {
                    return Err(At::new(
                        at,
                        format!(
                            "cannot order {} and {} (both numbers or both strings)",
                            type_name(a),
                            type_name(b)
                        ),
                    ));
                }
            };
            let Some(ord) = ord else {
                return Ok(Value::Bool(false));
            };
            return Ok(Value::Bool(match op {
                Op::Lt => ord.is_lt(),
                Op::Le => ord.is_le(),
                Op::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }));
        }
        _ => {}
    }
    if op == Op::Add {
        match (a, b) {
            (Value::String(x), Value::String(y)) => {
                let s = format!("{x}{y}");
                check_len(&s, at)?;
                return Ok(Value::String(s));
            }
            (Value::Array(x), Value::Array(y)) => {
                check_size(size_hint(a) + size_hint(b), at)?;
                return Ok(Value::Array(x.iter().chain(y).cloned().collect()));
            }
            (Value::Number(_), Value::Number(_)) => {}
            _ => {
                return Err(At::new(
                    at,
                    format!(
                        "cannot add {} and {} (+ adds numbers, joins strings or arrays; string(x) turns a value into text)",
                        type_name(a),
                        type_name(b)
                    ),
                ));
            }
        }
    }
    let verb = match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mul => "*",
        Op::Div => "/",
        _ => "%",
    };
    let x = num(a, at, verb)?;
    let y = num(b, at, verb)?;
    if matches!(op, Op::Div | Op::Rem) && y.f() == 0.0 {
        return Err(At::new(at, "division by zero"));
    }
    if let (Num::I(x), Num::I(y)) = (x, y) {
        let exact = match op {
            Op::Add => x.checked_add(y),
            Op::Sub => x.checked_sub(y),
            Op::Mul => x.checked_mul(y),
            Op::Rem => x.checked_rem(y),
            _ => (x.checked_rem(y) == Some(0))
                .then(|| x.checked_div(y))
                .flatten(),
        };
        if let Some(n) = exact {
            return Ok(Value::from(n));
        }
    }
    let (x, y) = (x.f(), y.f());
    number(
        match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            Op::Div => x / y,
            _ => x % y,
        },
        at,
    )
}

/// Roughly how many bytes of JSON text `v` takes, without writing it.
pub(crate) fn size_hint(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| size_hint(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + size_hint(x))
                .sum::<usize>()
        }
    }
}
