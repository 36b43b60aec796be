//! Parsing and validation: turns the JSON of an EventBridge event pattern into a typed tree,
//! or into a `PatternError` naming the path and the reason. Everything downstream (the
//! reference interpreter and the compiled matcher) trusts this tree to be well formed.

use std::fmt;

use serde_json::{Map, Value};

use crate::value::{Cidr, Wildcard, lower};

/// Patterns nested deeper than this are refused, so that no later recursion can exhaust the stack.
pub const MAX_PATTERN_DEPTH: usize = 64;
/// `$or` multiplies out into alternatives; beyond this a pattern is refused rather than compiled
/// into an automaton that would be slow to build and to match.
pub const MAX_ALTERNATIVES: usize = 1024;

/// A parsed and validated event pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    pub(crate) root: Obj,
}

/// Why a pattern is invalid, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PatternError {
    /// Path relative to the pattern root, e.g. `data.total[0].numeric`; empty for the root.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// An object of the pattern: every field must match (AND), and every `$or` group must have one
/// matching branch.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Obj {
    pub fields: Vec<(String, Field)>,
    pub ors: Vec<Vec<Obj>>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Field {
    /// A nested object: matched against the event's object at this key (or each element of an array).
    Obj(Obj),
    /// A list of match conditions: the field matches when any of them matches (OR).
    Leaves(Vec<Leaf>),
}

/// One match condition on a leaf value of the event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Leaf {
    Exact(Scalar),
    Prefix(String),
    /// Stored lowercased.
    PrefixIc(String),
    Suffix(String),
    /// Stored lowercased.
    SuffixIc(String),
    /// Stored lowercased.
    EqIc(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Exists(bool),
    Cidr(Cidr),
}

/// A JSON scalar. Numbers compare as IEEE doubles, as in EventBridge (`5` equals `5.0`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// What `anything-but` excludes; it matches every present value that is not excluded.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AnythingBut {
    /// Strings only or numbers only.
    Values(Vec<Scalar>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    Wildcard(Vec<Wildcard>),
    /// Stored lowercased.
    EqIc(Vec<String>),
}

/// A numeric range; `None` is unbounded, the flag says inclusive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Range {
    pub lo: Option<(f64, bool)>,
    pub hi: Option<(f64, bool)>,
}

impl Range {
    pub fn contains(&self, x: f64) -> bool {
        let lo_ok = match self.lo {
            None => true,
            Some((b, true)) => x >= b,
            Some((b, false)) => x > b,
        };
        let hi_ok = match self.hi {
            None => true,
            Some((b, true)) => x <= b,
            Some((b, false)) => x < b,
        };
        lo_ok && hi_ok
    }
}

impl Pattern {
    /// Parses and validates an EventBridge event pattern.
    pub fn parse(json: &Value) -> Result<Pattern, PatternError> {
        let root = match json {
            Value::Object(map) => parse_obj(map, "", 0)?,
            other => return Err(err("", format!("must be an object, not {}", kind(other)))),
        };
        let n = alternatives(&root);
        if n > MAX_ALTERNATIVES {
            return Err(err(
                "",
                format!("$or expands to more than {MAX_ALTERNATIVES} alternatives"),
            ));
        }
        Ok(Pattern { root })
    }

    /// Parses a pattern given as JSON text.
    pub fn parse_str(text: &str) -> Result<Pattern, PatternError> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| err("", format!("not valid JSON: {e}")))?;
        Pattern::parse(&json)
    }
}

