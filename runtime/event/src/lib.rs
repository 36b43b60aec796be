//! CloudEvents 1.0: the one event type every part of Sluice passes along (ingress → bus →
//! router → worker → handler → reply). Parsing is strict and names the attribute at fault,
//! because events come from the network.
//!
//! Owns: the event type and its wire formats (structured JSON, HTTP binary mode). Must not
//! know: buses, patterns, handlers or anything else of Sluice; every other crate builds on it.

mod binary;
mod json;
mod time;

use std::collections::BTreeMap;

pub use binary::{from_binary, to_binary_headers};
pub use json::{from_batch_json, is_json_content_type};
pub use time::now_rfc3339;

/// The only CloudEvents version Sluice speaks.
pub const SPEC_VERSION: &str = "1.0";

/// Extension attributes named `sluice…` (`sluicehops`, `sluiceattempts`, `sluicereason`,
/// `sluicereplay`, …) are the runtime's record of an event's history. Producers may not send
/// them: a forged hop count would dead-letter a fresh event, a forged reason fake history.
pub fn is_reserved_extension(name: &str) -> bool {
    name.starts_with("sluice")
}

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
