//! Whether a new version of an EventSchema keeps the promise of the one before, in the terms of
//! schema registries (Confluent's, Apicurio's): **backward** — every event valid under the
//! previous version is valid under the new one (consumers may upgrade first; the default);
//! **forward** — every event valid under the new version was valid under the previous one
//! (handlers written for the old version keep working); **full** — both; **none** — no check.
//!
//! The check is structural and conservative: it proves containment keyword by keyword and
//! reports what it cannot prove, naming the data path and the change. One assumption keeps
//! ordinary evolution possible: an object's undeclared properties are taken to be absent, so
//! declaring a new optional property is compatible although an open old schema accepted any
//! value under that name. Local references (`#/$defs/…`) are followed; anything else a
//! version changes in a combinator (`allOf`, `oneOf`, `if`, …) is reported as a change.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::path::push_key;

/// How consecutive versions must relate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compatibility {
    #[default]
    Backward,
    Forward,
    Full,
    None,
}

/// What the new version breaks of the old one's promise under `mode`, one line per change:
/// `$.data.total: type narrowed from ["number"] to ["integer"]`. Empty: compatible.
pub fn breaks(old: &Value, new: &Value, mode: Compatibility) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(mode, Compatibility::Backward | Compatibility::Full) {
        Check::new(old, new, false, &mut out).covers(old, new, "$.data", 0);
    }
    if matches!(mode, Compatibility::Forward | Compatibility::Full) {
        Check::new(old, new, true, &mut out).covers(new, old, "$.data", 0);
    }
    out.dedup();
    out
}

/// Deepest nesting (and `$ref` chain) followed; deeper is reported as unprovable.
const MAX_DEPTH: usize = 64;

/// Keywords whose every change is a change of what is accepted, in either direction.
const EXACT: &[&str] = &[
    "$ref",
    "pattern",
    "format",
    "multipleOf",
    "contentMediaType",
    "contentEncoding",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedProperties",
    "unevaluatedItems",
];

