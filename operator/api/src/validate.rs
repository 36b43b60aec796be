//! Rules the OpenAPI schema cannot express (cross-field bounds, durations in range, cron
//! syntax, host and subject grammars, the event pattern). Each returns every problem with the
//! field path, so a user fixes a manifest in one round.

use std::{collections::HashSet, fmt, sync::LazyLock};

use regex::Regex;
use serde_json::Value;

use crate::{
    Duration, FunctionSpec, TriggerSpec,
    function::{EnvVar, ModuleSource, Scaling},
    trigger::{Delivery, TriggerSource},
};
#[cfg(feature = "crd")]
use crate::{Function, Trigger};

/// One problem with one field of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the object root: `spec.delivery.retry.maxAttempts`, `spec.env[2].name`.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.into()
            },
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$")
        .expect("static regex")
});
static OCI_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$")
        .expect("static regex")
});
static ATTR_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(\.[A-Za-z0-9_-]+)*$").expect("static regex"));

/// Names that become Kubernetes object names, label values and NATS stream names.
pub fn check_dns_label(path: &str, name: &str, out: &mut Vec<FieldError>) {
    if let Err(e) = dns_label(path, name) {
        out.push(e);
    }
}

/// The same check for one value, where no list of problems is being collected (an HTTP path
/// parameter, a command-line flag).
pub fn dns_label(path: &str, name: &str) -> Result<(), FieldError> {
    if name.len() > 63 || !DNS_LABEL.is_match(name) {
        return Err(FieldError::new(
            path,
            format!(
                "{name:?} must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
            ),
        ));
    }
    Ok(())
}

static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("static regex")
});

/// The name of another object (a Secret): a DNS-1123 subdomain, so it is also a safe file name.
pub fn check_dns_subdomain(path: &str, name: &str, out: &mut Vec<FieldError>) {
    if name.len() > 253 || !DNS_SUBDOMAIN.is_match(name) {
        out.push(FieldError::new(
            path,
            format!(
                "{name:?} must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
            ),
        ));
    }
}

fn check_duration(
    path: &str,
    d: Duration,
    min: Duration,
    max: Duration,
    out: &mut Vec<FieldError>,
) {
    if d < min || d > max {
        out.push(FieldError::new(
            path,
            format!("must be between {min} and {max}, not {d}"),
        ));
    }
}

#[cfg(feature = "crd")]
impl Function {
    /// Every problem with this Function that the CRD schema cannot catch.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        check_meta(self.metadata.name.as_deref(), &mut out);
        self.spec.validate("spec", &mut out);
        out
    }
}

impl FunctionSpec {
    /// Appends an error per invalid field, each named under `path` (`spec` in a manifest).
    pub fn validate(&self, path: &str, out: &mut Vec<FieldError>) {
        validate_module(&self.module, &format!("{path}.module"), out);
        validate_env(&self.env, &format!("{path}.env"), out);
        let mem = self.limits.memory.bytes();
        if !(64 << 10..=4 << 30).contains(&mem) {
            out.push(FieldError::new(
                &format!("{path}.limits.memory"),
                format!(
                    "must be between 64Ki (one Wasm page) and 4Gi, not {}",
                    self.limits.memory
                ),
            ));
        }
        check_duration(
            &format!("{path}.limits.timeout"),
            self.limits.timeout,
            Duration::from_millis(1),
            Duration::from_secs(15 * 60),
            out,
        );
        let output = self.limits.output.bytes();
        if !(1 << 10..=64 << 20).contains(&output) {
            out.push(FieldError::new(
                &format!("{path}.limits.output"),
                format!("must be between 1Ki and 64Mi, not {}", self.limits.output),
            ));
        }
        let mut seen = HashSet::new();
        for (i, host) in self.capabilities.outbound_hosts.iter().enumerate() {
            let p = format!("{path}.capabilities.outboundHosts[{i}]");
            if host != "*" && !HOST.is_match(host) {
                out.push(FieldError::new(
                    &p,
                    format!("{host:?} must be a host name with an optional port (api.example.com, *.example.com, api.example.com:8443), without scheme or path"),
                ));
            } else if !seen.insert(host.to_ascii_lowercase()) {
                out.push(FieldError::new(&p, format!("{host:?} is listed twice")));
            }
        }
        validate_scaling(&self.scaling, &format!("{path}.scaling"), out);
        let mut types = HashSet::new();
        for (i, ty) in self.emits.iter().enumerate() {
            let p = format!("{path}.emits[{i}]");
            check_attribute(&p, ty, out);
            if !types.insert(ty) {
                out.push(FieldError::new(&p, format!("{ty:?} is listed twice")));
            }
        }
    }
}

