//! What one invocation records as it runs: who is running (for every guest log line and
//! refusal) and the first limit or grant the guest ran into. The sandbox state, the output
//! streams and the handler all write here; it depends on nothing but `failure`.

use std::sync::{Arc, Mutex};

use crate::failure::Failure;

/// Who is running, for every log record and refusal message of one invocation.
#[derive(Clone, Debug)]
pub(crate) struct LogContext {
    pub(crate) function: Arc<str>,
    pub(crate) event_id: Arc<str>,
}

impl LogContext {
    pub(crate) fn new(function: &str, event_id: &str) -> Self {
        Self {
            function: function.into(),
            event_id: event_id.into(),
        }
    }

    /// One line of guest stderr (or a component's stdout), with an optional level prefix.
    /// Logs one guest line; returns its message when it is an `error:` line, which a
    /// command's fatal exit reports as its reason.
    pub(crate) fn guest_line(&self, line: &[u8]) -> Option<String> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return None;
        }
        let (level, msg) = split_level(line);
        self.guest_log(level, msg);
        (level == tracing::Level::ERROR).then(|| msg.to_owned())
    }

    pub(crate) fn guest_log(&self, level: tracing::Level, msg: &str) {
        let (function, event_id) = (&*self.function, &*self.event_id);
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::TRACE => {
                tracing::trace!(target: "sluice::guest", function, event_id, "{msg}")
            }
        }
    }
}

/// `error: disk full` → (ERROR, "disk full"); no known prefix → INFO and the whole line.
pub(crate) fn split_level(line: &str) -> (tracing::Level, &str) {
    for (prefix, level) in [
        ("error:", tracing::Level::ERROR),
        ("warn:", tracing::Level::WARN),
        ("info:", tracing::Level::INFO),
        ("debug:", tracing::Level::DEBUG),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return (level, rest.trim_start());
        }
    }
    (tracing::Level::INFO, line)
}

/// The first limit or grant the guest ran into during one invocation. It explains a failure
/// that follows (a Rust guest whose allocation was refused aborts with `unreachable`; we
/// report `memory_limit`, not `trap`). A guest that recovers and succeeds is not failed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Violations(Arc<Mutex<Option<Failure>>>);

impl Violations {
    pub(crate) fn record(&self, failure: Failure) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(failure);
    }

    pub(crate) fn take(&self) -> Option<Failure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_prefixes() {
        assert_eq!(split_level("error: boom"), (tracing::Level::ERROR, "boom"));
        assert_eq!(split_level("warn:x"), (tracing::Level::WARN, "x"));
        assert_eq!(split_level("debug: d"), (tracing::Level::DEBUG, "d"));
        assert_eq!(split_level("plain"), (tracing::Level::INFO, "plain"));
        assert_eq!(split_level("Error: x"), (tracing::Level::INFO, "Error: x"));
    }

    #[test]
    fn first_violation_wins() {
        let v = Violations::default();
        v.record(Failure::MemoryLimit(1));
        v.record(Failure::OutputLimit(2));
        assert_eq!(v.take(), Some(Failure::MemoryLimit(1)));
        assert_eq!(v.take(), None);
    }
}