fn err(path: &str, reason: impl Into<String>) -> PatternError {
    PatternError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type of a value, as users read it in errors.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_obj(map: &Map<String, Value>, path: &str, depth: usize) -> Result<Obj, PatternError> {
    if depth >= MAX_PATTERN_DEPTH {
        return Err(err(
            path,
            format!("nested deeper than {MAX_PATTERN_DEPTH} levels"),
        ));
    }
    if map.is_empty() {
        return Err(err(path, "must not be an empty object"));
    }
    let mut obj = Obj {
        fields: Vec::new(),
        ors: Vec::new(),
    };
    for (key, child) in map {
        let p = join(path, key);
        if key == "$or" {
            obj.ors.push(parse_or(child, &p, depth)?);
            continue;
        }
        match child {
            Value::Object(m) => obj
                .fields
                .push((key.clone(), Field::Obj(parse_obj(m, &p, depth + 1)?))),
            Value::Array(items) if items.is_empty() => {
                return Err(err(&p, "must not be an empty list"));
            }
            Value::Array(items) => {
                let mut leaves = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    leaves.push(parse_leaf(item, &format!("{p}[{i}]"))?);
                }
                obj.fields.push((key.clone(), Field::Leaves(leaves)));
            }
            other => {
                return Err(err(
                    &p,
                    format!(
                        "match values must be in a list, e.g. [{other}], not {}",
                        kind(other)
                    ),
                ));
            }
        }
    }
    Ok(obj)
}

fn parse_or(v: &Value, path: &str, depth: usize) -> Result<Vec<Obj>, PatternError> {
    let items = match v {
        Value::Array(items) if items.len() >= 2 => items,
        _ => {
            return Err(err(
                path,
                "must be a list of at least two patterns (objects)",
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match item {
            Value::Object(m) => out.push(parse_obj(m, &p, depth + 1)?),
            other => {
                return Err(err(
                    &p,
                    format!("must be a pattern (an object), not {}", kind(other)),
                ));
            }
        }
    }
    Ok(out)
}

fn scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::Str(s.clone())),
        Value::Number(n) => n.as_f64().map(Scalar::Num),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Null => Some(Scalar::Null),
        _ => None,
    }
}

const OPERATORS: &str =
    "prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists, cidr";

fn parse_leaf(v: &Value, path: &str) -> Result<Leaf, PatternError> {
    let map = match v {
        Value::Object(m) => m,
        Value::Array(_) => {
            return Err(err(
                path,
                "a match value must be a string, number, boolean, null or an operator object, not a list",
            ));
        }
        other => {
            return scalar(other)
                .map(Leaf::Exact)
                .ok_or_else(|| err(path, "unsupported number"));
        }
    };
    let mut entries = map.iter();
    let (op, arg) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => {
            return Err(err(
                path,
                format!("an operator object needs one operator ({OPERATORS})"),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(err(
                path,
                format!(
                    "an operator object holds exactly one operator, found {}",
                    map.len()
                ),
            ));
        }
    };
    let p = format!("{path}.{op}");
    match op.as_str() {
        "prefix" => string_or_ic(arg, &p, "prefix").map(|(s, ic)| {
            if ic {
                Leaf::PrefixIc(s)
            } else {
                Leaf::Prefix(s)
            }
        }),
        "suffix" => string_or_ic(arg, &p, "suffix").map(|(s, ic)| {
            if ic {
                Leaf::SuffixIc(s)
            } else {
                Leaf::Suffix(s)
            }
        }),
        "equals-ignore-case" => match arg {
            Value::String(s) => Ok(Leaf::EqIc(lower(s).into_owned())),
            other => Err(err(
                &p,
                format!("equals-ignore-case needs a string, not {}", kind(other)),
            )),
        },
        "wildcard" => match arg {
            Value::String(s) => Wildcard::parse(s)
                .map(Leaf::Wildcard)
                .map_err(|r| err(&p, r)),
            other => Err(err(
                &p,
                format!("wildcard needs a string, not {}", kind(other)),
            )),
        },
        "anything-but" => parse_anything_but(arg, &p).map(Leaf::AnythingBut),
        "numeric" => parse_numeric(arg, &p).map(Leaf::Numeric),
        "exists" => match arg {
            Value::Bool(b) => Ok(Leaf::Exists(*b)),
            other => Err(err(
                &p,
                format!("exists needs true or false, not {}", kind(other)),
            )),
        },
        "cidr" => match arg {
            Value::String(s) => Cidr::parse(s).map(Leaf::Cidr).map_err(|r| err(&p, r)),
            other => Err(err(
                &p,
                format!(
                    "cidr needs a string such as \"10.0.0.0/24\" or \"2001:db8::/32\", not {}",
                    kind(other)
                ),
            )),
        },
        other => Err(err(
            path,
            format!("unknown operator {other:?} (expected one of {OPERATORS})"),
        )),
    }
}

/// `"x"` or `{"equals-ignore-case": "x"}`, as `prefix` and `suffix` accept; the flag says
/// ignore case (and the string is then lowercased).
fn string_or_ic(v: &Value, path: &str, op: &str) -> Result<(String, bool), PatternError> {
    match v {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(m) if m.len() == 1 => match m.get("equals-ignore-case") {
            Some(Value::String(s)) => Ok((lower(s).into_owned(), true)),
            Some(other) => Err(err(
                &format!("{path}.equals-ignore-case"),
                format!("needs a string, not {}", kind(other)),
            )),
            None => Err(err(
                path,
                format!("{op} takes a string or {{\"equals-ignore-case\": string}}"),
            )),
        },
        other => Err(err(
            path,
            format!(
                "{op} takes a string or {{\"equals-ignore-case\": string}}, not {}",
                kind(other)
            ),
        )),
    }
}

/// One string or a non-empty list of strings, as `anything-but`'s sub-operators accept.
fn strings(v: &Value, path: &str, op: &str) -> Result<Vec<String>, PatternError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(err(
                    &format!("{path}[{i}]"),
                    format!("{op} needs strings, not {}", kind(other)),
                )),
            })
            .collect(),
        other => Err(err(
            path,
            format!(
                "{op} needs a string or a non-empty list of strings, not {}",
                kind(other)
            ),
        )),
    }
}

