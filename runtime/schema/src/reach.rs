//! Whether a path into an event's `data` can lead anywhere under a schema: what lets `sluice
//! validate` refuse a Trigger transform's input path that no valid event can have. It only
//! refuses what the schema rules out for certain (a closed object without that property, a
//! step into a value whose `type` is not an object or array); combinators and open objects
//! are given the benefit of the doubt.

use serde_json::Value;

use crate::{compat::resolve, path::push_key};

/// Why `steps` (below `data`: a string is a key, a number an index) cannot exist in data
/// valid under `schema`; `None` when they may.
pub fn cannot_reach(schema: &Value, steps: &[Value]) -> Option<String> {
    let mut at = schema;
    let mut path = "$.data".to_owned();
    for step in steps {
        let node = resolve(at, schema, 0)?;
        let m = match node {
            Value::Bool(false) => return Some(format!("{path} can hold no value (schema false)")),
            Value::Object(m) => m,
            _ => return None,
        };
        if [
            "allOf",
            "anyOf",
            "oneOf",
            "if",
            "not",
            "$ref",
            "$dynamicRef",
        ]
        .iter()
        .any(|k| m.contains_key(*k))
        {
            return None;
        }
        let types: Option<Vec<&str>> = match m.get("type") {
            Some(Value::String(t)) => Some(vec![t.as_str()]),
            Some(Value::Array(ts)) => Some(ts.iter().filter_map(Value::as_str).collect()),
            _ => None,
        };
        let (want, next) = match step {
            Value::String(key) => {
                let closed = [
                    m.get("additionalProperties"),
                    m.get("unevaluatedProperties"),
                ]
                .contains(&Some(&Value::Bool(false)))
                    && !m.contains_key("patternProperties");
                let next = m.get("properties").and_then(|p| p.get(key));
                if next.is_none() && closed {
                    let mut known: Vec<&str> = m
                        .get("properties")
                        .and_then(Value::as_object)
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    known.sort_unstable();
                    return Some(format!(
                        "{path} has no property {key:?} (a closed object: {})",
                        if known.is_empty() {
                            "no properties".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
                ("object", next)
            }
            _ => ("array", m.get("items")),
        };
        if let Some(ts) = &types
            && !ts.contains(&want)
        {
            return Some(format!("{path} is {}, not an {want}", ts.join(" or ")));
        }
        match step {
            Value::String(key) => push_key(&mut path, key),
            other => path.push_str(&format!("[{other}]")),
        }
        match next {
            Some(n) => at = n,
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::cannot_reach;

    #[test]
    fn only_what_the_schema_rules_out_is_refused() {
        let s = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "total": {"type": "number"},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
                "meta": {"type": "object"}
            },
            "$defs": {"item": {"type": "object", "additionalProperties": false, "properties": {"sku": {"type": "string"}}}}
        });
        let no = |steps: serde_json::Value| cannot_reach(&s, steps.as_array().unwrap());
        assert_eq!(
            no(json!(["totl"])).as_deref(),
            Some("$.data has no property \"totl\" (a closed object: items, meta, total)")
        );
        assert_eq!(
            no(json!(["total", "x"])).as_deref(),
            Some("$.data.total is number, not an object")
        );
        assert_eq!(
            no(json!(["items", 0, "qty"])).as_deref(),
            Some("$.data.items[0] has no property \"qty\" (a closed object: sku)")
        );
        assert_eq!(no(json!(["items", -1, "sku"])), None);
        assert_eq!(no(json!(["meta", "anything", "deep"])), None);
        assert_eq!(no(json!([])), None);
        assert_eq!(
            cannot_reach(&json!({"anyOf": [{"type": "string"}]}), &[json!("x")]),
            None
        );
    }
}
