//! CloudEvents 1.0: the one event type every part of Sluice passes along (ingress → bus →
//! router → worker → handler → reply). Parsing is strict and names the attribute at fault,
//! because events come from the network.
//!
//! Owns: the event type and its wire formats (structured JSON, HTTP binary mode). Must not
//! know: buses, patterns, handlers or anything else of Sluice; every other crate builds on it.

mod binary;
#[doc(hidden)]
pub mod fuzz;
mod json;
mod time;

use std::collections::BTreeMap;

pub use binary::{from_binary, to_binary_headers};
pub use json::{from_batch_json, from_batch_json_keeping_data, is_json_content_type};
pub use time::now_rfc3339;

/// The only CloudEvents version Sluice speaks.
pub const SPEC_VERSION: &str = "1.0";

/// Extension attributes named `sluice…` (`sluicehops`, `sluiceattempts`, `sluicereason`,
/// `sluicereplay`, …) are the runtime's record of an event's history. Producers may not send
/// them: a forged hop count would dead-letter a fresh event, a forged reason fake history.
pub fn is_reserved_extension(name: &str) -> bool {
    name.starts_with("sluice")
}

/// Longest `id`, `source`, `type`, `subject`, `dataschema` or `datacontenttype` accepted from a
/// producer (bytes). They become log fields, metric labels, NATS headers and dedupe keys.
pub const MAX_ATTRIBUTE_BYTES: usize = 1024;
/// Longest extension name and value accepted from a producer (bytes), and most extensions.
pub const MAX_EXTENSION_NAME_BYTES: usize = 64;
pub const MAX_EXTENSION_VALUE_BYTES: usize = 4096;
pub const MAX_EXTENSIONS: usize = 64;
/// W3C trace context bounds: `tracestate` at most 512 bytes of at most 32 members.
const MAX_TRACESTATE_BYTES: usize = 512;
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A CloudEvents 1.0 event. `data` holds the payload bytes exactly as received (JSON text when
/// the content type is JSON), so handlers see what the producer sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    /// RFC 3339 timestamp.
    pub time: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// Extension attributes by name (lowercase alphanumeric), e.g. `traceparent`.
    pub extensions: BTreeMap<String, Extension>,
    pub data: Option<Vec<u8>>,
}

/// The value of an extension attribute. JSON keeps integers and booleans typed, so a pattern
/// such as `{"sluicehops": [{"numeric": [">", 3]}]}` works on them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extension {
    String(String),
    Integer(i64),
    Boolean(bool),
}

