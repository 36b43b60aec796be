//! The CloudEvents JSON format: structured mode (one object) and batch mode (an array).
//! `data` is kept as the producer's bytes; `data_base64` carries binary payloads.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::{
    CONTEXT_ATTRIBUTES, CloudEvent, EventError, Extension, SPEC_VERSION, check_extension_name,
};

/// `application/json`, `text/json` and any `+json` type, parameters ignored.
pub fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn is_text(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/"))
}

impl CloudEvent {
    /// Parses one structured-mode event.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| EventError::new("(body)", format!("not valid JSON: {e}")))?;
        Self::from_json_value(value)
    }

    /// Builds an event from a structured-mode JSON object.
    pub fn from_json_value(value: Value) -> Result<Self, EventError> {
        Self::from_json_value_keeping_data(value).map(|(e, _)| e)
    }

    /// Parses one structured-mode event, and hands back its `data` as parsed when it is JSON,
    /// so a caller that needs the value (an EventSchema check) does not parse the bytes again.
    pub fn from_json_keeping_data(bytes: &[u8]) -> Result<(Self, Option<Value>), EventError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| EventError::new("(body)", format!("not valid JSON: {e}")))?;
        Self::from_json_value_keeping_data(value)
    }

    /// [`CloudEvent::from_json_value`], with the JSON `data` value as parsed.
    pub fn from_json_value_keeping_data(value: Value) -> Result<(Self, Option<Value>), EventError> {
        let Value::Object(mut map) = value else {
            return Err(EventError::new(
                "(body)",
                format!("a CloudEvent must be a JSON object, not {}", kind(&value)),
            ));
        };
        match map.remove("specversion") {
            Some(Value::String(v)) if v == SPEC_VERSION => {}
            Some(Value::String(v)) => {
                return Err(EventError::new(
                    "specversion",
                    format!("unsupported version {v:?} (expected \"1.0\")"),
                ));
            }
            Some(other) => {
                return Err(EventError::new(
                    "specversion",
                    format!("must be a string, not {}", kind(&other)),
                ));
            }
            None => {
                return Err(EventError::new(
                    "specversion",
                    "required attribute is missing",
                ));
            }
        }
        let mut take = |name: &str| -> Result<Option<String>, EventError> {
            match map.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(EventError::new(
                    name,
                    format!("must be a string, not {}", kind(&other)),
                )),
            }
        };
        let id = take("id")?.unwrap_or_default();
        let source = take("source")?.unwrap_or_default();
        let ty = take("type")?.unwrap_or_default();
        let subject = take("subject")?;
        let time = take("time")?;
        let datacontenttype = take("datacontenttype")?;
        let dataschema = take("dataschema")?;
        let data_base64 = take("data_base64")?;
        let mut parsed = None;
        let data = match (map.remove("data"), data_base64) {
            (None | Some(Value::Null), Some(b64)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| {
                        EventError::new("data_base64", format!("not valid base64: {e}"))
                    })?,
            ),
            (None | Some(Value::Null), None) => None,
            (Some(_), Some(_)) => {
                return Err(EventError::new(
                    "data",
                    "data and data_base64 are mutually exclusive",
                ));
            }
            // A string payload of a non-JSON type is the text itself; otherwise the JSON value.
            (Some(Value::String(s)), None)
                if datacontenttype
                    .as_deref()
                    .is_some_and(|c| !is_json_content_type(c)) =>
            {
                Some(s.into_bytes())
            }
            (Some(v), None) => {
                let bytes = v.to_string().into_bytes();
                parsed = Some(v);
                Some(bytes)
            }
        };
        let mut extensions = std::collections::BTreeMap::new();
        for (name, v) in map {
            check_extension_name(&name)?;
            let ext =
                match v {
                    Value::String(s) => Extension::String(s),
                    Value::Bool(b) => Extension::Boolean(b),
                    Value::Number(n) => Extension::Integer(n.as_i64().ok_or_else(|| {
                        EventError::new(&name, "extension numbers must be integers")
                    })?),
                    Value::Null => continue,
                    other => {
                        return Err(EventError::new(
                            &name,
                            format!(
                                "an extension must be a string, integer or boolean, not {}",
                                kind(&other)
                            ),
                        ));
                    }
                };
            extensions.insert(name, ext);
        }
        let event = CloudEvent {
            id,
            source,
            ty,
            subject,
            time,
            datacontenttype,
            dataschema,
            extensions,
            data,
        };
        event.validate()?;
        Ok((event, parsed))
    }

    /// The optional context attributes, by name.
    fn optional_attributes(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ]
    }

    /// The structured-mode JSON object. `data` is inlined as JSON when it is JSON, as a string
    /// when it is text, and as `data_base64` otherwise.
    pub fn to_json_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("specversion".into(), SPEC_VERSION.into());
        map.insert("id".into(), self.id.clone().into());
        map.insert("source".into(), self.source.clone().into());
        map.insert("type".into(), self.ty.clone().into());
        for (k, v) in self.optional_attributes() {
            if let Some(v) = v {
                map.insert(k.into(), v.clone().into());
            }
        }
        for (k, v) in &self.extensions {
            let v = match v {
                Extension::String(s) => Value::from(s.clone()),
                Extension::Integer(i) => Value::from(*i),
                Extension::Boolean(b) => Value::from(*b),
            };
            map.insert(k.clone(), v);
        }
        if let Some(data) = &self.data {
            if let Some(json) = self.data_json() {
                map.insert("data".into(), json);
            } else if let (true, Ok(text)) = (
                is_text(self.datacontenttype.as_deref()),
                std::str::from_utf8(data),
            ) {
                map.insert("data".into(), text.into());
            } else {
                map.insert(
                    "data_base64".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(data)
                        .into(),
                );
            }
        }
        Value::Object(map)
    }

    /// Structured-mode JSON bytes: `to_json_value()` serialized compactly, attributes in key
    /// order and `data` (or `data_base64`) last, written straight to bytes. Every event is
    /// encoded several times on its way (log, handler stdin, replies), and building the
    /// `Value` tree first cost an allocation per attribute each time.
    pub fn to_json(&self) -> Vec<u8> {
        enum Member<'a> {
            Str(&'a str),
            Int(i64),
            Bool(bool),
            Json(Value),
            Base64(String),
        }
        let mut members: Vec<(&str, Member<'_>)> = Vec::with_capacity(10 + self.extensions.len());
        members.push(("specversion", Member::Str(SPEC_VERSION)));
        members.push(("id", Member::Str(&self.id)));
        members.push(("source", Member::Str(&self.source)));
        members.push(("type", Member::Str(&self.ty)));
        for (k, v) in self.optional_attributes() {
            if let Some(v) = v {
                members.push((k, Member::Str(v)));
            }
        }
        for (k, v) in &self.extensions {
            members.push((
                k,
                match v {
                    Extension::String(s) => Member::Str(s),
                    Extension::Integer(i) => Member::Int(*i),
                    Extension::Boolean(b) => Member::Bool(*b),
                },
            ));
        }
        let data = self.data.as_ref().map(|data| {
            if let Some(json) = self.data_json() {
                ("data", Member::Json(json))
            } else if let (true, Ok(text)) = (
                is_text(self.datacontenttype.as_deref()),
                std::str::from_utf8(data),
            ) {
                ("data", Member::Str(text))
            } else {
                let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                ("data_base64", Member::Base64(b64))
            }
        });
        // Attributes by name, as serde_json's `Map` orders them (names are unique: extension
        // names cannot be context attribute names), and the payload last, so a reader that
        // needs only attributes (the router's matcher) stops before it.
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        members.extend(data);
        let mut out = Vec::with_capacity(self.size() + 64 + 16 * members.len());
        out.push(b'{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Writing into a Vec cannot fail; a string always serializes.
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            let _ = match v {
                Member::Str(s) => serde_json::to_writer(&mut out, s),
                Member::Base64(s) => serde_json::to_writer(&mut out, s),
                Member::Int(n) => serde_json::to_writer(&mut out, n),
                Member::Bool(b) => serde_json::to_writer(&mut out, b),
                Member::Json(j) => serde_json::to_writer(&mut out, j),
            };
        }
        out.push(b'}');
        out
    }
}

