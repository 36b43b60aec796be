//! The functions expressions may call. Each is total over its argument types and bounded by
//! the size of its arguments; none reads the clock, the network or anything random, so a
//! transform gives the same output for the same event on every attempt.

use std::borrow::Cow;

use serde_json::Value;

use crate::{
    At,
    expr::{Num, check_len, equal, num, number, type_name},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Upper,
    Lower,
    Trim,
    Len,
    Str,
    Number,
    Round,
    Floor,
    Ceil,
    Abs,
    Min,
    Max,
    Contains,
    StartsWith,
    EndsWith,
    Substr,
    Replace,
    Split,
    Join,
    Keys,
    Type,
}

const TABLE: [(&str, Func, usize, usize); 21] = [
    ("upper", Func::Upper, 1, 1),
    ("lower", Func::Lower, 1, 1),
    ("trim", Func::Trim, 1, 1),
    ("len", Func::Len, 1, 1),
    ("string", Func::Str, 1, 1),
    ("number", Func::Number, 1, 1),
    ("round", Func::Round, 1, 2),
    ("floor", Func::Floor, 1, 1),
    ("ceil", Func::Ceil, 1, 1),
    ("abs", Func::Abs, 1, 1),
    ("min", Func::Min, 1, 16),
    ("max", Func::Max, 1, 16),
    ("contains", Func::Contains, 2, 2),
    ("startsWith", Func::StartsWith, 2, 2),
    ("endsWith", Func::EndsWith, 2, 2),
    ("substr", Func::Substr, 2, 3),
    ("replace", Func::Replace, 3, 3),
    ("split", Func::Split, 2, 2),
    ("join", Func::Join, 2, 2),
    ("keys", Func::Keys, 1, 1),
    ("type", Func::Type, 1, 1),
];

impl Func {
    pub(crate) const ALL: [&'static str; 21] = {
        let mut names = [""; 21];
        let mut i = 0;
        while i < TABLE.len() {
            names[i] = TABLE[i].0;
            i += 1;
        }
        names
    };

    pub(crate) fn named(name: &str) -> Option<Func> {
        TABLE.iter().find(|t| t.0 == name).map(|t| t.1)
    }