impl CloudEvent {
    /// Refuses what a producer may not send although the format allows it: attributes over
    /// their length bound, too many extensions, and a `traceparent` or `tracestate` that is not
    /// W3C trace context. Events Sluice makes itself are not held to this.
    pub fn check_bounds(&self) -> Result<(), EventError> {
        let attrs = [
            ("id", Some(&self.id)),
            ("source", Some(&self.source)),
            ("type", Some(&self.ty)),
            ("subject", self.subject.as_ref()),
            ("dataschema", self.dataschema.as_ref()),
            ("datacontenttype", self.datacontenttype.as_ref()),
        ];
        for (name, v) in attrs {
            if let Some(v) = v {
                within(name, v, MAX_ATTRIBUTE_BYTES)?;
            }
        }
        if self.extensions.len() > MAX_EXTENSIONS {
            return Err(EventError::new(
                "extensions",
                format!(
                    "{} extension attributes, over the limit of {MAX_EXTENSIONS}",
                    self.extensions.len()
                ),
            ));
        }
        for (name, v) in &self.extensions {
            if name.len() > MAX_EXTENSION_NAME_BYTES {
                return Err(EventError::new(
                    name,
                    format!("the name is over {MAX_EXTENSION_NAME_BYTES} bytes"),
                ));
            }
            if let Extension::String(v) = v {
                within(name, v, MAX_EXTENSION_VALUE_BYTES)?;
            }
        }
        if let Some(tp) = self.extensions.get("traceparent") {
            check_traceparent(&tp.to_string())
                .map_err(|reason| EventError::new("traceparent", reason))?;
        }
        if let Some(ts) = self.extensions.get("tracestate") {
            let ts = ts.to_string();
            let members = ts.split(',').filter(|m| !m.trim().is_empty()).count();
            if ts.len() > MAX_TRACESTATE_BYTES || members > MAX_TRACESTATE_MEMBERS {
                return Err(EventError::new(
                    "tracestate",
                    format!(
                        "at most {MAX_TRACESTATE_BYTES} bytes of {MAX_TRACESTATE_MEMBERS} members (W3C trace context)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Refuses attribute `name` when its value `v` is over `max` bytes.
fn within(name: &str, v: &str, max: usize) -> Result<(), EventError> {
    if v.len() > max {
        return Err(EventError::new(
            name,
            format!("is {} bytes, over the {max}-byte limit", v.len()),
        ));
    }
    Ok(())
}

/// W3C trace context: `VERSION-TRACEID-PARENTID-FLAGS`, lowercase hex of 2, 32, 16 and 2
/// digits, ids not all zero, version not `ff` (a later version may append fields).
pub fn check_traceparent(tp: &str) -> Result<(), String> {
    let bad = || format!("{tp:?} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if parts.len() < 4
        || !hex(parts[0], 2)
        || !hex(parts[1], 32)
        || !hex(parts[2], 16)
        || !hex(parts[3], 2)
        || parts[0] == "ff"
        || (parts[0] == "00" && parts.len() != 4)
    {
        return Err(bad());
    }
    if parts[1].bytes().all(|b| b == b'0') || parts[2].bytes().all(|b| b == b'0') {
        return Err(format!("{tp:?}: trace and parent ids may not be all zeros"));
    }
    Ok(())
}

impl std::fmt::Display for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Extension::String(s) => f.write_str(s),
            Extension::Integer(i) => write!(f, "{i}"),
            Extension::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// Why an event was refused; `attribute` names the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{attribute}: {reason}")]
pub struct EventError {
    pub attribute: String,
    pub reason: String,
}

impl EventError {
    pub fn new(attribute: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            reason: reason.into(),
        }
    }
}

/// Attributes defined by the spec; everything else at the top level is an extension.
pub(crate) const CONTEXT_ATTRIBUTES: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
];

impl CloudEvent {
    /// A minimal event; the rest is set field by field.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    /// Attaches a JSON payload.
    pub fn with_json_data(mut self, data: &serde_json::Value) -> Self {
        self.datacontenttype = Some("application/json".into());
        self.data = Some(data.to_string().into_bytes());
        self
    }

    /// Checks the rules of the spec that a struct cannot: required attributes non-empty,
    /// extension names, timestamp format.
    pub fn validate(&self) -> Result<(), EventError> {
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.ty),
        ] {
            if value.is_empty() {
                return Err(EventError::new(
                    name,
                    "required attribute is missing or empty",
                ));
            }
        }
        if let Some(t) = &self.time {
            time::check_rfc3339(t).map_err(|r| EventError::new("time", r))?;
        }
        for (attr, v) in [
            ("subject", &self.subject),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ] {
            if v.as_deref() == Some("") {
                return Err(EventError::new(attr, "must not be empty when present"));
            }
        }
        for name in self.extensions.keys() {
            check_extension_name(name)?;
        }
        Ok(())
    }

    /// True when `data` is JSON text: a JSON content type, or none at all (the JSON format's
    /// default).
    pub fn data_is_json(&self) -> bool {
        self.datacontenttype
            .as_deref()
            .is_none_or(is_json_content_type)
    }

    /// The payload parsed as JSON, when it is JSON.
    pub fn data_json(&self) -> Option<serde_json::Value> {
        let data = self.data.as_deref()?;
        if !self.data_is_json() {
            return None;
        }
        serde_json::from_slice(data).ok()
    }

    /// Fills what a handler's reply may leave out: a fresh id, the given source, the time now.
    pub fn fill_reply_defaults(&mut self, source: &str) {
        if self.id.is_empty() {
            self.id = uuid::Uuid::new_v4().to_string();
        }
        if self.source.is_empty() {
            self.source = source.to_owned();
        }
        if self.time.is_none() {
            self.time = Some(now_rfc3339());
        }
    }

    /// An extension as a string, whatever its type.
    pub fn extension(&self, name: &str) -> Option<String> {
        self.extensions.get(name).map(ToString::to_string)
    }

    /// Approximate size on the wire, for limits.
    pub fn size(&self) -> usize {
        let attrs = self.id.len() + self.source.len() + self.ty.len();
        let opt = [
            &self.subject,
            &self.time,
            &self.datacontenttype,
            &self.dataschema,
        ]
        .iter()
        .map(|o| o.as_ref().map_or(0, String::len))
        .sum::<usize>();
        let ext = self
            .extensions
            .iter()
            .map(|(k, v)| k.len() + v.to_string().len())
            .sum::<usize>();
        attrs + opt + ext + self.data.as_ref().map_or(0, Vec::len)
    }
}

/// CloudEvents: attribute names are lowercase letters and digits only (the spec advises at
/// most 20 characters; longer names are accepted).
pub fn check_extension_name(name: &str) -> Result<(), EventError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(EventError::new(
            name,
            "attribute names must be lowercase letters and digits",
        ));
    }
    if CONTEXT_ATTRIBUTES.contains(&name) || name == "data_base64" {
        return Err(EventError::new(
            name,
            "is a context attribute, not an extension",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CloudEvent {
        let mut e = CloudEvent::new("1", "/s", "t");
        e.extensions.insert(
            "traceparent".into(),
            Extension::String("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        );
        e
    }

    #[test]
    fn producer_bounds_name_the_attribute() {
        assert_eq!(event().check_bounds(), Ok(()));
        let mut long_id = event();
        long_id.id = "x".repeat(MAX_ATTRIBUTE_BYTES + 1);
        assert_eq!(long_id.check_bounds().unwrap_err().attribute, "id");
        let mut long_ext = event();
        long_ext
            .extensions
            .insert("region".into(), Extension::String("é".repeat(3000)));
        assert_eq!(long_ext.check_bounds().unwrap_err().attribute, "region");
        let mut many = event();
        for i in 0..MAX_EXTENSIONS {
            many.extensions
                .insert(format!("x{i}"), Extension::Integer(1));
        }
        assert_eq!(many.check_bounds().unwrap_err().attribute, "extensions");
        for tp in [
            "00-abc",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let mut e = event();
            e.extensions
                .insert("traceparent".into(), Extension::String(tp.into()));
            assert_eq!(
                e.check_bounds().unwrap_err().attribute,
                "traceparent",
                "{tp}"
            );
        }
        let mut future = event();
        future.extensions.insert(
            "traceparent".into(),
            Extension::String(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more".into(),
            ),
        );
        assert_eq!(
            future.check_bounds(),
            Ok(()),
            "a later version may add fields"
        );
        let mut state = event();
        state.extensions.insert(
            "tracestate".into(),
            Extension::String(
                (0..40)
                    .map(|i| format!("k{i}=v"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        );
        assert_eq!(state.check_bounds().unwrap_err().attribute, "tracestate");
    }
}