/// Parses a batch (`application/cloudevents-batch+json`): every event or the first error,
/// with its index, so nothing of a bad batch is accepted.
pub fn from_batch_json(bytes: &[u8]) -> Result<Vec<CloudEvent>, EventError> {
    Ok(from_batch_json_keeping_data(bytes)?
        .into_iter()
        .map(|(e, _)| e)
        .collect())
}

/// [`from_batch_json`], with each event's JSON `data` value as parsed.
pub fn from_batch_json_keeping_data(
    bytes: &[u8],
) -> Result<Vec<(CloudEvent, Option<Value>)>, EventError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| EventError::new("(body)", format!("not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(EventError::new(
            "(body)",
            format!("a batch must be a JSON array, not {}", kind(&value)),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            CloudEvent::from_json_value_keeping_data(v)
                .map_err(|e| EventError::new(format!("[{i}].{}", e.attribute), e.reason))
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// Keep the list of context attributes and the parser in step.
const _: () = assert!(CONTEXT_ATTRIBUTES.len() == 9);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<CloudEvent, EventError> {
        CloudEvent::from_json_value(v)
    }

    #[test]
    fn structured_round_trip_keeps_types() {
        let v = json!({"specversion": "1.0", "id": "1", "source": "/shop", "type": "order.paid",
            "subject": "o-1", "time": "2026-11-23T10:00:00Z", "traceparent": "00-abc", "sluicehops": 2,
            "urgent": true, "data": {"total": 120.5, "items": [1, 2]}});
        let e = parse(v.clone()).unwrap();
        assert_eq!(e.extensions["sluicehops"], Extension::Integer(2));
        assert_eq!(
            e.data_json(),
            Some(json!({"total": 120.5, "items": [1, 2]}))
        );
        assert_eq!(e.to_json_value(), v);
    }

    #[test]
    fn binary_and_text_payloads() {
        let e = parse(
            json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "datacontenttype": "application/octet-stream", "data_base64": "AAEC"}),
        )
        .unwrap();
        assert_eq!(e.data.as_deref(), Some(&[0u8, 1, 2][..]));
        assert_eq!(e.to_json_value()["data_base64"], "AAEC");
        let t = parse(
            json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "datacontenttype": "text/plain", "data": "hello"}),
        )
        .unwrap();
        assert_eq!(t.data.as_deref(), Some(&b"hello"[..]));
        assert_eq!(t.to_json_value()["data"], "hello");
    }

    #[test]
    fn refusals_name_the_attribute() {
        let base = || json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "(body)"),
            (
                {
                    let mut v = base();
                    v.as_object_mut().unwrap().remove("id");
                    v
                },
                "id",
            ),
            (
                {
                    let mut v = base();
                    v["type"] = json!("");
                    v
                },
                "type",
            ),
            (
                {
                    let mut v = base();
                    v["specversion"] = json!("0.3");
                    v
                },
                "specversion",
            ),
            (
                {
                    let mut v = base();
                    v.as_object_mut().unwrap().remove("specversion");
                    v
                },
                "specversion",
            ),
            (
                {
                    let mut v = base();
                    v["source"] = json!(5);
                    v
                },
                "source",
            ),
            (
                {
                    let mut v = base();
                    v["time"] = json!("yesterday");
                    v
                },
                "time",
            ),
            (
                {
                    let mut v = base();
                    v["Bad-Name"] = json!("x");
                    v
                },
                "Bad-Name",
            ),
            (
                {
                    let mut v = base();
                    v["ext"] = json!({"a": 1});
                    v
                },
                "ext",
            ),
            (
                {
                    let mut v = base();
                    v["data"] = json!(1);
                    v["data_base64"] = json!("AA==");
                    v
                },
                "data",
            ),
            (
                {
                    let mut v = base();
                    v["data_base64"] = json!("!!");
                    v
                },
                "data_base64",
            ),
        ];
        for (v, attr) in cases {
            let e = parse(v.clone()).unwrap_err();
            assert_eq!(e.attribute, attr, "{v}: {e}");
        }
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let ok = br#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"specversion":"1.0","id":"2","source":"s","type":"t"}]"#;
        assert_eq!(from_batch_json(ok).unwrap().len(), 2);
        let bad = br#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"specversion":"1.0","source":"s","type":"t"}]"#;
        assert_eq!(from_batch_json(bad).unwrap_err().attribute, "[1].id");
    }

    #[test]
    fn json_content_types() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "application/cloudevents+json",
            "TEXT/JSON",
        ] {
            assert!(is_json_content_type(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/octet-stream",
            "application/jsonx",
        ] {
            assert!(!is_json_content_type(ct), "{ct}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CloudEvent::from_json(&bytes);
            let _ = from_batch_json(&bytes);
        }

        #[test]
        fn valid_events_round_trip(id in "[a-z0-9-]{1,12}", subject in proptest::option::of("[ -~]{1,12}"), n in any::<i64>()) {
            let mut e = CloudEvent::new(id, "/src", "com.example.t").with_json_data(&json!({"n": n}));
            e.subject = subject;
            e.extensions.insert("hops".into(), Extension::Integer(n));
            let back = CloudEvent::from_json(&e.to_json()).unwrap();
            prop_assert_eq!(back, e);
        }

        /// The direct encoder writes exactly what serializing `to_json_value()` writes with the
        /// payload moved last, byte for byte (handlers may checksum their stdin), whatever the
        /// attributes and payload.
        #[test]
        fn direct_encoding_equals_the_value_tree(
            id in "\\PC{0,8}",
            subject in proptest::option::of("[ -~\\u{e9}\\u{1f600}\"\\\\\n]{0,10}"),
            time in proptest::option::of(Just("2026-12-02T07:00:00Z".to_owned())),
            ct in proptest::option::of(prop_oneof![
                Just("application/json".to_owned()),
                Just("text/plain".to_owned()),
                Just("application/octet-stream".to_owned()),
                Just("application/cloudevents+json; charset=utf-8".to_owned()),
            ]),
            exts in proptest::collection::btree_map("[a-z0-9]{1,9}", prop_oneof![
                "\\PC{0,6}".prop_map(Extension::String),
                any::<i64>().prop_map(Extension::Integer),
                any::<bool>().prop_map(Extension::Boolean),
            ], 0..5),
            data in proptest::option::of(prop_oneof![
                Just(br#"{ "z": 1, "a": [true, null, 2.50, "x\u00e9"] }"#.to_vec()),
                Just(b"plain text".to_vec()),
                Just(vec![0u8, 159, 146, 150]),
                "\\PC{0,12}".prop_map(String::into_bytes),
            ]),
        ) {
            let mut e = CloudEvent::new(id, "/src", "com.example.t");
            e.subject = subject;
            e.time = time;
            e.datacontenttype = ct;
            e.dataschema = Some("https://example.com/s".into());
            e.extensions = exts;
            e.data = data;
            let Value::Object(mut attrs) = e.to_json_value() else { panic!("an event is an object") };
            let payload = ["data", "data_base64"]
                .into_iter()
                .find_map(|k| attrs.remove(k).map(|v| (k, v)));
            let mut via_tree = serde_json::to_vec(&attrs).unwrap();
            if let Some((k, v)) = payload {
                via_tree.pop();
                via_tree.extend_from_slice(format!(",{}:{}}}", json!(k), v).as_bytes());
            }
            let direct = e.to_json();
            prop_assert_eq!(String::from_utf8_lossy(&direct), String::from_utf8_lossy(&via_tree));
        }
    }
}