    pub(crate) fn check_arity(self, n: usize) -> Result<(), String> {
        let (min, max) = TABLE
            .iter()
            .find(|t| t.1 == self)
            .map_or((0, 16), |t| (t.2, t.3));
        if n < min || n > max {
            let want = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, 16) => format!("at least {a}"),
                (a, b) => format!("{a} or {b}"),
            };
            return Err(format!("takes {want} argument(s), got {n}"));
        }
        Ok(())
    }

    fn name(self) -> &'static str {
        TABLE.iter().find(|t| t.1 == self).map_or("?", |t| t.0)
    }

    pub(crate) fn call(self, args: &[Cow<'_, Value>], at: usize) -> Result<Value, At> {
        let name = self.name();
        let s = |i: usize| -> Result<&str, At> {
            args[i].as_str().ok_or_else(|| {
                At::new(
                    at,
                    format!(
                        "{name}: argument {} must be a string, got {}",
                        i + 1,
                        type_name(&args[i])
                    ),
                )
            })
        };
        let n = |i: usize| -> Result<Num, At> {
            num(&args[i], at, &format!("{name} argument {}", i + 1))
        };
        Ok(match self {
            Func::Upper => Value::String(s(0)?.to_uppercase()),
            Func::Lower => Value::String(s(0)?.to_lowercase()),
            Func::Trim => Value::String(s(0)?.trim().to_owned()),
            Func::Len => Value::from(match args[0].as_ref() {
                Value::String(t) => t.chars().count(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                other => {
                    return Err(At::new(
                        at,
                        format!(
                            "len: needs a string, array or object, got {}",
                            type_name(other)
                        ),
                    ));
                }
            }),
            Func::Str => Value::String(text(&args[0])),
            Func::Number => match args[0].as_ref() {
                Value::Number(_) => args[0].clone().into_owned(),
                Value::String(t) => {
                    let t = t.trim();
                    let parsed = t
                        .parse::<i64>()
                        .map(Value::from)
                        .ok()
                        .or_else(|| t.parse::<f64>().ok().and_then(|f| number(f, at).ok()));
                    parsed.ok_or_else(|| At::new(at, format!("number: {t:?} is not a number")))?
                }
                other => {
                    return Err(At::new(
                        at,
                        format!(
                            "number: needs a string or a number, got {}",
                            type_name(other)
                        ),
                    ));
                }
            },
            Func::Round => {
                let digits = if args.len() > 1 {
                    match n(1)? {
                        Num::I(d) if (0..=15).contains(&d) => d as i32,
                        _ => {
                            return Err(At::new(
                                at,
                                "round: digits must be a whole number from 0 to 15",
                            ));
                        }
                    }
                } else {
                    0
                };
                match n(0)? {
                    Num::I(i) => Value::from(i),
                    Num::F(f) => {
                        let scale = 10f64.powi(digits);
                        number((f * scale).round() / scale, at)?
                    }
                }
            }
            Func::Floor => whole(n(0)?, f64::floor, at)?,
            Func::Ceil => whole(n(0)?, f64::ceil, at)?,
            Func::Abs => match n(0)? {
                Num::I(i) => match i.checked_abs() {
                    Some(a) => Value::from(a),
                    None => number((i as f64).abs(), at)?,
                },
                Num::F(f) => number(f.abs(), at)?,
            },
            Func::Min | Func::Max => {
                let mut best = (n(0)?, 0);
                for i in 1..args.len() {
                    let x = n(i)?;
                    let better = if self == Func::Min {
                        x.f() < best.0.f()
                    } else {
                        x.f() > best.0.f()
                    };
                    if better {
                        best = (x, i);
                    }
                }
                args[best.1].clone().into_owned()
            }
            Func::Contains => Value::Bool(match (args[0].as_ref(), args[1].as_ref()) {
                (Value::String(h), Value::String(needle)) => h.contains(needle.as_str()),
                (Value::Array(items), x) => items.iter().any(|i| equal(i, x)),
                (Value::Object(o), Value::String(k)) => o.contains_key(k),
                (h, x) => {
                    return Err(At::new(
                        at,
                        format!(
                            "contains: needs (string, string), (array, value) or (object, string), got ({}, {})",
                            type_name(h),
                            type_name(x)
                        ),
                    ));
                }
            }),
            Func::StartsWith => Value::Bool(s(0)?.starts_with(s(1)?)),
            Func::EndsWith => Value::Bool(s(0)?.ends_with(s(1)?)),
            Func::Substr => {
                let t = s(0)?;
                let count = t.chars().count() as i64;
                let start = match n(1)? {
                    Num::I(i) if i < 0 => (count + i).max(0),
                    Num::I(i) => i.min(count),
                    Num::F(_) => return Err(At::new(at, "substr: start must be a whole number")),
                };
                let len = if args.len() > 2 {
                    match n(2)? {
                        Num::I(l) if l >= 0 => l,
                        _ => {
                            return Err(At::new(
                                at,
                                "substr: length must be a whole number, 0 or more",
                            ));
                        }
                    }
                } else {
                    count
                };
                Value::String(t.chars().skip(start as usize).take(len as usize).collect())
            }
            Func::Replace => {
                let (t, from, to) = (s(0)?, s(1)?, s(2)?);
                if from.is_empty() {
                    return Err(At::new(at, "replace: the text to replace is empty"));
                }
                let r = t.replace(from, to);
                check_len(&r, at)?;
                Value::String(r)
            }
            Func::Split => {
                let (t, sep) = (s(0)?, s(1)?);
                if sep.is_empty() {
                    return Err(At::new(at, "split: the separator is empty"));
                }
                Value::Array(t.split(sep).map(|p| Value::String(p.to_owned())).collect())
            }
            Func::Join => {
                let Value::Array(items) = args[0].as_ref() else {
                    return Err(At::new(
                        at,
                        format!(
                            "join: argument 1 must be an array, got {}",
                            type_name(&args[0])
                        ),
                    ));
                };
                let sep = s(1)?;
                let mut out = String::new();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    out.push_str(&text(item));
                    check_len(&out, at)?;
                }
                Value::String(out)
            }
            Func::Keys => match args[0].as_ref() {
                Value::Object(o) => {
                    Value::Array(o.keys().map(|k| Value::String(k.clone())).collect())
                }
                other => {
                    return Err(At::new(
                        at,
                        format!("keys: needs an object, got {}", type_name(other)),
                    ));
                }
            },
            Func::Type => Value::String(type_name(&args[0]).to_owned()),
        })
    }
}

fn whole(n: Num, f: fn(f64) -> f64, at: usize) -> Result<Value, At> {
    match n {
        Num::I(i) => Ok(Value::from(i)),
        Num::F(x) => number(f(x), at),
    }
}

/// A value as text: a string as it is, anything else as JSON.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
