//! The CloudEvents HTTP binary mode: attributes in `ce-` headers (percent-encoded), the
//! payload in the body with its own Content-Type.

use crate::{CloudEvent, EventError, Extension, SPEC_VERSION, check_extension_name};

/// Builds an event from HTTP headers (name, value) and body. Header names are matched
/// case-insensitively.
pub fn from_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<CloudEvent, EventError> {
    let mut event = CloudEvent::new("", "", "");
    let mut spec = None;
    for (name, raw) in headers {
        let lower = name.to_ascii_lowercase();
        if lower == "content-type" {
            let v = std::str::from_utf8(raw)
                .map_err(|_| EventError::new("datacontenttype", "Content-Type is not UTF-8"))?;
            event.datacontenttype = Some(v.to_owned());
            continue;
        }
        let Some(attr) = lower.strip_prefix("ce-") else {
            continue;
        };
        let value = percent_decode(raw).map_err(|r| EventError::new(attr, r))?;
        match attr {
            "specversion" => spec = Some(value),
            "id" => event.id = value,
            "source" => event.source = value,
            "type" => event.ty = value,
            "subject" => event.subject = Some(value),
            "time" => event.time = Some(value),
            "dataschema" => event.dataschema = Some(value),
            // In binary mode the payload's type is Content-Type, never a ce- header.
            "datacontenttype" => {
                return Err(EventError::new(
                    attr,
                    "use the Content-Type header in binary mode",
                ));
            }
            _ => {
                check_extension_name(attr)?;
                event
                    .extensions
                    .insert(attr.to_owned(), Extension::String(value));
            }
        }
    }
    match spec.as_deref() {
        Some(SPEC_VERSION) => {}
        Some(v) => {
            return Err(EventError::new(
                "specversion",
                format!("unsupported version {v:?} (expected \"1.0\")"),
            ));
        }
        None => {
            return Err(EventError::new(
                "specversion",
                "required attribute is missing (ce-specversion header)",
            ));
        }
    }
    if !body.is_empty() {
        event.data = Some(body.to_vec());
    }
    event.validate()?;
    Ok(event)
}

/// The `ce-` headers (and Content-Type) that carry this event in binary mode, values
/// percent-encoded where the spec requires it.
pub fn to_binary_headers(e: &CloudEvent) -> Vec<(String, String)> {
    let mut h = vec![
        ("ce-specversion".to_owned(), SPEC_VERSION.to_owned()),
        ("ce-id".to_owned(), percent_encode(&e.id)),
        ("ce-source".to_owned(), percent_encode(&e.source)),
        ("ce-type".to_owned(), percent_encode(&e.ty)),
    ];
    for (k, v) in [
        ("subject", &e.subject),
        ("time", &e.time),
        ("dataschema", &e.dataschema),
    ] {
        if let Some(v) = v {
            h.push((format!("ce-{k}"), percent_encode(v)));
        }
    }
    for (k, v) in &e.extensions {
        h.push((format!("ce-{k}"), percent_encode(&v.to_string())));
    }
    if let Some(ct) = &e.datacontenttype {
        h.push(("content-type".to_owned(), ct.clone()));
    }
    h
}

fn percent_decode(raw: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or("truncated percent-escape")?;
            let s = std::str::from_utf8(hex).map_err(|_| "invalid percent-escape")?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| "invalid percent-escape")?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "header value is not UTF-8 after percent-decoding".into())
}

/// Encodes what HTTP headers cannot carry: controls, space, `"`, `%` and non-ASCII.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_round_trip_with_unicode_and_extensions() {
        let mut e = CloudEvent::new("1", "/shop", "order.paid");
        e.subject = Some("Bestellung für €5".into());
        e.extensions.insert(
            "traceparent".into(),
            Extension::String("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        );
        e.datacontenttype = Some("application/json".into());
        e.data = Some(br#"{"total":5}"#.to_vec());
        let headers = to_binary_headers(&e);
        let parsed = from_binary(
            headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
            br#"{"total":5}"#,
        )
        .unwrap();
        assert_eq!(parsed, e);
    }

    #[test]
    fn binary_refusals() {
        // (headers, the attribute the refusal must name)
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[("ce-id", "1"), ("ce-source", "s"), ("ce-type", "t")],
                "specversion",
            ),
            (
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-source", "s"),
                    ("ce-type", "t"),
                ],
                "id",
            ),
            (
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "%G1"),
                    ("ce-source", "s"),
                    ("ce-type", "t"),
                ],
                "id",
            ),
            (
                &[
                    ("CE-SpecVersion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "s"),
                    ("ce-type", "t"),
                    ("ce-bad_name", "x"),
                ],
                "bad_name",
            ),
        ];
        for (headers, attribute) in cases {
            let e = from_binary(headers.iter().map(|(a, b)| (*a, b.as_bytes())), b"").unwrap_err();
            assert_eq!(e.attribute, attribute, "{headers:?}");
        }
    }
}
