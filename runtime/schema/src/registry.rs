//! The compiled EventSchemas of a process, looked up by event `type` (and `source`).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use serde_json::Value;
use sluice_event::{CloudEvent, Extension};

use crate::path::json_path;

/// The extension attribute an event carries once it passed a schema: the version number.
/// Producers cannot forge it (the ingress refuses `sluice*` attributes), so a Trigger can
/// select on it (`spec.schemaVersion`).
pub const VERSION_ATTRIBUTE: &str = "sluiceschemaversion";

/// One EventSchema as the publishers need it.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaDef {
    /// `namespace/name` of the EventSchema.
    pub name: String,
    /// The event `type` it describes.
    pub ty: String,
    /// Only events from this `source`; none: from any source.
    pub source: Option<String>,
    /// `(version, JSON Schema of data)`, in ascending version order.
    pub versions: Vec<(u32, Value)>,
}

/// The `dataschema` URI that names version `version` of the EventSchema `name`
/// (`namespace/name`): `sluice:eventschema/<namespace>/<name>/v<version>`.
pub fn version_uri(name: &str, version: u32) -> String {
    format!("sluice:eventschema/{name}/v{version}")
}

/// Compiles one JSON Schema (draft 2020-12 unless its `$schema` says otherwise), with
/// `format` asserted: a schema that says `date-time` means it. References must resolve inside
/// the schema: nothing is fetched.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{}: {e}", json_path("$", &at, schema))
            }
        })
}

struct Version {
    number: u32,
    /// URIs a producer may name this version by in `dataschema`.
    ids: Vec<String>,
    validator: jsonschema::Validator,
}

struct Described {
    name: String,
    source: Option<String>,
    versions: Vec<Version>,
}

/// Every EventSchema of a process, compiled.
#[derive(Default)]
pub struct Registry {
    by_type: HashMap<String, Vec<Described>>,
}

/// What an event passed: the EventSchema and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub schema: String,
    pub version: u32,
}

/// One rule an event's data broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// JSONPath into the event: `$.data.customer.id`.
    pub path: String,
    /// The JSON Schema keyword: `type`, `required`, `minimum`, …
    pub rule: String,
    pub message: String,
}

/// An event its schema refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// `namespace/name` of the EventSchema.
    pub schema: String,
    /// The version checked against; none when the event named a version that does not exist.
    pub version: Option<u32>,
    /// At least one.
    pub failures: Vec<Failure>,
}

/// Failures listed per refusal; more are counted, not listed.
const MAX_FAILURES: usize = 10;

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSchema {}", self.schema)?;
        if let Some(v) = self.version {
            write!(f, " v{v}")?;
        }
        for (i, x) in self.failures.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{}: {} (rule {})", x.path, x.message, x.rule)?;
        }
        Ok(())
    }
}

impl Registry {
    /// Compiles every definition. A definition whose schema does not compile is reported and
    /// left out; the rest are kept (manifests were validated before they got here, so this is
    /// a last line of defence, not the user's error report).
    pub fn new(defs: &[SchemaDef]) -> (Self, Vec<String>) {
        let mut by_type: HashMap<String, Vec<Described>> = HashMap::new();
        let mut problems = Vec::new();
        'defs: for d in defs {
            let mut versions = Vec::with_capacity(d.versions.len());
            for (number, schema) in &d.versions {
                match compile(schema) {
                    Ok(validator) => {
                        let mut ids = vec![version_uri(&d.name, *number)];
                        if let Some(id) = schema.get("$id").and_then(Value::as_str) {
                            ids.push(id.to_owned());
                        }
                        versions.push(Version {
                            number: *number,
                            ids,
                            validator,
                        });
                    }
                    Err(e) => {
                        problems.push(format!("EventSchema {} v{number}: {e}", d.name));
                        continue 'defs;
                    }
                }
            }
            if versions.is_empty() {
                continue;
            }
            versions.sort_by_key(|v| v.number);
            by_type.entry(d.ty.clone()).or_default().push(Described {
                name: d.name.clone(),
                source: d.source.clone(),
                versions,
            });
        }
        (Self { by_type }, problems)
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// The EventSchema that describes `event`: one for its type and source, else one for its
    /// type from any source.
    fn described(&self, event: &CloudEvent) -> Option<&Described> {
        let list = self.by_type.get(&event.ty)?;
        list.iter()
            .find(|d| d.source.as_deref() == Some(event.source.as_str()))
            .or_else(|| list.iter().find(|d| d.source.is_none()))
    }

    /// Validates `event`'s data against the version its `dataschema` names (a version URI
    /// or a schema's `$id`), else the newest version, and on success stamps the version in
    /// [`VERSION_ATTRIBUTE`]. An event no schema describes passes unstamped (`Ok(None)`).
    pub fn check(&self, event: &mut CloudEvent) -> Result<Option<Stamp>, Invalid> {
        self.check_parsed(event, None)
    }

