//! The `Trigger` resource: which events (source + EventBridge pattern) go to which Function,
//! and how they are delivered (retries, dead letters, ordering, in-flight bound).

#[cfg(feature = "crd")]
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Condition, Duration};

/// Routes matching events to a Function with a delivery policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[cfg_attr(feature = "crd", derive(CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "sluice.dev",
        version = "v1alpha1",
        kind = "Trigger",
        plural = "triggers",
        singular = "trigger",
        shortname = "trg",
        category = "sluice",
        namespaced,
        status = "TriggerStatus",
        derive = "PartialEq",
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.source"}"#,
        printcolumn = r#"{"name":"Function","type":"string","jsonPath":".spec.function"}"#,
        printcolumn = r#"{"name":"Circuit","type":"string","jsonPath":".status.circuit.state"}"#,
        printcolumn = r#"{"name":"Matched","type":"integer","priority":1,"jsonPath":".status.matched"}"#,
        printcolumn = r#"{"name":"Dead-lettered","type":"integer","priority":1,"jsonPath":".status.deadLettered"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    /// Where events come from: exactly one of bus, schedule, http, mqtt, nats.
    pub source: TriggerSource,
    /// An AWS EventBridge event pattern over the CloudEvent in JSON form. Omitted: every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pattern_schema")]
    pub pattern: Option<serde_json::Value>,
    /// Name of the Function (same namespace) that handles matching events.
    #[schemars(length(min = 1, max = 63))]
    pub function: String,
    #[serde(default)]
    pub delivery: Delivery,
    /// Only events stamped with an EventSchema version in this range (both ends included):
    /// events of a type without a schema never match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<VersionRange>,
    /// What the handler gets as the event's `data` instead of the event's own: JSON built
    /// from named values in the event (EventBridge's input transformer, with expressions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<InputTransform>,
}

/// A Trigger's input transform (docs/manifests.md#transform has the language).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputTransform {
    /// Names for values in the event, each a path from `$` (the event in its JSON form):
    /// `order: $.data.order.id`, `from: $.source`. A path that finds nothing gives null.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(schema_with = "input_paths_schema")]
    pub input_paths: std::collections::BTreeMap<String, String>,
    /// JSON with placeholders: `<name>` is an input path's value, `${expression}` computes one
    /// (`${round(total * 1.21, 2)}`); inside a string either is replaced by its text.
    #[schemars(length(min = 1, max = 16384))]
    pub template: String,
}

fn input_paths_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 100,
        "additionalProperties": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1024,
            "pattern": "^\\$",
        },
    })
}

impl InputTransform {
    /// The transform compiled, or every problem with it named by field under `path`.
    pub fn compile(
        &self,
        path: &str,
    ) -> Result<sluice_transform::Transform, Vec<crate::FieldError>> {
        let paths = self
            .input_paths
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        sluice_transform::Transform::compile(paths, &self.template).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| match e.place {
                    sluice_transform::Place::InputPath(name) => {
                        crate::FieldError::new(&format!("{path}.inputPaths.{name}"), e.message)
                    }
                    sluice_transform::Place::Template { line, column } => crate::FieldError::new(
                        &format!("{path}.template"),
                        format!("line {line}, column {column}: {}", e.message),
                    ),
                })
                .collect()
        })
    }
}

/// Versions of an EventSchema, both ends included; an omitted end is open.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max: Option<u32>,
}

impl TriggerSpec {
    /// The pattern events are matched with: `pattern` plus the `schemaVersion` range as a
    /// numeric condition on the stamp [`sluice_schema::VERSION_ATTRIBUTE`] (which producers
    /// cannot forge). Validation refuses a pattern that names the stamp itself.
    pub fn effective_pattern(&self) -> Option<serde_json::Value> {
        let Some(range) = self.schema_version else {
            return self.pattern.clone();
        };
        let mut bounds = Vec::new();
        if let Some(min) = range.min {
            bounds.extend([json!(">="), json!(min)]);
        }
        if let Some(max) = range.max {
            bounds.extend([json!("<="), json!(max)]);
        }
        if bounds.is_empty() {
            // Any version: the event must have passed a schema.
            bounds.extend([json!(">="), json!(0)]);
        }
        let mut p = match &self.pattern {
            Some(serde_json::Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        p.insert(
            sluice_schema::VERSION_ATTRIBUTE.into(),
            json!([{ "numeric": bounds }]),
        );
        Some(serde_json::Value::Object(p))
    }
}

fn pattern_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Exactly one event source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = exactly_one_trigger_source)]
pub struct TriggerSource {
    /// A named Sluice bus (`default` unless you made others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub bus: Option<String>,
    /// A five-field cron expression (`*/5 * * * *`), evaluated in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Synchronous invocation at `/fn/<namespace><path>`; the reply is the HTTP response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSource>,
    /// An MQTT broker topic filter bridged into CloudEvents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttSource>,
    /// A plain NATS subject bridged into CloudEvents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSource>,
}

