//! Checks a manifest against the OpenAPI schema of its generated CRD, the way the API server
//! does, so `sluice validate` and `sluice dev` reject exactly what `kubectl apply` would, and
//! report every violation rather than the first one serde stumbles on. Unlike the API server
//! (which prunes them silently) unknown fields are errors: they are almost always typos.

use serde_json::Value;

use crate::FieldError;

/// Every violation of `schema` by `value`, with `path` as the prefix of each field path.
pub fn check(value: &Value, schema: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk(value, schema, path, &mut out);
    out
}

fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    let err = |out: &mut Vec<FieldError>, msg: String| out.push(FieldError::new(path, msg));
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            err(out, "must not be null".into());
        }
        return;
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            err(
                out,
                format!("must be an integer or a string, not {}", kind(value)),
            );
        }
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => true,
        };
        if !ok {
            err(out, format!("must be {}, not {}", article(ty), kind(value)));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        err(
            out,
            format!("must be one of {}, not {value}", list.join(", ")),
        );
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        out.push(FieldError::new(
                            &join(path, name),
                            "required field is missing",
                        ));
                    }
                }
            }
            for (key, child) in map {
                let child_path = join(path, key);
                if let Some(sub) = props.and_then(|p| p.get(key)) {
                    walk(child, sub, &child_path, out);
                } else if let Some(sub) =
                    schema.get("additionalProperties").filter(|s| s.is_object())
                {
                    walk(child, sub, &child_path, out);
                } else if props.is_some() && !preserve {
                    let known: Vec<&str> = props
                        .into_iter()
                        .flat_map(|p| p.keys())
                        .map(String::as_str)
                        .collect();
                    out.push(FieldError::new(
                        &child_path,
                        format!("unknown field (known fields: {})", known.join(", ")),
                    ));
                }
            }
            if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
                one_of(map, choices, path, out);
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, sub, &format!("{path}[{i}]"), out);
                }
            }
            bounds(
                schema,
                items.len() as f64,
                "minItems",
                "maxItems",
                "items",
                path,
                out,
            );
        }
        Value::String(s) => {
            bounds(
                schema,
                s.chars().count() as f64,
                "minLength",
                "maxLength",
                "characters",
                path,
                out,
            );
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        err(out, format!("{s:?} does not match {pattern}"))
                    }
                    Ok(_) => {}
                    Err(e) => err(out, format!("schema pattern {pattern} is invalid: {e}")),
                }
            }
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                range(schema, x, path, out);
            }
        }
        _ => {}
    }
}

/// The schemas here use `oneOf` only as "exactly one of these fields is set", which is also
/// the only form a structural CRD schema allows, so the message can say that in plain words.
fn one_of(
    map: &serde_json::Map<String, Value>,
    choices: &[Value],
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let names: Vec<&str> = choices
        .iter()
        .filter_map(|c| c.get("required")?.as_array()?.first()?.as_str())
        .collect();
    let set: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| map.contains_key(*n))
        .collect();
    match set.len() {
        1 => {}
        0 => out.push(FieldError::new(
            path,
            format!("exactly one of {} is required", names.join(", ")),
        )),
        _ => out.push(FieldError::new(
            path,
            format!(
                "exactly one of {} may be set, found {}",
                names.join(", "),
                set.join(" and ")
            ),
        )),
    }
}

fn range(schema: &Value, x: f64, path: &str, out: &mut Vec<FieldError>) {
    let min = schema.get("minimum").and_then(Value::as_f64);
    let max = schema.get("maximum").and_then(Value::as_f64);
    let bad = min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m);
    if bad {
        let msg = match (min, max) {
            (Some(a), Some(b)) => format!("must be between {a} and {b}"),
            (Some(a), None) => format!("must be at least {a}"),
            (None, Some(b)) => format!("must be at most {b}"),
            (None, None) => unreachable!("bad implies a bound"),
        };
        out.push(FieldError::new(path, msg));
    }
}

fn bounds(
    schema: &Value,
    n: f64,
    lo: &str,
    hi: &str,
    unit: &str,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    if let Some(m) = schema.get(lo).and_then(Value::as_f64).filter(|m| n < *m) {
        out.push(FieldError::new(
            path,
            format!("must have at least {m} {unit}"),
        ));
    }
    if let Some(m) = schema.get(hi).and_then(Value::as_f64).filter(|m| n > *m) {
        out.push(FieldError::new(
            path,
            format!("must have at most {m} {unit}"),
        ));
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn article(ty: &str) -> &'static str {
    match ty {
        "object" => "an object",
        "array" => "a list",
        "string" => "a string",
        "boolean" => "true or false",
        "integer" => "an integer",
        "number" => "a number",
        _ => "of the declared type",
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(v: Value, s: Value) -> Vec<String> {
        check(&v, &s, "spec")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let schema = json!({
            "type": "object",
            "required": ["a"],
            "properties": {
                "a": {"type": "integer", "minimum": 1, "maximum": 185},
                "b": {"type": "array", "items": {"type": "string", "pattern": "^x"}},
                "c": {"type": "string", "enum": ["p", "q"]},
            }
        });
        let got = msgs(
            json!({"a": 0, "b": ["xa", "y"], "c": "r", "d": 1}),
            schema.clone(),
        );
        assert_eq!(
            got,
            vec![
                "spec.a: must be between 1 and 185",
                "spec.b[1]: \"y\" does not match ^x",
                "spec.c: must be one of \"p\", \"q\", not \"r\"",
                "spec.d: unknown field (known fields: a, b, c)",
            ]
        );
        assert_eq!(
            msgs(json!({}), schema.clone()),
            vec!["spec.a: required field is missing"]
        );
        assert_eq!(
            msgs(json!({"a": 1.5}), schema),
            vec!["spec.a: must be an integer, not a fractional number"]
        );
    }

    #[test]
    fn one_of_means_exactly_one_field() {
        let schema = json!({"type": "object", "properties": {"x": {}, "y": {}},
            "oneOf": [{"required": ["x"]}, {"required": ["y"]}]});
        assert!(msgs(json!({"x": 1}), schema.clone()).is_empty());
        assert_eq!(
            msgs(json!({}), schema.clone()),
            vec!["spec: exactly one of x, y is required"]
        );
        assert_eq!(
            msgs(json!({"x": 1, "y": 2}), schema),
            vec!["spec: exactly one of x, y may be set, found x and y"]
        );
    }

    #[test]
    fn preserve_unknown_fields_accepts_anything_inside() {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert!(msgs(json!({"any": {"thing": [1]}}), schema.clone()).is_empty());
        assert_eq!(
            msgs(json!([1]), schema),
            vec!["spec: must be an object, not a list"]
        );
    }
}
