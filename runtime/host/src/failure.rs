//! How an invocation can fail. `Failure` is what a guest's behaviour produces (the delivery
//! engine retries or dead-letters on it); `HostError` is what loading a module or building the
//! engine produces (the operator reports it on the Function).

use std::time::Duration;

/// Why one event did not succeed. Retry policy (DESIGN §4): guest traps, timeouts, memory
/// exhaustion and output floods are retryable, because they are often caused by load or by an
/// input that a fixed handler version will cope with, and `maxAttempts` bounds the cost.
/// `denied`, `fatal` and `invalid_reply` are not: the same module with the same grants cannot
/// succeed on a second try.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The wall-clock limit (`spec.limits.timeout`) elapsed.
    #[error("timeout after {}", fmt_duration(*.0))]
    Timeout(Duration),
    /// The instance tried to grow its memory beyond `spec.limits.memory` (bytes).
    #[error("memory limit of {} exceeded", fmt_bytes(*.0))]
    MemoryLimit(u64),
    /// The guest trapped: stack overflow, unreachable (a Rust panic), out-of-bounds access…
    #[error("trap: {0}")]
    Trap(String),
    /// stdout plus stderr exceeded `spec.limits.output` (bytes).
    #[error("output limit of {} exceeded", fmt_bytes(*.0))]
    OutputLimit(u64),
    /// The guest used something it was not granted (a socket, a host not in outboundHosts).
    #[error("denied: {0}")]
    Denied(String),
    /// The guest said a retry can help (`error::retryable`, or a command's non-zero exit).
    #[error("retryable: {0}")]
    Retryable(String),
    /// The guest said the event can never succeed (`error::fatal`, or exit status 65).
    #[error("fatal: {0}")]
    Fatal(String),
    /// The guest returned a reply that is not a valid CloudEvent.
    #[error("invalid reply: {0}")]
    InvalidReply(String),
}

impl Failure {
    /// Whether the delivery engine should try this event again (with backoff) rather than
    /// dead-letter it now.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Failure::Timeout(_)
                | Failure::MemoryLimit(_)
                | Failure::Trap(_)
                | Failure::OutputLimit(_)
                | Failure::Retryable(_)
        )
    }

    /// A stable, low-cardinality label for metrics and the dead letter's `sluicereason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "timeout",
            Failure::MemoryLimit(_) => "memory_limit",
            Failure::Trap(_) => "trap",
            Failure::OutputLimit(_) => "output_limit",
            Failure::Denied(_) => "denied",
            Failure::Retryable(_) => "retryable",
            Failure::Fatal(_) => "fatal",
            Failure::InvalidReply(_) => "invalid_reply",
        }
    }
}

/// Why the engine could not be built or a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("wasm engine: {0}")]
    Engine(String),
    #[error("function {function}: module: {reason}")]
    Module { function: String, reason: String },
    #[error("function {function}: {field}: {reason}")]
    Config {
        function: String,
        field: &'static str,
        reason: String,
    },
    #[error("compiled-module cache {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `2s`, `1.5s`, `250ms`: how a user writes it in `spec.limits.timeout`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{}s", d.as_secs_f64())
    } else if ms > 0 {
        format!("{ms}ms")
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// `64Mi`, `1Ki`, `1000`: Kubernetes notation, as in `spec.limits`.
pub(crate) fn fmt_bytes(b: u64) -> String {
    for (shift, unit) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if b >= 1 << shift && b.is_multiple_of(1 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_limit() {
        assert_eq!(
            Failure::Timeout(Duration::from_secs(2)).to_string(),
            "timeout after 2s"
        );
        assert_eq!(
            Failure::Timeout(Duration::from_millis(1500)).to_string(),
            "timeout after 1.5s"
        );
        assert_eq!(
            Failure::MemoryLimit(64 << 20).to_string(),
            "memory limit of 64Mi exceeded"
        );
        assert_eq!(
            Failure::Trap("unreachable".into()).to_string(),
            "trap: unreachable"
        );
        assert_eq!(fmt_bytes(1000), "1000");
    }

    #[test]
    fn retry_policy() {
        let retryable = [
            Failure::Timeout(Duration::from_secs(1)),
            Failure::MemoryLimit(1),
            Failure::Trap("x".into()),
            Failure::OutputLimit(1),
            Failure::Retryable("x".into()),
        ];
        let terminal = [
            Failure::Denied("x".into()),
            Failure::Fatal("x".into()),
            Failure::InvalidReply("x".into()),
        ];
        assert!(retryable.iter().all(Failure::is_retryable));
        assert!(!terminal.iter().any(Failure::is_retryable));
        let reasons: Vec<_> = retryable
            .iter()
            .chain(&terminal)
            .map(Failure::reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "timeout",
                "memory_limit",
                "trap",
                "output_limit",
                "retryable",
                "denied",
                "fatal",
                "invalid_reply"
            ]
        );
    }
}