/// A CloudEvents attribute value a manifest names (an event `type`, a `source`): what the
/// ingress accepts from a producer, so a manifest never names an event that cannot exist.
pub fn check_attribute(path: &str, value: &str, out: &mut Vec<FieldError>) {
    if value.is_empty() {
        out.push(FieldError::new(path, "must not be empty"));
    } else if value.len() > sluice_event::MAX_ATTRIBUTE_BYTES {
        out.push(FieldError::new(
            path,
            format!(
                "must be at most {} bytes",
                sluice_event::MAX_ATTRIBUTE_BYTES
            ),
        ));
    } else if value.chars().any(char::is_control) {
        out.push(FieldError::new(
            path,
            format!("{value:?} must not contain control characters"),
        ));
    }
}

#[cfg(feature = "crd")]
pub(crate) fn check_meta(name: Option<&str>, out: &mut Vec<FieldError>) {
    match name {
        None => out.push(FieldError::new(
            "metadata.name",
            "required field is missing",
        )),
        Some(n) => check_dns_label("metadata.name", n, out),
    }
}

fn validate_module(m: &ModuleSource, path: &str, out: &mut Vec<FieldError>) {
    if let Some(url) = &m.url {
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(char::is_whitespace)
        {
            out.push(FieldError::new(
                &format!("{path}.url"),
                format!("{url:?} must be an http:// or https:// address"),
            ));
        }
        if m.sha256.is_none() {
            out.push(FieldError::new(
                &format!("{path}.sha256"),
                "required with url: a downloaded module is only run when its digest is pinned",
            ));
        }
    }
    if let Some(oci) = &m.oci {
        if !OCI_REF.is_match(oci) {
            out.push(FieldError::new(
                &format!("{path}.oci"),
                format!(
                    "{oci:?} must be an OCI reference: registry/repository[:tag][@sha256:digest]"
                ),
            ));
        }
        if m.sha256.is_some() {
            out.push(FieldError::new(
                &format!("{path}.sha256"),
                "applies to url and path only; pin an OCI module with @sha256:<digest> in the reference",
            ));
        }
    }
    if let Some(cm) = &m.config_map {
        check_dns_label(&format!("{path}.configMap.name"), &cm.name, out);
        if m.sha256.is_some() {
            out.push(FieldError::new(
                &format!("{path}.sha256"),
                "applies to url and path only",
            ));
        }
    }
    if let Some(p) = &m.path
        && p.trim().is_empty()
    {
        out.push(FieldError::new(
            &format!("{path}.path"),
            "must not be empty",
        ));
    }
    if let Some(sha) = &m.sha256
        && (sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    {
        out.push(FieldError::new(
            &format!("{path}.sha256"),
            "must be 64 lowercase hex digits",
        ));
    }
    let set = [
        m.url.is_some(),
        m.oci.is_some(),
        m.config_map.is_some(),
        m.path.is_some(),
    ];
    let n = set.iter().filter(|s| **s).count();
    if n != 1 {
        out.push(FieldError::new(
            path,
            format!("exactly one of url, oci, configMap, path is required, found {n}"),
        ));
    }
}

fn validate_env(env: &[EnvVar], path: &str, out: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, var) in env.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !seen.insert(var.name.as_str()) {
            out.push(FieldError::new(
                &format!("{p}.name"),
                format!("{:?} is defined twice", var.name),
            ));
        }
        match (&var.value, &var.value_from) {
            (Some(_), Some(_)) => out.push(FieldError::new(
                &p,
                "value and valueFrom are mutually exclusive",
            )),
            (None, None) => out.push(FieldError::new(&p, "one of value or valueFrom is required")),
            (None, Some(from)) => {
                let refs = [
                    from.secret_key_ref.is_some(),
                    from.config_map_key_ref.is_some(),
                ];
                if refs.iter().filter(|r| **r).count() != 1 {
                    out.push(FieldError::new(
                        &format!("{p}.valueFrom"),
                        "exactly one of secretKeyRef, configMapKeyRef is required",
                    ));
                }
            }
            (Some(_), None) => {}
        }
    }
}

