//! The `Function` resource: a Wasm module plus how to run it (limits, capabilities,
//! concurrency, scaling). The same type parses `sluice dev` manifests and the CRD.

#[cfg(feature = "crd")]
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{ByteSize, Condition, Duration};

/// A serverless function: the Wasm module to run and the sandbox it runs in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[cfg_attr(feature = "crd", derive(CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "sluice.dev",
        version = "v1alpha1",
        kind = "Function",
        plural = "functions",
        singular = "function",
        shortname = "fn",
        category = "sluice",
        namespaced,
        status = "FunctionStatus",
        derive = "PartialEq",
        scale(
            spec_replicas_path = ".spec.replicas",
            status_replicas_path = ".status.replicas",
            label_selector_path = ".status.selector"
        ),
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.replicas"}"#,
        printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pending"}"#,
        printcolumn = r#"{"name":"Digest","type":"string","priority":1,"jsonPath":".status.digest"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionSpec {
    /// Where the Wasm module comes from: exactly one of url (with sha256), oci, configMap, path.
    pub module: ModuleSource,
    /// How the module talks to the host. Detected from the binary when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<Abi>,
    /// Environment variables visible to the handler; the host environment never is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Per-invocation sandbox limits.
    #[serde(default)]
    pub limits: Limits,
    /// What the sandbox may reach beyond its event. Nothing is granted unless listed.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// In-flight invocations per worker replica.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 10000))]
    pub concurrency: u32,
    /// Queue-depth autoscaling of worker replicas.
    #[serde(default)]
    pub scaling: Scaling,
    /// Pins the worker count and turns the autoscaler off (`kubectl scale fn NAME
    /// --replicas=N` sets it). Omit it to let `scaling` decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// The event types the handler replies with. A reply of another type fails the attempt
    /// (fatal: the event is dead-lettered with the reason); every reply whose type has an
    /// EventSchema is validated against it either way. Empty: any type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub emits: Vec<String>,
}

fn default_concurrency() -> u32 {
    64
}

/// Exactly one source of the module's bytes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = exactly_one_module_source)]
pub struct ModuleSource {
    /// HTTPS (or HTTP) address of the .wasm file; requires `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Hex SHA-256 of the module. Required with `url`; checked against `path` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// OCI reference of a Wasm artifact, e.g. `registry.example.com/shop/invoice:1.4.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    /// A ConfigMap in the Function's namespace holding the module in `binaryData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapModule>,
    /// A file relative to the manifest; only `sluice dev` reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The names of the module sources, in the order the schema lists them.
pub const MODULE_SOURCES: [&str; 4] = ["url", "oci", "configMap", "path"];

fn exactly_one_module_source(schema: &mut Schema) {
    let one_of: Vec<_> = MODULE_SOURCES
        .iter()
        .map(|s| json!({ "required": [s] }))
        .collect();
    schema.insert("oneOf".into(), one_of.into());
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapModule {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in `binaryData`.
    #[serde(default = "default_module_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_module_key() -> String {
    "module.wasm".into()
}

/// The calling convention between host and module.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Abi {
    /// A Wasm component exporting the `sluice:function/handler` world.
    Component,
    /// A WASI program: CloudEvent JSON on stdin, reply events as JSON lines on stdout.
    Command,
}

impl Abi {
    /// As a manifest spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Abi::Component => "component",
            Abi::Command => "command",
        }
    }
}

impl std::fmt::Display for Abi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One environment variable: a literal value or a reference to a Secret or ConfigMap key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvSource>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Per-invocation sandbox limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Linear memory cap of one instance (`64Mi`); at most 4Gi, the wasm32 address space.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Wall-clock time one invocation may take (`5s`); at most 15m.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Bytes a command module may write to stdout plus stderr per invocation.
    #[serde(default = "default_output")]
    pub output: ByteSize,
}

fn default_memory() -> ByteSize {
    ByteSize::mebibytes(64)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_output() -> ByteSize {
    ByteSize::mebibytes(1)
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: default_memory(),
            timeout: default_timeout(),
            output: default_output(),
        }
    }
}

/// Grants beyond pure computation on the event.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    /// Hosts the handler may call over outgoing HTTP (`api.example.com`, `api.example.com:8443`,
    /// `*.example.com`). Empty means no network at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound_hosts: Vec<String>,
}

/// Worker autoscaling by queue depth (DESIGN §6).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scaling {
    /// 0 lets the Function scale to zero when idle; the first event wakes it.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: u32,
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: u32,
    /// Queued plus in-flight events one replica is expected to absorb.
    #[serde(default = "default_target_pending")]
    #[schemars(range(min = 1, max = 1000000))]
    pub target_pending_per_replica: u32,
    /// Time without need before scaling down.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
}

fn default_max_replicas() -> u32 {
    10
}
fn default_target_pending() -> u32 {
    100
}
fn default_cooldown() -> Duration {
    Duration::from_secs(60)
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min_replicas: 0,
            max_replicas: default_max_replicas(),
            target_pending_per_replica: default_target_pending(),
            cooldown: default_cooldown(),
        }
    }
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `sha256:<hex>` of the resolved module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Worker replicas currently running.
    #[serde(default)]
    pub replicas: i32,
    /// Queued plus in-flight events over all triggers of this Function.
    #[serde(default)]
    pub pending: i64,
    /// Label selector of the worker Pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