    /// [`Registry::check`] for an event whose JSON `data` the caller has parsed already
    /// (`parsed` must be the value of `event.data`; the ingress gets it from the parser).
    pub fn check_parsed(
        &self,
        event: &mut CloudEvent,
        parsed: Option<&Value>,
    ) -> Result<Option<Stamp>, Invalid> {
        let Some(d) = self.described(event) else {
            return Ok(None);
        };
        let invalid = |version, path: &str, rule: &str, message: String| Invalid {
            schema: d.name.clone(),
            version,
            failures: vec![Failure {
                path: path.into(),
                rule: rule.into(),
                message,
            }],
        };
        let named = event
            .dataschema
            .as_deref()
            .and_then(|uri| d.versions.iter().find(|v| v.ids.iter().any(|id| id == uri)));
        let version = match (named, event.dataschema.as_deref()) {
            (Some(v), _) => v,
            (None, Some(uri)) if uri.starts_with(&format!("sluice:eventschema/{}/", d.name)) => {
                let known: Vec<String> = d.versions.iter().map(|v| v.number.to_string()).collect();
                return Err(invalid(
                    None,
                    "$.dataschema",
                    "dataschema",
                    format!(
                        "{uri:?} names no version of this schema (versions: {})",
                        known.join(", ")
                    ),
                ));
            }
            // A producer's own URI, or none: the newest version, which (unless the schema says
            // `compatibility: none`) accepts everything the older ones did.
            _ => d.versions.last().expect("a described schema has versions"),
        };
        let owned;
        let data = match (&event.data, parsed) {
            (None, _) => &Value::Null,
            (Some(_), Some(v)) if event.data_is_json() => v,
            (Some(bytes), None) if event.data_is_json() => {
                owned = serde_json::from_slice::<Value>(bytes).map_err(|e| {
                    invalid(
                        Some(version.number),
                        "$.data",
                        "type",
                        format!("not valid JSON: {e}"),
                    )
                })?;
                &owned
            }
            (Some(_), _) => {
                return Err(invalid(
                    Some(version.number),
                    "$.data",
                    "type",
                    format!(
                        "datacontenttype {:?} is not JSON; the schema describes JSON data",
                        event.datacontenttype.as_deref().unwrap_or_default()
                    ),
                ));
            }
        };
        // Most events are valid: answer that without building error reports.
        if version.validator.is_valid(data) {
            return Ok(Some(stamp(event, &d.name, version.number)));
        }
        let mut failures = Vec::new();
        let mut more = 0;
        for e in version.validator.iter_errors(data) {
            if failures.len() == MAX_FAILURES {
                more += 1;
                continue;
            }
            failures.push(Failure {
                path: json_path("$.data", e.instance_path().as_str(), data),
                rule: e.kind().keyword().to_owned(),
                message: short(&e.to_string()),
            });
        }
        if more > 0 {
            failures.push(Failure {
                path: "$.data".into(),
                rule: "…".into(),
                message: format!("{more} more failures not listed"),
            });
        }
        if !failures.is_empty() {
            return Err(Invalid {
                schema: d.name.clone(),
                version: Some(version.number),
                failures,
            });
        }
        Ok(Some(stamp(event, &d.name, version.number)))
    }
}

fn stamp(event: &mut CloudEvent, schema: &str, version: u32) -> Stamp {
    event.extensions.insert(
        VERSION_ATTRIBUTE.into(),
        Extension::Integer(i64::from(version)),
    );
    Stamp {
        schema: schema.to_owned(),
        version,
    }
}

/// A process's registry, replaced whole when its manifests or route table change; publishers
/// take the current one per request, so a check never sees half an update.
#[derive(Default)]
pub struct Shared(RwLock<Arc<Registry>>);

impl Shared {
    /// Compiles `defs` and makes them the registry; returns what did not compile.
    pub fn set(&self, defs: &[SchemaDef]) -> Vec<String> {
        let (registry, problems) = Registry::new(defs);
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
        problems
    }

