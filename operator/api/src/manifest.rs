//! Reads multi-document YAML into typed resources. Each document is checked in the order the
//! API server would (schema, then typed decode, then `validate()`), and the outcome is kept
//! per document so one broken object never hides or drops its valid neighbours.

use std::fmt;

use kube::Resource as _;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    EventSchema, FieldError, Function, Trigger, crd, credentials::SecretValues, schema, validate,
};

/// A resource Sluice understands.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Function(Box<Function>),
    Trigger(Box<Trigger>),
    EventSchema(Box<EventSchema>),
    /// A core `v1` Secret beside the Functions: where `sluice dev` finds what a Trigger's
    /// `tokenSecret` or `credentialsSecret` names, as a cluster finds it in the namespace.
    Secret(ObjectRef, SecretValues),
}

impl Resource {
    pub fn object_ref(&self) -> ObjectRef {
        match self {
            Resource::Function(f) => ObjectRef::of("Function", f.meta()),
            Resource::Trigger(t) => ObjectRef::of("Trigger", t.meta()),
            Resource::EventSchema(s) => ObjectRef::of("EventSchema", s.meta()),
            Resource::Secret(r, _) => r.clone(),
        }
    }
}

/// `Kind namespace/name`, as the user wrote it (or `?` where a part is missing).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    fn of(kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self {
            kind: kind.into(),
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            name: meta.name.clone().unwrap_or_else(|| "?".into()),
        }
    }

    fn from_value(v: &Value) -> Self {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
        Self {
            kind: s("/kind").unwrap_or_else(|| "?".into()),
            namespace: s("/metadata/namespace").unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            name: s("/metadata/name").unwrap_or_else(|| "?".into()),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The namespace of an object whose manifest names none, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What became of one YAML document.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Valid(Resource),
    Invalid(Vec<FieldError>),
    /// Not a `sluice.dev` object (a ConfigMap beside the Functions, say): left alone.
    Skipped {
        /// Why, for the user: `v1 is not a Sluice resource`.
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// 1-based position in the file.
    pub index: usize,
    pub object: ObjectRef,
    pub outcome: Outcome,
}

/// Every document of a multi-document YAML (or JSON) text, empty ones left out.
pub fn parse(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(value) => {
                let (object, outcome) = check(value);
                docs.push(Document {
                    index,
                    object,
                    outcome,
                });
            }
            Err(e) => {
                docs.push(Document {
                    index,
                    object: ObjectRef {
                        kind: "YAML".into(),
                        namespace: String::new(),
                        name: format!("document {index}"),
                    },
                    outcome: Outcome::Invalid(vec![FieldError::new(
                        "",
                        format!("not valid YAML: {e}"),
                    )]),
                });
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        }
    }
    docs
}

/// Checks one object: schema, typed decode, then the rules the schema cannot express.
pub fn check(value: Value) -> (ObjectRef, Outcome) {
    let object = ObjectRef::from_value(&value);
    if !value.is_object() {
        let msg = format!("a manifest must be an object, not {}", schema::kind(&value));
        return (object, Outcome::Invalid(vec![FieldError::new("", msg)]));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version == "v1" && kind == "Secret" {
        return secret(value, object);
    }
    let Some(version) = api_version
        .strip_prefix(crd::GROUP)
        .and_then(|v| v.strip_prefix('/'))
    else {
        if api_version.is_empty() && kind.is_empty() {
            // Not a Kubernetes object at all (a sample event beside the manifests, say).
            return (
                object,
                Outcome::Skipped {
                    reason: "not a Kubernetes object: no apiVersion or kind".into(),
                },
            );
        }
        if api_version.is_empty() {
            let e = FieldError::new(
                "apiVersion",
                format!(
                    "required field is missing (expected {}/{})",
                    crd::GROUP,
                    crd::VERSION
                ),
            );
            return (object, Outcome::Invalid(vec![e]));
        }
        let reason = format!("{api_version} is not a Sluice resource");
        return (object, Outcome::Skipped { reason });
    };
    let mut errors = Vec::new();
    if version != crd::VERSION {
        errors.push(FieldError::new(
            "apiVersion",
            format!(
                "unknown version {version:?} of {} (supported: {})",
                crd::GROUP,
                crd::VERSION
            ),
        ));
    }
    let Some(schema) = crd::schema_of(kind) else {
        errors.push(FieldError::new(
            "kind",
            format!("unknown kind {kind:?} (expected Function, Trigger or EventSchema)"),
        ));
        return (object, Outcome::Invalid(errors));
    };
    errors.extend(schema::check(&value, schema, ""));
    let raw_pattern = value
        .pointer("/spec/pattern")
        .filter(|p| p.is_object())
        .cloned();
    // Decode even when the schema failed: a number out of range still decodes, and then the
    // rules below can report their problems in the same round.
    let typed = match kind {
        "Function" => decode::<Function>(value).map(|f| Resource::Function(Box::new(f))),
        "EventSchema" => decode::<EventSchema>(value).map(|s| Resource::EventSchema(Box::new(s))),
        _ => decode::<Trigger>(value).map(|t| Resource::Trigger(Box::new(t))),
    };
    match typed {
        Ok(resource) => {
            let problems = match &resource {
                Resource::Function(f) => f.validate(),
                Resource::Trigger(t) => t.validate(),
                Resource::EventSchema(s) => s.validate(),
                Resource::Secret(..) => Vec::new(),
            };
            // One problem per field: where the schema spoke, its message stands.
            for p in problems {
                if !errors.iter().any(|e| e.path == p.path) {
                    errors.push(p);
                }
            }
            if errors.is_empty() {
                return (resource.object_ref(), Outcome::Valid(resource));
            }
        }
        Err(e) if errors.is_empty() => errors.push(e),
        Err(_) => {
            // The pattern is free-form to the schema; check it on its own.
            if let Some(pattern) = raw_pattern {
                errors.extend(validate::validate_pattern(&pattern, "spec.pattern"));
            }
        }
    }
    (object, Outcome::Invalid(errors))
}

/// A v1 Secret, its values as [`SecretValues`] reads them.
fn secret(value: Value, object: ObjectRef) -> (ObjectRef, Outcome) {
    let s = match decode::<k8s_openapi::api::core::v1::Secret>(value) {
        Ok(s) => s,
        Err(e) => return (object, Outcome::Invalid(vec![e])),
    };
    let mut errors = Vec::new();
    match s.metadata.name.as_deref() {
        None => errors.push(FieldError::new(
            "metadata.name",
            "required field is missing",
        )),
        Some(n) => validate::check_dns_subdomain("metadata.name", n, &mut errors),
    }
    if !errors.is_empty() {
        return (object, Outcome::Invalid(errors));
    }
    (
        object.clone(),
        Outcome::Valid(Resource::Secret(object, SecretValues::from(s))),
    )
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(&path, e.into_inner().to_string())
    })
}