fn parse_anything_but(v: &Value, path: &str) -> Result<AnythingBut, PatternError> {
    match v {
        Value::String(_) | Value::Number(_) => Ok(AnythingBut::Values(vec![
            scalar(v).ok_or_else(|| err(path, "unsupported number"))?,
        ])),
        Value::Array(items) if !items.is_empty() => {
            let all_str = items.iter().all(Value::is_string);
            let all_num = items.iter().all(Value::is_number);
            if !all_str && !all_num {
                return Err(err(
                    path,
                    "anything-but takes a list of only strings or only numbers",
                ));
            }
            let values = items
                .iter()
                .map(|i| scalar(i).ok_or_else(|| err(path, "unsupported number")))
                .collect::<Result<_, _>>()?;
            Ok(AnythingBut::Values(values))
        }
        Value::Object(m) if m.len() == 1 => {
            let (op, arg) = m.iter().next().expect("one entry");
            let p = format!("{path}.{op}");
            match op.as_str() {
                "prefix" => Ok(AnythingBut::Prefix(strings(arg, &p, "prefix")?)),
                "suffix" => Ok(AnythingBut::Suffix(strings(arg, &p, "suffix")?)),
                "equals-ignore-case" => Ok(AnythingBut::EqIc(
                    strings(arg, &p, "equals-ignore-case")?
                        .iter()
                        .map(|s| lower(s).into_owned())
                        .collect(),
                )),
                "wildcard" => {
                    let list = strings(arg, &p, "wildcard")?;
                    let parsed = list
                        .iter()
                        .map(|s| Wildcard::parse(s).map_err(|r| err(&p, r)))
                        .collect::<Result<_, _>>()?;
                    Ok(AnythingBut::Wildcard(parsed))
                }
                other => Err(err(
                    path,
                    format!(
                        "anything-but takes prefix, suffix, wildcard or equals-ignore-case, not {other:?}"
                    ),
                )),
            }
        }
        _ => Err(err(
            path,
            "anything-but needs a string, a number, a list of strings or numbers, or an object with prefix, suffix, wildcard or equals-ignore-case",
        )),
    }
}

