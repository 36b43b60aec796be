//! Delivery: routing decides which Triggers an event goes to (the embedded bus's router task
//! moves matches onto trigger queues; on NATS every publisher routes before it stores, with
//! [`router::BusRoutes`]); workers lease events
//! from their Function's trigger queues, run the handler, then ack (publishing replies),
//! schedule a retry, or dead-letter; `replay` re-delivers a time range of a bus's archive.
//! Decisions live in `policy` and `replay::select` (pure); the rest does the I/O around them.
//!
//! Owns: routing (a bus's Triggers compiled into one matcher; the embedded router and the
//! route table NATS publishers use),
//! the worker loop, the pure retry/dead-letter policy and the runtime's metrics. Must not
//! know: HTTP, manifest files, processes or Kubernetes; handlers are behind [`Invoker`], so
//! the Wasm host is not a dependency.

pub mod batch;
pub mod metrics;
pub mod otel;
pub mod policy;
pub mod replay;
pub mod router;
pub mod worker;

use std::{future::Future, pin::Pin, sync::Arc};

use sluice_event::CloudEvent;

/// A failed invocation as the delivery engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokeError {
    /// Whether another attempt can help.
    pub retryable: bool,
    /// Short machine label: `timeout`, `memory_limit`, `trap`, `fatal`, …
    pub reason: String,
    /// The whole story for humans (`timeout after 2s`).
    pub message: String,
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type InvokeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<CloudEvent>, InvokeError>> + Send + 'a>>;

/// What a batch invocation returned: replies, and the items (by position) that failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchResult {
    pub replies: Vec<CloudEvent>,
    pub failed: Vec<(usize, InvokeError)>,
}

pub type BatchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BatchResult, InvokeError>> + Send + 'a>>;

/// Runs events through a Function's handler. The Wasm host implements it.
pub trait Invoker: Send + Sync {
    fn invoke<'a>(&'a self, event: &'a CloudEvent) -> InvokeFuture<'a>;

    /// Runs a batch (a Trigger's `delivery.batch`) in one invocation; an `Err` fails every
    /// item.
    fn invoke_batch<'a>(&'a self, events: &'a [Arc<CloudEvent>]) -> BatchFuture<'a>;
}

pub type SharedInvoker = Arc<dyn Invoker>;

/// The event a Trigger's handler gets when the Trigger has a transform: the transform's output
/// as `data` (JSON), attributes as they were but `dataschema`, which the new data no longer
/// follows. A transform that fails on an event fails the same way on every attempt, so the
/// failure is fatal (reason `transform`): the event is dead-lettered with the template position.
pub fn transformed(
    t: &sluice_transform::Transform,
    event: &CloudEvent,
    trigger: &str,
) -> Result<CloudEvent, InvokeError> {
    let out = t
        .apply(
            &event.to_json_value(),
            sluice_transform::Context { trigger },
        )
        .map_err(|e| InvokeError {
            retryable: false,
            reason: "transform".into(),
            message: format!("Trigger {trigger} spec.transform.{e}"),
        })?;
    let mut e = event.clone();
    e.data = Some(serde_json::to_vec(&out).unwrap_or_default());
    e.datacontenttype = Some("application/json".into());
    e.dataschema = None;
    Ok(e)
}

/// The hop-count extension on reply events.
pub const HOPS: &str = "sluicehops";

/// Default limit on reply chains (DESIGN §5).
pub const DEFAULT_HOP_LIMIT: i64 = 16;

/// The hop count of an event (0 for a producer's event).
pub fn hops(e: &CloudEvent) -> i64 {
    match e.extensions.get(HOPS) {
        Some(sluice_event::Extension::Integer(n)) => *n,
        Some(sluice_event::Extension::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}
