//! Error locations as JSONPath (`$.data.items[2].sku`), which is how users name a place in an
//! event (EventBridge input paths, `jq`), rather than the JSON pointer the validator reports.

use serde_json::Value;

/// `pointer` (RFC 6901, relative to `root`) written as a JSONPath below `prefix`. Array
/// indexes are told from numeric object keys by walking `root`.
pub fn json_path(prefix: &str, pointer: &str, root: &Value) -> String {
    let mut out = prefix.to_owned();
    let mut at = Some(root);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match at {
            Some(Value::Array(items)) if seg.parse::<usize>().is_ok() => {
                out.push_str(&format!("[{seg}]"));
                at = seg.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            _ => {
                push_key(&mut out, &seg);
                at = at.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}

/// Appends `.key`, or `['key']` when the key is not a plain identifier.
pub fn push_key(out: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        out.push('.');
        out.push_str(key);
    } else {
        out.push_str("['");
        out.push_str(&key.replace('\\', "\\\\").replace('\'', "\\'"));
        out.push_str("']");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_become_json_paths() {
        let v = json!({"items": [{"sku": 1}], "2": {"a/b": 1}});
        assert_eq!(json_path("$.data", "", &v), "$.data");
        assert_eq!(
            json_path("$.data", "/items/0/sku", &v),
            "$.data.items[0].sku"
        );
        assert_eq!(json_path("$.data", "/2/a~1b", &v), "$.data['2']['a/b']");
        assert_eq!(json_path("$", "/x/y", &v), "$.x.y");
    }
}