/// Lower bounds: the covering schema's must not be higher.
const LOWER: &[&str] = &[
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
/// Upper bounds: the covering schema's must not be lower.
const UPPER: &[&str] = &[
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

struct Check<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// Checking that the old version covers the new one (forward) rather than the reverse.
    forward: bool,
    /// Both versions define the same `$defs`: equal subschemas mean the same even with `$ref`.
    same_defs: bool,
    out: &'a mut Vec<String>,
}

impl<'a> Check<'a> {
    fn new(
        old_root: &'a Value,
        new_root: &'a Value,
        forward: bool,
        out: &'a mut Vec<String>,
    ) -> Self {
        let defs = |r: &'a Value| (r.get("$defs"), r.get("definitions"));
        Self {
            old_root,
            new_root,
            forward,
            same_defs: defs(old_root) == defs(new_root),
            out,
        }
    }

    /// `(narrow root, wide root)`: the roots `a` and `b` of [`Self::covers`] resolve in.
    fn roots(&self) -> (&'a Value, &'a Value) {
        if self.forward {
            (self.new_root, self.old_root)
        } else {
            (self.old_root, self.new_root)
        }
    }

    fn say(&mut self, path: &str, what: String) {
        self.out.push(format!("{path}: {what}"));
    }

    /// Requires every instance `a` accepts to be accepted by `b`, recording what stops it.
    fn covers(&mut self, a: &Value, b: &Value, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.say(path, "nested or referenced too deeply to check".into());
            return;
        }
        let (ra, rb) = self.roots();
        let (a, b) = match (resolve(a, ra, depth), resolve(b, rb, depth)) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                self.say(
                    path,
                    "a $ref that does not resolve inside the schema".into(),
                );
                return;
            }
        };
        if a == b && (self.same_defs || !has_ref(a)) {
            return;
        }
        let empty = Map::new();
        let (ma, mb) = match (a, b) {
            (_, Value::Bool(true)) | (Value::Bool(false), _) => return,
            (_, Value::Bool(false)) => {
                let what = if self.forward {
                    "the previous version accepted nothing here"
                } else {
                    "now accepts nothing"
                };
                self.say(path, what.into());
                return;
            }
            (Value::Bool(true), Value::Object(mb)) => (&empty, mb),
            (Value::Object(ma), Value::Object(mb)) => (ma, mb),
            _ => {
                self.say(path, "not a schema".into());
                return;
            }
        };
        self.types(ma, mb, path);
        self.values(ma, mb, path);
        self.required(ma, mb, path);
        self.bounds(ma, mb, path);
        for kw in EXACT {
            if let Some(vb) = mb.get(*kw)
                && ma.get(*kw) != Some(vb)
            {
                let (o, n) = self.old_new_opt(ma.get(*kw), Some(vb));
                self.say(path, format!("{kw} changed from {o} to {n}"));
            }
        }
        self.properties(ma, mb, path, depth);
        self.items(ma, mb, path, depth);
    }

    fn old_new_opt(&self, a: Option<&Value>, b: Option<&Value>) -> (String, String) {
        let (o, n) = if self.forward { (b, a) } else { (a, b) };
        (show(o), show(n))
    }

    fn types(&mut self, ma: &Map<String, Value>, mb: &Map<String, Value>, path: &str) {
        let Some(tb) = types(mb) else { return };
        let ta = types(ma);
        let lost: Vec<&str> = match &ta {
            None => vec!["any"],
            Some(ta) => ta
                .iter()
                .copied()
                .filter(|t| !(tb.contains(t) || (*t == "integer" && tb.contains("number"))))
                .collect(),
        };
        if lost.is_empty() {
            return;
        }
        let (o, n) = self.old_new_opt(ma.get("type"), mb.get("type"));
        let verb = if self.forward { "widened" } else { "narrowed" };
        self.say(path, format!("type {verb} from {o} to {n}"));
    }

    fn values(&mut self, ma: &Map<String, Value>, mb: &Map<String, Value>, path: &str) {
        let Some(eb) = allowed(mb) else { return };
        let lost: Vec<&Value> = match allowed(ma) {
            None => {
                let (o, n) = self.old_new_opt(
                    ma.get("enum").or(ma.get("const")),
                    mb.get("enum").or(mb.get("const")),
                );
                let what = if self.forward { "removed" } else { "added" };
                self.say(
                    path,
                    format!("a fixed set of values {what} (from {o} to {n})"),
                );
                return;
            }
            Some(ea) => ea.into_iter().filter(|v| !eb.contains(v)).collect(),
        };
        if !lost.is_empty() {
            let list = Value::Array(lost.into_iter().cloned().collect());
            let what = if self.forward { "added" } else { "removed" };
            self.say(
                path,
                format!("allowed values {what}: {}", show(Some(&list))),
            );
        }
    }

    fn required(&mut self, ma: &Map<String, Value>, mb: &Map<String, Value>, path: &str) {
        let ra = names(ma.get("required"));
        for f in names(mb.get("required")) {
            if !ra.contains(&f) {
                let what = if self.forward { "removed" } else { "added" };
                self.say(path, format!("required field {f:?} {what}"));
            }
        }
    }

    fn bounds(&mut self, ma: &Map<String, Value>, mb: &Map<String, Value>, path: &str) {
        for (list, lower) in [(LOWER, true), (UPPER, false)] {
            for kw in list {
                let Some(b) = mb.get(*kw).and_then(Value::as_f64) else {
                    continue;
                };
                let ok = ma
                    .get(*kw)
                    .and_then(Value::as_f64)
                    .is_some_and(|a| if lower { a >= b } else { a <= b });
                if !ok {
                    let (o, n) = self.old_new_opt(ma.get(*kw), mb.get(*kw));
                    self.say(path, format!("{kw} changed from {o} to {n}"));
                }
            }
        }
        if mb.get("uniqueItems") == Some(&Value::Bool(true))
            && ma.get("uniqueItems") != Some(&Value::Bool(true))
        {
            let (o, n) = self.old_new_opt(ma.get("uniqueItems"), mb.get("uniqueItems"));
            self.say(path, format!("uniqueItems changed from {o} to {n}"));
        }
    }

    fn properties(
        &mut self,
        ma: &Map<String, Value>,
        mb: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let empty = Map::new();
        let pa = ma
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let pb = mb
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let open = Value::Bool(true);
        let extra_a = ma.get("additionalProperties").unwrap_or(&open);
        let extra_b = mb.get("additionalProperties").unwrap_or(&open);
        for (k, sa) in pa {
            let mut at = path.to_owned();
            push_key(&mut at, k);
            match (pb.get(k), extra_b) {
                (Some(sb), _) => self.covers(sa, sb, &at, depth + 1),
                (None, Value::Bool(false)) => {
                    let what = if self.forward {
                        "added, but the previous version refused undeclared properties"
                    } else {
                        "removed, and additionalProperties is false"
                    };
                    self.say(path, format!("property {k:?} {what}"));
                }
                (None, extra) => self.covers(sa, extra, &at, depth + 1),
            }
        }
        // Undeclared properties of `a` are taken to be absent (see the module comment), so
        // only closing the object or constraining them is a change.
        if extra_b != &open && extra_a != extra_b && extra_a != &Value::Bool(false) {
            let (o, n) = self.old_new_opt(
                ma.get("additionalProperties"),
                mb.get("additionalProperties"),
            );
            self.say(
                path,
                format!("additionalProperties changed from {o} to {n}"),
            );
        }
    }

    fn items(
        &mut self,
        ma: &Map<String, Value>,
        mb: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let any = Value::Bool(true);
        if let Some(ib) = mb.get("items") {
            let ia = ma.get("items").unwrap_or(&any);
            self.covers(ia, ib, &format!("{path}[*]"), depth + 1);
        }
        if let Some(Value::Array(pb)) = mb.get("prefixItems") {
            let pa = ma.get("prefixItems").and_then(Value::as_array);
            for (i, sb) in pb.iter().enumerate() {
                let sa = pa
                    .and_then(|p| p.get(i))
                    .or(ma.get("items"))
                    .unwrap_or(&any);
                self.covers(sa, sb, &format!("{path}[{i}]"), depth + 1);
            }
        }
    }
}