/// The names of the trigger sources, in the order the schema lists them.
pub const TRIGGER_SOURCES: [&str; 5] = ["bus", "schedule", "http", "mqtt", "nats"];

fn exactly_one_trigger_source(schema: &mut Schema) {
    let one_of: Vec<_> = TRIGGER_SOURCES
        .iter()
        .map(|s| json!({ "required": [s] }))
        .collect();
    schema.insert("oneOf".into(), one_of.into());
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSource {
    /// Path below `/fn/<namespace>`, starting with `/`.
    #[schemars(
        regex(pattern = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$"),
        length(max = 1024)
    )]
    pub path: String,
    /// Allowed methods; empty means POST only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<HttpMethod>,
    /// Secret in the Trigger's namespace whose key `token` callers must send as
    /// `Authorization: Bearer <token>`. Omitted: the path is open to whoever reaches the
    /// Function's workers (the chart's NetworkPolicy and `functions.httpAuth` decide who can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub token_secret: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MqttSource {
    /// Broker address, `mqtt://host:port` (or `mqtts://`).
    pub url: String,
    /// Topic filter; `+` and `#` wildcards as in MQTT.
    #[schemars(length(min = 1, max = 65535))]
    pub topic: String,
    #[serde(default = "default_qos")]
    #[schemars(range(min = 0, max = 2))]
    pub qos: u8,
    /// Secret in the Trigger's namespace, labelled `sluice.dev/bridge-credentials: "true"`,
    /// with any of the keys `username`, `password`, `ca.crt` (trust this CA for `mqtts://`),
    /// `tls.crt` and `tls.key` (a client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

fn default_qos() -> u8 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSource {
    /// Server address; omitted means the NATS server Sluice itself uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Subject, with `*` and `>` wildcards as in NATS.
    #[schemars(length(min = 1, max = 1024))]
    pub subject: String,
    /// Queue group, so several bridges share the subject's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Secret in the Trigger's namespace, labelled `sluice.dev/bridge-credentials: "true"`,
    /// with one way to log in (`creds`, a NATS credentials file; `nkey`, a user seed; `token`;
    /// or `username` and `password`) and any of `ca.crt` (trust this CA for `tls://`),
    /// `tls.crt` and `tls.key` (a client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

/// How matching events reach the Function.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delivery {
    #[serde(default)]
    pub retry: Retry,
    /// Where events go after the last attempt or a fatal error. Omitted: they are dropped
    /// and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
    /// FIFO per key; parallel across keys. Omitted: no ordering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<Ordering>,
    /// Events of this Trigger in flight at once over all workers.
    #[serde(default = "default_max_inflight")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_inflight: u32,
    /// Hand the handler several events at once, as a CloudEvents batch (a JSON array), and
    /// let it say which of them failed. Omitted: one event per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
    /// Most events handed to the handler per second over every worker of the Trigger (a
    /// token bucket kept on the bus). Omitted: as fast as the workers go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Pauses the Trigger's deliveries after consecutive failures, for a cool-off, then tries
    /// one event before resuming. Omitted: never paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// A token bucket: `perSecond` tokens a second, up to `burst` saved while idle; each event
/// handed to the handler takes one (docs/manifests.md#rate-limit-and-circuit-breaker).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Events a second, over every worker.
    #[schemars(range(min = 1, max = 1000000))]
    pub per_second: u32,
    /// Events that may go at once after an idle spell. Omitted: `perSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: Option<u32>,
}

impl RateLimit {
    /// The burst in force (`perSecond` when unset).
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.per_second)
    }
}