fn validate_scaling(s: &Scaling, path: &str, out: &mut Vec<FieldError>) {
    if s.min_replicas > s.max_replicas {
        out.push(FieldError::new(
            &format!("{path}.minReplicas"),
            format!(
                "must not exceed maxReplicas ({} > {})",
                s.min_replicas, s.max_replicas
            ),
        ));
    }
    check_duration(
        &format!("{path}.cooldown"),
        s.cooldown,
        Duration::from_secs(0),
        Duration::from_secs(86_400),
        out,
    );
}

#[cfg(feature = "crd")]
impl Trigger {
    /// Every problem with this Trigger that the CRD schema cannot catch.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        check_meta(self.metadata.name.as_deref(), &mut out);
        self.spec.validate("spec", &mut out);
        out
    }
}

impl TriggerSpec {
    /// Appends an error per invalid field, each named under `path` (`spec` in a manifest).
    pub fn validate(&self, path: &str, out: &mut Vec<FieldError>) {
        validate_source(&self.source, &format!("{path}.source"), out);
        if let Some(pattern) = &self.pattern {
            out.extend(validate_pattern(pattern, &format!("{path}.pattern")));
        }
        check_dns_label(&format!("{path}.function"), &self.function, out);
        validate_delivery(&self.delivery, &format!("{path}.delivery"), out);
        if let Some(r) = self.schema_version {
            let at = format!("{path}.schemaVersion");
            if let (Some(min), Some(max)) = (r.min, r.max)
                && min > max
            {
                out.push(FieldError::new(
                    &format!("{at}.min"),
                    format!("{min} is above max {max}"),
                ));
            }
            if self
                .pattern
                .as_ref()
                .is_some_and(|p| p.get(sluice_schema::VERSION_ATTRIBUTE).is_some())
            {
                out.push(FieldError::new(
                    &format!("{path}.pattern.{}", sluice_schema::VERSION_ATTRIBUTE),
                    "set by spec.schemaVersion; name the versions there only",
                ));
            }
        }
        if let Some(t) = &self.transform
            && let Err(errors) = t.compile(&format!("{path}.transform"))
        {
            out.extend(errors);
        }
        if self.delivery.batch.is_some() && self.source.http.is_some() {
            out.push(FieldError::new(
                &format!("{path}.delivery.batch"),
                "an http source answers each request with its own reply, so it cannot batch; \
                 batch a bus, schedule, mqtt or nats source",
            ));
        }
        if let (Some(dl), Some(bus)) = (&self.delivery.dead_letter, &self.source.bus)
            && dl.bus == *bus
            && !excludes_dead_letters(self.pattern.as_ref())
        {
            out.push(FieldError::new(
                &format!("{path}.delivery.deadLetter.bus"),
                format!(
                    "{bus:?} is the Trigger's own source bus: its dead letters would match it again, \
                     a loop; name another bus, or add \"sluicereason\": [{{\"exists\": false}}] to \
                     the pattern"
                ),
            ));
        }
    }
}

/// Whether a pattern refuses dead letters (events carrying `sluicereason`).
fn excludes_dead_letters(pattern: Option<&serde_json::Value>) -> bool {
    pattern
        .and_then(|p| p.get("sluicereason"))
        .and_then(|v| v.as_array())
        .is_some_and(|alts| alts.len() == 1 && alts[0] == serde_json::json!({"exists": false}))
}