/// Keywords that say nothing about what is accepted.
const ANNOTATIONS: &[&str] = &[
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Follows a local `$ref` (`#/$defs/x`, `#/definitions/x`, `#`) to what it names. A `$ref`
/// beside other assertions is left in place and compared as it is (`$ref` is in [`EXACT`]).
pub(crate) fn resolve<'v>(s: &'v Value, root: &'v Value, depth: usize) -> Option<&'v Value> {
    let mut at = s;
    for _ in depth..=MAX_DEPTH {
        let Some(r) = at.get("$ref").and_then(Value::as_str) else {
            return Some(at);
        };
        let alone = at.as_object().is_some_and(|m| {
            m.keys()
                .all(|k| k == "$ref" || ANNOTATIONS.contains(&k.as_str()))
        });
        if !alone {
            return Some(at);
        }
        at = root.pointer(r.strip_prefix('#')?)?;
    }
    None
}

/// Whether a `$ref` occurs anywhere in `v`.
fn has_ref(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("$ref") || m.values().any(has_ref),
        Value::Array(a) => a.iter().any(has_ref),
        _ => false,
    }
}

fn types(m: &Map<String, Value>) -> Option<BTreeSet<&str>> {
    match m.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.as_str()])),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// The fixed set of values `enum` or `const` allows, when there is one.
fn allowed(m: &Map<String, Value>) -> Option<Vec<&Value>> {
    match (m.get("enum"), m.get("const")) {
        (Some(Value::Array(vs)), Some(c)) => Some(vs.iter().filter(|v| *v == c).collect()),
        (Some(Value::Array(vs)), None) => Some(vs.iter().collect()),
        (_, Some(c)) => Some(vec![c]),
        _ => None,
    }
}

fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn show(v: Option<&Value>) -> String {
    const MAX: usize = 120;
    let Some(v) = v else {
        return "none".into();
    };
    let s = v.to_string();
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use Compatibility::*;
    use serde_json::json;

    fn v1() -> Value {
        json!({"type": "object", "required": ["id", "total"],
            "properties": {"id": {"type": "string"}, "total": {"type": "number", "minimum": 0},
                "status": {"enum": ["new", "paid"]},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
            "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string"}}}}})
    }

    #[test]
    fn adding_an_optional_property_or_widening_is_backward_compatible() {
        let mut v2 = v1();
        v2["properties"]["note"] = json!({"type": "string"});
        v2["properties"]["total"] = json!({"type": ["number", "string"]});
        v2["properties"]["status"] = json!({"enum": ["new", "paid", "refunded"]});
        v2["required"] = json!(["id"]);
        assert_eq!(breaks(&v1(), &v2, Backward), Vec::<String>::new());
        // Forward: the old version refuses a string total and a refunded status, and a total
        // may now be missing.
        let fw = breaks(&v1(), &v2, Forward);
        assert!(
            fw.contains(&"$.data: required field \"total\" removed".to_owned()),
            "{fw:?}"
        );
        assert!(
            fw.contains(
                &"$.data.total: type widened from \"number\" to [\"number\",\"string\"]".to_owned()
            ),
            "{fw:?}"
        );
        assert!(
            fw.iter()
                .any(|l| l.starts_with("$.data.status: allowed values added")),
            "{fw:?}"
        );
        assert_eq!(breaks(&v1(), &v2, None), Vec::<String>::new());
    }

    #[test]
    fn narrowing_is_named_with_its_path() {
        let mut v2 = v1();
        v2["properties"]["total"] = json!({"type": "integer", "minimum": 1});
        v2["required"] = json!(["id", "total", "currency"]);
        v2["$defs"]["item"]["properties"]["sku"] = json!({"type": "string", "maxLength": 8});
        v2["properties"]["status"] = json!({"enum": ["paid"]});
        let bw = breaks(&v1(), &v2, Backward);
        assert_eq!(
            bw,
            [
                "$.data: required field \"currency\" added",
                "$.data.items[*].sku: maxLength changed from none to 8",
                "$.data.status: allowed values removed: [\"new\"]",
                "$.data.total: type narrowed from \"number\" to \"integer\"",
                "$.data.total: minimum changed from 0 to 1",
            ],
            "{bw:#?}"
        );
        assert!(breaks(&v1(), &v2, Full).len() >= bw.len());
    }

    #[test]
    fn closing_an_object_or_removing_a_property_of_a_closed_one() {
        let mut closed = v1();
        closed["additionalProperties"] = json!(false);
        let bw = breaks(&v1(), &closed, Backward);
        assert_eq!(
            bw,
            ["$.data: additionalProperties changed from none to false"]
        );
        let mut fewer = closed.clone();
        fewer["properties"]
            .as_object_mut()
            .unwrap()
            .remove("status");
        let bw = breaks(&closed, &fewer, Backward);
        assert_eq!(
            bw,
            ["$.data: property \"status\" removed, and additionalProperties is false"]
        );
        assert!(breaks(&fewer, &closed, Backward).is_empty());
    }

    #[test]
    fn combinators_and_bad_refs_are_reported_not_guessed() {
        let a = json!({"anyOf": [{"type": "string"}, {"type": "null"}]});
        let b = json!({"anyOf": [{"type": "string"}]});
        assert_eq!(breaks(&a, &b, Backward).len(), 1);
        assert!(breaks(&a, &a, Full).is_empty());
        let dangling = json!({"properties": {"x": {"$ref": "#/$defs/missing"}}});
        let bw = breaks(
            &json!({"properties": {"x": {"type": "string"}}}),
            &dangling,
            Backward,
        );
        assert_eq!(
            bw,
            ["$.data.x: a $ref that does not resolve inside the schema"]
        );
        let recursive = json!({"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"});
        assert!(!breaks(&json!({"type": "string"}), &recursive, Backward).is_empty());
        assert!(breaks(&json!(true), &json!(false), Backward) == ["$.data: now accepts nothing"]);
    }
}