/// When a Trigger's deliveries pause: after `consecutiveFailures` failed attempts in a row (a
/// failure another attempt could help: an error the handler calls retryable, a trap, a
/// timeout), for `coolOff`; then one event is tried, and its success resumes delivery while
/// its failure pauses it again. Paused events wait on the bus and are not counted as attempts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    #[serde(default = "default_breaker_failures")]
    #[schemars(range(min = 1, max = 10000))]
    pub consecutive_failures: u32,
    /// How long deliveries pause once it opens (1s to 1h).
    #[serde(default = "default_cool_off")]
    pub cool_off: Duration,
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_cool_off() -> Duration {
    Duration::from_secs(30)
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            consecutive_failures: default_breaker_failures(),
            cool_off: default_cool_off(),
        }
    }
}

/// How events are grouped into one invocation. A batch is handed over when it holds
/// `maxEvents` events, when the next event would take it past `maxBytes`, or `maxWait` after
/// its first event arrived, whichever comes first (docs/manifests.md#batch).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batch {
    /// Most events in one batch; at most `maxInflight`.
    #[serde(default = "default_batch_events")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_events: u32,
    /// Longest the first event of a batch waits for more (0s: only what is ready at once).
    #[serde(default = "default_batch_wait")]
    pub max_wait: Duration,
    /// Most bytes of the batch's JSON (1Ki to 16Mi). An event larger than this on its own goes
    /// in a batch of one.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: crate::ByteSize,
}

fn default_batch_events() -> u32 {
    10
}
fn default_batch_wait() -> Duration {
    Duration::from_secs(1)
}
fn default_batch_bytes() -> crate::ByteSize {
    "256Ki".parse().expect("a valid quantity")
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            max_events: default_batch_events(),
            max_wait: default_batch_wait(),
            max_bytes: default_batch_bytes(),
        }
    }
}

fn default_max_inflight() -> u32 {
    100
}

// Not derived: an omitted `delivery` must get the same `maxInflight` as an empty one (the CRD
// schema's default for `delivery` is this value, and the API server refuses 0).
impl Default for Delivery {
    fn default() -> Self {
        Self {
            retry: Retry::default(),
            dead_letter: None,
            ordering: None,
            max_inflight: default_max_inflight(),
            batch: None,
            rate_limit: None,
            circuit_breaker: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included (EventBridge's limit is 185).
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 185))]
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default = "default_initial_delay")]
    pub initial_delay: Duration,
    #[serde(default = "default_max_delay")]
    pub max_delay: Duration,
    /// An event older than this (since first accepted) is dead-lettered instead of retried.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(300)
}
fn default_max_age() -> Duration {
    Duration::from_secs(86_400)
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff: Backoff::default(),
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
            max_age: default_max_age(),
        }
    }
}

/// Growth of the delay between attempts; every delay gets full jitter.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// initialDelay × 2^(attempt-1), capped at maxDelay.
    #[default]
    Exponential,
    /// initialDelay × attempt, capped at maxDelay.
    Linear,
    /// Always initialDelay.
    Constant,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetter {
    /// The bus dead letters are published to, as CloudEvents with `sluicereason`,
    /// `sluiceattempts`, `sluicelasterror` and `sluicetrigger` extensions.
    #[schemars(length(min = 1, max = 63))]
    pub bus: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ordering {
    /// Dotted path into the CloudEvent JSON (`subject`, `data.orderId`) whose value is the key.
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub matched: u64,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub retried: u64,
    #[serde(default)]
    pub dead_lettered: u64,
    /// The circuit breaker's state, when the Trigger has one (`spec.delivery.circuitBreaker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<CircuitStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Where a Trigger's circuit breaker stands, as its workers last recorded it on the bus.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitStatus {
    /// `closed` (delivering), `open` (paused until `openUntil`) or `half-open` (the cool-off
    /// is over; one event is tried before delivery resumes).
    pub state: String,
    /// Failed attempts in a row so far.
    #[serde(default)]
    pub failures: u32,
    /// When the cool-off ends (RFC 3339), while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<String>,
}