fn validate_source(s: &TriggerSource, path: &str, out: &mut Vec<FieldError>) {
    if let Some(bus) = &s.bus {
        check_dns_label(&format!("{path}.bus"), bus, out);
    }
    if let Some(expr) = &s.schedule {
        let fields = expr.split_whitespace().count();
        if fields != 5 {
            out.push(FieldError::new(
                &format!("{path}.schedule"),
                format!("{expr:?} must have five fields (minute hour day-of-month month day-of-week), found {fields}"),
            ));
        } else if let Err(e) = croner::Cron::new(expr).parse() {
            out.push(FieldError::new(
                &format!("{path}.schedule"),
                format!("{expr:?} is not a valid cron expression: {e}"),
            ));
        }
    }
    if let Some(http) = &s.http
        && http.path.split('/').any(|seg| seg == "." || seg == "..")
    {
        out.push(FieldError::new(
            &format!("{path}.http.path"),
            "must not contain . or .. segments",
        ));
    }
    if let Some(secret) = s.http.as_ref().and_then(|h| h.token_secret.as_ref()) {
        check_dns_subdomain(&format!("{path}.http.tokenSecret"), secret, out);
    }
    if let Some(secret) = s.mqtt.as_ref().and_then(|m| m.credentials_secret.as_ref()) {
        check_dns_subdomain(&format!("{path}.mqtt.credentialsSecret"), secret, out);
    }
    if let Some(secret) = s.nats.as_ref().and_then(|n| n.credentials_secret.as_ref()) {
        check_dns_subdomain(&format!("{path}.nats.credentialsSecret"), secret, out);
    }
    if let Some(mqtt) = &s.mqtt {
        let scheme_ok = ["mqtt://", "mqtts://", "tcp://", "ssl://"]
            .iter()
            .any(|p| mqtt.url.starts_with(p));
        if !scheme_ok {
            out.push(FieldError::new(
                &format!("{path}.mqtt.url"),
                format!("{:?} must start with mqtt:// or mqtts://", mqtt.url),
            ));
        }
        let levels: Vec<&str> = mqtt.topic.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            let bad = (level.contains('#') && (*level != "#" || i + 1 != levels.len()))
                || (level.contains('+') && *level != "+");
            if bad {
                out.push(FieldError::new(
                    &format!("{path}.mqtt.topic"),
                    format!(
                        "{:?}: '+' must fill a whole level and '#' must be the whole last level",
                        mqtt.topic
                    ),
                ));
                break;
            }
        }
    }
    if let Some(nats) = &s.nats {
        let tokens: Vec<&str> = nats.subject.split('.').collect();
        let bad = tokens.iter().enumerate().any(|(i, t)| {
            t.is_empty()
                || t.contains(char::is_whitespace)
                || (t.contains('>') && (*t != ">" || i + 1 != tokens.len()))
                || (t.contains('*') && *t != "*")
        });
        if bad {
            out.push(FieldError::new(
                &format!("{path}.nats.subject"),
                format!("{:?} must be dot-separated tokens without spaces; '*' fills a token, '>' only as the last", nats.subject),
            ));
        }
        if let Some(url) = &nats.url
            && !(url.starts_with("nats://") || url.starts_with("tls://"))
        {
            out.push(FieldError::new(
                &format!("{path}.nats.url"),
                format!("{url:?} must start with nats:// or tls://"),
            ));
        }
    }
}

