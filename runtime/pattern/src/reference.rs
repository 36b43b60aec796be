//! The reference interpreter: a direct, slow, obviously-correct reading of the pattern
//! semantics, walking pattern and event side by side. It is the oracle that the property test
//! and the fuzz target hold the compiled [`Matcher`](crate::Matcher) to; nothing routes with it.

use serde_json::Value;

use crate::{
    MAX_EVENT_DEPTH,
    pattern::{AnythingBut, Field, Leaf, Obj, Pattern, Scalar},
};

/// Does `event` match `pattern`?
///
/// Semantics, as in EventBridge: fields of an object must all match; a field matches when any
/// of its conditions matches any leaf value at that path (arrays are flattened); an object
/// pattern meets an array by matching any one element as a whole, so fields of one object
/// pattern never mix different elements of one array; `exists: false` holds when the path has
/// no leaf value anywhere in the event; every other condition needs a leaf value present.
/// Values nested deeper than [`MAX_EVENT_DEPTH`] are treated as absent.
pub fn matches(pattern: &Pattern, event: &Value) -> bool {
    obj(&pattern.root, Some(event), 0, event, &mut Vec::new())
}

fn obj(p: &Obj, v: Option<&Value>, depth: usize, event: &Value, path: &mut Vec<String>) -> bool {
    let v = v.filter(|_| depth <= MAX_EVENT_DEPTH);
    if let Some(Value::Array(items)) = v
        && !items.is_empty()
    {
        return items
            .iter()
            .any(|e| obj(p, Some(e), depth + 1, event, path));
    }
    let map = match v {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    };
    for (key, f) in &p.fields {
        let child = map.and_then(|m| m.get(key));
        path.push(key.clone());
        let ok = match f {
            Field::Obj(o) => obj(o, child, depth + 1, event, path),
            Field::Leaves(leaves) => field(leaves, child, depth + 1, event, path),
        };
        path.pop();
        if !ok {
            return false;
        }
    }
    p.ors
        .iter()
        .all(|group| group.iter().any(|b| obj(b, v, depth, event, path)))
}

fn field(leaves: &[Leaf], v: Option<&Value>, depth: usize, event: &Value, path: &[String]) -> bool {
    let mut values = Vec::new();
    if let Some(v) = v {
        collect_leaves(v, depth, &mut values);
    }
    leaves.iter().any(|leaf| match leaf {
        Leaf::Exists(false) => !has_leaf(event, path, 0),
        Leaf::Exists(true) => !values.is_empty(),
        other => values.iter().any(|v| leaf_matches(other, v)),
    })
}

fn collect_leaves<'a>(v: &'a Value, depth: usize, out: &mut Vec<&'a Value>) {
    if depth > MAX_EVENT_DEPTH {
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|e| collect_leaves(e, depth + 1, out)),
        Value::Object(_) => {}
        scalar => out.push(scalar),
    }
}

/// Is there a leaf value at `path` anywhere in `v`, through every array?
fn has_leaf(v: &Value, path: &[String], depth: usize) -> bool {
    if depth > MAX_EVENT_DEPTH {
        return false;
    }
    match v {
        Value::Array(items) => items.iter().any(|e| has_leaf(e, path, depth + 1)),
        Value::Object(m) => match path.split_first() {
            Some((key, rest)) => m.get(key).is_some_and(|c| has_leaf(c, rest, depth + 1)),
            None => false,
        },
        _ => path.is_empty(),
    }
}

fn scalar_eq(s: &Scalar, v: &Value) -> bool {
    match (s, v) {
        (Scalar::Str(a), Value::String(b)) => a == b,
        (Scalar::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Null, Value::Null) => true,
        _ => false,
    }
}

fn leaf_matches(leaf: &Leaf, v: &Value) -> bool {
    let s = v.as_str();
    match leaf {
        Leaf::Exact(x) => scalar_eq(x, v),
        Leaf::Prefix(p) => s.is_some_and(|s| s.starts_with(p.as_str())),
        Leaf::PrefixIc(p) => s.is_some_and(|s| s.to_lowercase().starts_with(p.as_str())),
        Leaf::Suffix(p) => s.is_some_and(|s| s.ends_with(p.as_str())),
        Leaf::SuffixIc(p) => s.is_some_and(|s| s.to_lowercase().ends_with(p.as_str())),
        Leaf::EqIc(p) => s.is_some_and(|s| s.to_lowercase() == *p),
        Leaf::Wildcard(w) => s.is_some_and(|s| glob(&w.segs, s)),
        Leaf::Numeric(r) => v.as_f64().is_some_and(|x| r.contains(x)),
        Leaf::Cidr(c) => s
            .and_then(|s| s.parse().ok())
            .is_some_and(|ip| c.contains(ip)),
        Leaf::AnythingBut(ab) => !excluded(ab, v),
        Leaf::Exists(_) => false,
    }
}

fn excluded(ab: &AnythingBut, v: &Value) -> bool {
    let s = v.as_str();
    match ab {
        AnythingBut::Values(list) => list.iter().any(|x| scalar_eq(x, v)),
        AnythingBut::Prefix(list) => {
            s.is_some_and(|s| list.iter().any(|p| s.starts_with(p.as_str())))
        }
        AnythingBut::Suffix(list) => {
            s.is_some_and(|s| list.iter().any(|p| s.ends_with(p.as_str())))
        }
        AnythingBut::EqIc(list) => s.is_some_and(|s| list.contains(&s.to_lowercase())),
        AnythingBut::Wildcard(list) => s.is_some_and(|s| list.iter().any(|w| glob(&w.segs, s))),
    }
}

/// Textbook dynamic-programming glob over characters: segments joined by stars.
fn glob(segs: &[String], s: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Lit(char),
    }
    let mut toks = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        if i > 0 {
            toks.push(Tok::Star);
        }
        toks.extend(seg.chars().map(Tok::Lit));
    }
    let chars: Vec<char> = s.chars().collect();
    // dp[j] = do the first i tokens match the first j chars
    let mut dp = vec![false; chars.len() + 1];
    dp[0] = true;
    for tok in &toks {
        let mut next = vec![false; chars.len() + 1];
        match tok {
            Tok::Star => {
                let mut any = false;
                for j in 0..=chars.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            Tok::Lit(c) => {
                for j in 1..=chars.len() {
                    next[j] = dp[j - 1] && chars[j - 1] == *c;
                }
            }
        }
        dp = next;
    }
    dp[chars.len()]
}