    pub fn get(&self) -> Arc<Registry> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A validator message quotes the offending value; a large one is cut so an error names the
/// rule without echoing a whole payload.
fn short(message: &str) -> String {
    const MAX: usize = 300;
    if message.len() <= MAX {
        return message.to_owned();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> SchemaDef {
        SchemaDef {
            name: "shop/order-paid".into(),
            ty: "com.example.order.paid".into(),
            source: None,
            versions: vec![
                (
                    1,
                    json!({"type": "object", "required": ["id"],
                        "properties": {"id": {"type": "string"}}}),
                ),
                (
                    2,
                    json!({"type": "object", "required": ["id"],
                        "properties": {"id": {"type": "string"},
                            "total": {"type": "number", "minimum": 0},
                            "items": {"type": "array", "items": {"type": "object",
                                "required": ["sku"], "properties": {"sku": {"type": "string"}}}}}}),
                ),
            ],
        }
    }

    fn event(ty: &str, data: Value) -> CloudEvent {
        let mut e = CloudEvent::new("1", "/shop", ty);
        e.data = Some(data.to_string().into_bytes());
        e
    }

    #[test]
    fn valid_events_are_stamped_with_the_newest_version() {
        let (r, problems) = Registry::new(&[order_schema()]);
        assert!(problems.is_empty());
        let mut e = event("com.example.order.paid", json!({"id": "o-1", "total": 3}));
        let stamp = r.check(&mut e).unwrap().unwrap();
        assert_eq!(
            (stamp.schema.as_str(), stamp.version),
            ("shop/order-paid", 2)
        );
        assert_eq!(
            e.extensions.get(VERSION_ATTRIBUTE),
            Some(&Extension::Integer(2))
        );
        let mut other = event("com.example.other", json!(5));
        assert_eq!(r.check(&mut other), Ok(None));
        assert!(other.extensions.is_empty());
    }

    #[test]
    fn a_check_on_the_parsed_data_decides_as_one_on_the_bytes() {
        let (r, _) = Registry::new(&[order_schema()]);
        for data in [
            json!({"id": "o-1", "total": 3}),
            json!({"id": 7, "total": -1, "items": [{"qty": 1}]}),
        ] {
            let (mut a, mut b) = (
                event("com.example.order.paid", data.clone()),
                event("com.example.order.paid", data.clone()),
            );
            assert_eq!(r.check(&mut a), r.check_parsed(&mut b, Some(&data)));
            assert_eq!(a, b);
        }
        // Data a content type says is not JSON is refused as such, parsed value or not.
        let mut text = event("com.example.order.paid", json!({"id": "o-1"}));
        text.datacontenttype = Some("text/plain".into());
        let err = r
            .check_parsed(&mut text, Some(&json!({"id": "o-1"})))
            .unwrap_err();
        assert_eq!(err.failures[0].path, "$.data");
    }

    #[test]
    fn failures_name_the_json_path_and_rule() {
        let (r, _) = Registry::new(&[order_schema()]);
        let mut e = event(
            "com.example.order.paid",
            json!({"id": 7, "total": -1, "items": [{"sku": "a"}, {"qty": 1}]}),
        );
        let err = r.check(&mut e).unwrap_err();
        let got: Vec<(&str, &str)> = err
            .failures
            .iter()
            .map(|f| (f.path.as_str(), f.rule.as_str()))
            .collect();
        assert!(got.contains(&("$.data.id", "type")), "{got:?}");
        assert!(got.contains(&("$.data.total", "minimum")), "{got:?}");
        assert!(got.contains(&("$.data.items[1]", "required")), "{got:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("EventSchema shop/order-paid v2: "),
            "{text}"
        );
        assert!(e.extensions.is_empty(), "nothing stamped on failure");
    }

    #[test]
    fn dataschema_selects_an_older_version_or_is_refused() {
        let (r, _) = Registry::new(&[order_schema()]);
        let mut old = event("com.example.order.paid", json!({"id": "o", "total": -5}));
        old.dataschema = Some(version_uri("shop/order-paid", 1));
        assert_eq!(r.check(&mut old).unwrap().unwrap().version, 1);
        let mut missing = event("com.example.order.paid", json!({"id": "o"}));
        missing.dataschema = Some(version_uri("shop/order-paid", 9));
        let err = r.check(&mut missing).unwrap_err();
        assert_eq!(err.failures[0].path, "$.dataschema");
        assert!(err.to_string().contains("versions: 1, 2"), "{err}");
        // Someone else's URI: checked against the newest version.
        let mut foreign = event("com.example.order.paid", json!({"id": "o"}));
        foreign.dataschema = Some("https://schemas.example.com/order.json".into());
        assert_eq!(r.check(&mut foreign).unwrap().unwrap().version, 2);
    }

    #[test]
    fn a_source_specific_schema_wins_and_non_json_data_is_refused() {
        let mut special = order_schema();
        special.name = "shop/legacy".into();
        special.source = Some("/legacy".into());
        special.versions = vec![(1, json!({"type": "string"}))];
        let (r, _) = Registry::new(&[order_schema(), special]);
        let mut e = event("com.example.order.paid", json!("text"));
        e.source = "/legacy".into();
        assert_eq!(r.check(&mut e).unwrap().unwrap().schema, "shop/legacy");
        let mut bin = event("com.example.order.paid", json!({"id": "x"}));
        bin.datacontenttype = Some("application/octet-stream".into());
        let err = r.check(&mut bin).unwrap_err();
        assert_eq!(err.failures[0].path, "$.data");
        let mut none = CloudEvent::new("2", "/shop", "com.example.order.paid");
        assert_eq!(r.check(&mut none).unwrap_err().failures[0].rule, "type");
    }

    #[test]
    fn formats_are_asserted_and_remote_refs_are_not_fetched() {
        let def = SchemaDef {
            name: "a/b".into(),
            ty: "t".into(),
            source: None,
            versions: vec![(1, json!({"type": "string", "format": "date-time"}))],
        };
        let (r, _) = Registry::new(&[def]);
        let mut e = event("t", json!("yesterday"));
        assert_eq!(r.check(&mut e).unwrap_err().failures[0].rule, "format");
        assert!(compile(&json!({"$ref": "https://example.com/s.json"})).is_err());
        assert!(compile(&json!({"type": "nope"})).is_err());
    }
}