fn validate_delivery(d: &Delivery, path: &str, out: &mut Vec<FieldError>) {
    let r = &d.retry;
    let rp = format!("{path}.retry");
    check_duration(
        &format!("{rp}.initialDelay"),
        r.initial_delay,
        Duration::from_millis(1),
        Duration::from_secs(86_400),
        out,
    );
    check_duration(
        &format!("{rp}.maxDelay"),
        r.max_delay,
        Duration::from_millis(1),
        Duration::from_secs(86_400),
        out,
    );
    check_duration(
        &format!("{rp}.maxAge"),
        r.max_age,
        Duration::from_secs(1),
        Duration::from_secs(7 * 86_400),
        out,
    );
    if r.initial_delay > r.max_delay {
        out.push(FieldError::new(
            &format!("{rp}.initialDelay"),
            format!(
                "must not exceed maxDelay ({} > {})",
                r.initial_delay, r.max_delay
            ),
        ));
    }
    if let Some(dl) = &d.dead_letter {
        check_dns_label(&format!("{path}.deadLetter.bus"), &dl.bus, out);
    }
    if let Some(b) = &d.batch {
        let bp = format!("{path}.batch");
        check_duration(
            &format!("{bp}.maxWait"),
            b.max_wait,
            Duration::from_secs(0),
            Duration::from_secs(300),
            out,
        );
        let bytes = b.max_bytes.bytes();
        if !(1 << 10..=16 << 20).contains(&bytes) {
            out.push(FieldError::new(
                &format!("{bp}.maxBytes"),
                format!("must be between 1Ki and 16Mi, not {}", b.max_bytes.as_str()),
            ));
        }
        if b.max_events > d.max_inflight {
            out.push(FieldError::new(
                &format!("{bp}.maxEvents"),
                format!(
                    "{} is above {path}.maxInflight ({}): a batch could never fill",
                    b.max_events, d.max_inflight
                ),
            ));
        }
    }
    if let Some(c) = &d.circuit_breaker {
        let cp = format!("{path}.circuitBreaker");
        check_duration(
            &format!("{cp}.coolOff"),
            c.cool_off,
            Duration::from_secs(1),
            Duration::from_secs(3600),
            out,
        );
    }
    if let Some(o) = &d.ordering
        && !ATTR_PATH.is_match(&o.key)
    {
        out.push(FieldError::new(
            &format!("{path}.ordering.key"),
            format!(
                "{:?} must be a dotted path into the event, e.g. subject or data.orderId",
                o.key
            ),
        ));
    }
}

/// Checks an event pattern with the pattern engine's own parser, so `sluice validate` accepts
/// exactly what the router will compile; errors carry the full path from the object root.
pub fn validate_pattern(pattern: &Value, path: &str) -> Vec<FieldError> {
    match sluice_pattern::Pattern::parse(pattern) {
        Ok(_) => Vec::new(),
        Err(e) if e.path.is_empty() => vec![FieldError::new(path, e.reason)],
        Err(e) => vec![FieldError::new(&format!("{path}.{}", e.path), e.reason)],
    }
}

/// Input paths of a Trigger's transform that no event it can receive has, judged by the
/// newest version of the EventSchema for the one `type` its pattern names (and its `source`,
/// when the pattern names one; else a schema for any source). `schemas` are `(namespace/name,
/// spec)`. Nothing is refused when the pattern leaves the type open or no schema applies.
pub fn transform_paths_against_schemas(
    spec: &TriggerSpec,
    path: &str,
    schemas: &[(String, &crate::EventSchemaSpec)],
) -> Vec<FieldError> {
    let Some(transform) = &spec.transform else {
        return Vec::new();
    };
    let only = |field: &str| -> Option<&str> {
        match spec.pattern.as_ref()?.get(field)?.as_array()?.as_slice() {
            [Value::String(s)] => Some(s.as_str()),
            _ => None,
        }
    };
    let Some(ty) = only("type") else {
        return Vec::new();
    };
    let source = only("source");
    let schema = schemas
        .iter()
        .filter(|(_, s)| s.ty == ty)
        .find(|(_, s)| source.is_some() && s.source.as_deref() == source)
        .or_else(|| {
            schemas
                .iter()
                .find(|(_, s)| s.ty == ty && s.source.is_none())
        });
    let Some((name, schema)) = schema else {
        return Vec::new();
    };
    let Some(newest) = schema.versions.iter().max_by_key(|v| v.version) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (input, p) in &transform.input_paths {
        let Ok(steps) = sluice_transform::expr::path_steps(p) else {
            continue; // reported by the Trigger's own validation
        };
        if steps.first().and_then(Value::as_str) != Some("data") {
            continue;
        }
        if let Some(why) = sluice_schema::cannot_reach(&newest.schema, &steps[1..]) {
            out.push(FieldError::new(
                &format!("{path}.transform.inputPaths.{input}"),
                format!(
                    "{p:?} cannot exist in events of type {ty}: EventSchema {name} v{}: {why}",
                    newest.version
                ),
            ));
        }
    }
    out
}
