//! The `EventSchema` resource: a versioned JSON Schema (draft 2020-12) for the `data` of the
//! events of one `type` (and optionally one `source`). Every version stays in the object, so
//! events naming an older version in `dataschema` still validate; each version must keep the
//! promise of the one before it under `compatibility`.

#[cfg(feature = "crd")]
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_schema::compat;

use crate::{Condition, FieldError, validate::check_attribute};

/// A contract for the data of one event type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[cfg_attr(feature = "crd", derive(CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "sluice.dev",
        version = "v1alpha1",
        kind = "EventSchema",
        plural = "eventschemas",
        singular = "eventschema",
        shortname = "evs",
        category = "sluice",
        namespaced,
        status = "EventSchemaStatus",
        derive = "PartialEq",
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
        printcolumn = r#"{"name":"Latest","type":"integer","jsonPath":".status.latest"}"#,
        printcolumn = r#"{"name":"Compatibility","type":"string","priority":1,"jsonPath":".spec.compatibility"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSchemaSpec {
    /// The CloudEvents `type` whose `data` this describes.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 1024))]
    pub ty: String,
    /// Only events from this `source`. Omitted: events of the type from any source (a schema
    /// naming the source wins over one that does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub source: Option<String>,
    /// How each version must relate to the one before it.
    #[serde(default)]
    pub compatibility: CompatibilityMode,
    /// Every version, oldest first. Events are checked against the version their
    /// `dataschema` names (`sluice:eventschema/<namespace>/<name>/v<N>`, or the version's
    /// `$id`), else the newest, and stamped with it in `sluiceschemaversion`.
    #[schemars(length(min = 1, max = 100))]
    pub versions: Vec<SchemaVersion>,
}

/// Schema-registry compatibility between consecutive versions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompatibilityMode {
    /// Every event valid under the previous version is valid under the new one.
    #[default]
    Backward,
    /// Every event valid under the new version was valid under the previous one, so
    /// handlers written for it keep working.
    Forward,
    /// Both.
    Full,
    /// No check: producers must name the version they send in `dataschema`.
    None,
}

impl From<CompatibilityMode> for compat::Compatibility {
    fn from(m: CompatibilityMode) -> Self {
        match m {
            CompatibilityMode::Backward => Self::Backward,
            CompatibilityMode::Forward => Self::Forward,
            CompatibilityMode::Full => Self::Full,
            CompatibilityMode::None => Self::None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaVersion {
    /// Ascending from one version to the next.
    #[schemars(range(min = 1))]
    pub version: u32,
    /// A JSON Schema (draft 2020-12 unless its `$schema` names another) for `data`.
    #[schemars(schema_with = "free_form")]
    pub schema: Value,
}

fn free_form(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSchemaStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The newest version publishers check events against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl EventSchemaSpec {
    /// Appends an error per invalid field: versions out of order, a schema that is not JSON
    /// Schema, a version that breaks the one before it (naming what broke).
    pub fn validate(&self, path: &str, out: &mut Vec<FieldError>) {
        check_attribute(&format!("{path}.type"), &self.ty, out);
        if let Some(s) = &self.source {
            check_attribute(&format!("{path}.source"), s, out);
        }
        if self.versions.is_empty() {
            out.push(FieldError::new(
                &format!("{path}.versions"),
                "at least one version is required",
            ));
        }
        let mut previous: Option<&SchemaVersion> = None;
        for (i, v) in self.versions.iter().enumerate() {
            let at = format!("{path}.versions[{i}]");
            if v.version == 0 {
                out.push(FieldError::new(
                    &format!("{at}.version"),
                    "must be at least 1",
                ));
            }
            if let Some(p) = previous
                && v.version <= p.version
            {
                out.push(FieldError::new(
                    &format!("{at}.version"),
                    format!(
                        "{} must be greater than version {} before it (oldest first)",
                        v.version, p.version
                    ),
                ));
            }
            let compiles = match sluice_schema::compile(&v.schema) {
                Ok(_) => true,
                Err(e) => {
                    out.push(FieldError::new(
                        &format!("{at}.schema"),
                        format!("not a valid JSON Schema: {e}"),
                    ));
                    false
                }
            };
            if let Some(p) = previous
                && compiles
            {
                let broke = compat::breaks(&p.schema, &v.schema, self.compatibility.into());
                if !broke.is_empty() {
                    out.push(FieldError::new(
                        &format!("{at}.schema"),
                        format!(
                            "version {} is not {} compatible with version {}: {}; add the change as allowed by spec.compatibility, or set compatibility: none",
                            v.version,
                            mode_name(self.compatibility),
                            p.version,
                            broke.join("; ")
                        ),
                    ));
                }
            }
            // A version that is not a schema is reported once, not compared with its neighbours.
            if compiles {
                previous = Some(v);
            }
        }
    }

    /// The publishers' view of this schema.
    pub fn to_def(&self, namespace: &str, name: &str) -> sluice_schema::SchemaDef {
        sluice_schema::SchemaDef {
            name: format!("{namespace}/{name}"),
            ty: self.ty.clone(),
            source: self.source.clone(),
            versions: self
                .versions
                .iter()
                .map(|v| (v.version, v.schema.clone()))
                .collect(),
        }
    }

    pub fn latest(&self) -> Option<u32> {
        self.versions.iter().map(|v| v.version).max()
    }
}

fn mode_name(m: CompatibilityMode) -> &'static str {
    match m {
        CompatibilityMode::Backward => "backward",
        CompatibilityMode::Forward => "forward",
        CompatibilityMode::Full => "fully",
        CompatibilityMode::None => "",
    }
}

#[cfg(feature = "crd")]
impl EventSchema {
    /// Every problem with this EventSchema that the CRD schema cannot catch.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        crate::validate::check_meta(self.metadata.name.as_deref(), &mut out);
        self.spec.validate("spec", &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(versions: Value) -> EventSchemaSpec {
        serde_json::from_value(json!({"type": "com.example.order", "versions": versions})).unwrap()
    }

    fn errors(s: &EventSchemaSpec) -> Vec<String> {
        let mut out = Vec::new();
        s.validate("spec", &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn versions_must_ascend_compile_and_stay_compatible() {
        let ok = spec(json!([
            {"version": 1, "schema": {"type": "object", "properties": {"id": {"type": "string"}}}},
            {"version": 2, "schema": {"type": "object", "properties": {"id": {"type": "string"}, "n": {"type": "integer"}}}},
        ]));
        assert_eq!(errors(&ok), Vec::<String>::new());
        let bad = spec(json!([
            {"version": 2, "schema": {"type": "object"}},
            {"version": 2, "schema": {"type": "nothing"}},
            {"version": 3, "schema": {"type": "object", "required": ["id"]}},
        ]));
        let e = errors(&bad);
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.versions[1].version: 2 must be greater")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.versions[1].schema: not a valid JSON Schema")),
            "{e:?}"
        );
        assert!(
            e.contains(&"spec.versions[2].schema: version 3 is not backward compatible with version 2: $.data: required field \"id\" added; add the change as allowed by spec.compatibility, or set compatibility: none".to_owned()),
            "{e:?}"
        );
        let mut none = bad.clone();
        none.compatibility = CompatibilityMode::None;
        none.versions.remove(1);
        assert_eq!(errors(&none), Vec::<String>::new());
    }
}