const NUMERIC_SHAPE: &str = "numeric needs an operator and a number, e.g. [\">\", 0, \"<=\", 5] (operators =, <, <=, >, >=)";

fn parse_numeric(v: &Value, path: &str) -> Result<Range, PatternError> {
    let items = match v {
        Value::Array(items) if items.len() == 2 || items.len() == 4 => items,
        _ => return Err(err(path, NUMERIC_SHAPE)),
    };
    let mut range = Range { lo: None, hi: None };
    for (i, pair) in items.chunks(2).enumerate() {
        let op = match &pair[0] {
            Value::String(s) => s.as_str(),
            _ => return Err(err(&format!("{path}[{}]", 2 * i), NUMERIC_SHAPE)),
        };
        let n = match &pair[1] {
            Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
            _ => None,
        }
        .ok_or_else(|| err(&format!("{path}[{}]", 2 * i + 1), NUMERIC_SHAPE))?;
        let slot = match op {
            "=" if items.len() == 2 => {
                range.lo = Some((n, true));
                range.hi = Some((n, true));
                continue;
            }
            "=" => {
                return Err(err(
                    path,
                    "numeric \"=\" cannot be combined with another bound",
                ));
            }
            ">" | ">=" => &mut range.lo,
            "<" | "<=" => &mut range.hi,
            other => {
                return Err(err(
                    &format!("{path}[{}]", 2 * i),
                    format!("unknown numeric operator {other:?} (expected =, <, <=, >, >=)"),
                ));
            }
        };
        if slot.is_some() {
            return Err(err(
                path,
                "a numeric range needs one lower bound (> or >=) and one upper bound (< or <=)",
            ));
        }
        *slot = Some((n, op.len() == 2));
    }
    if let (Some((lo, _)), Some((hi, _))) = (range.lo, range.hi)
        && lo > hi
    {
        return Err(err(
            path,
            format!("the lower bound {lo} is above the upper bound {hi}"),
        ));
    }
    Ok(range)
}

/// How many alternatives (conjunctions) the pattern has once every `$or` is multiplied out;
/// saturating, so a hostile pattern cannot overflow.
fn alternatives(obj: &Obj) -> usize {
    let mut n: usize = 1;
    for (_, f) in &obj.fields {
        if let Field::Obj(o) = f {
            n = n.saturating_mul(alternatives(o));
        }
    }
    for group in &obj.ors {
        let sum = group
            .iter()
            .fold(0usize, |acc, b| acc.saturating_add(alternatives(b)));
        n = n.saturating_mul(sum);
    }
    n
}

/// One field condition of a conjunction: the full path and the OR-list of conditions.
pub(crate) type Clause = (Vec<String>, Vec<Leaf>);

impl Pattern {
    /// The pattern as a disjunction of conjunctions (every `$or` multiplied out).
    pub(crate) fn alternatives(&self) -> Vec<Vec<Clause>> {
        dnf(&self.root, &[])
    }
}

fn dnf(obj: &Obj, prefix: &[String]) -> Vec<Vec<Clause>> {
    let mut out: Vec<Vec<Clause>> = vec![Vec::new()];
    for (key, field) in &obj.fields {
        let mut path = prefix.to_vec();
        path.push(key.clone());
        match field {
            Field::Leaves(leaves) => {
                for conj in &mut out {
                    conj.push((path.clone(), leaves.clone()));
                }
            }
            Field::Obj(o) => out = cross(&out, &dnf(o, &path)),
        }
    }
    for group in &obj.ors {
        let alts: Vec<Vec<Clause>> = group.iter().flat_map(|b| dnf(b, prefix)).collect();
        out = cross(&out, &alts);
    }
    out
}

fn cross(a: &[Vec<Clause>], b: &[Vec<Clause>]) -> Vec<Vec<Clause>> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut c = x.clone();
            c.extend(y.iter().cloned());
            out.push(c);
        }
    }
    out
}
