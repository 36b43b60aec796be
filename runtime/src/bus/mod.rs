//! The bus: named, durable event logs plus one delivery queue per Trigger. One trait, two
//! backends: `embedded` (redb, one process, the `sluice dev` default) and, later, `nats`
//! (JetStream). Ingress and replies publish; the router moves matches into trigger queues;
//! workers lease, then ack, retry or dead-letter.

pub mod embedded;
pub mod queue;

use std::{sync::Arc, time::Duration};

use sluice_event::CloudEvent;

/// `namespace/name` of a Trigger: the name of its delivery queue.
pub type TriggerId = String;

/// One event to append to a bus.
#[derive(Clone, Debug)]
pub struct Publish {
    pub bus: String,
    pub event: CloudEvent,
    /// Drop the event when its (source, id) was already accepted on this bus within the
    /// dedupe window. Producers' events are deduplicated; Sluice's own (replies, dead
    /// letters) are not.
    pub dedupe: bool,
}

/// What became of a published event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Appended at this position of its bus.
    Appended(u64),
    /// Already accepted within the dedupe window; nothing written.
    Duplicate,
}

/// A routed event to put on a trigger's queue.
#[derive(Clone, Debug)]
pub struct Enqueue {
    pub trigger: TriggerId,
    pub event: Arc<CloudEvent>,
    /// When the event was first accepted (ms since the epoch), for `maxAge`.
    pub accepted_ms: u64,
    /// The value at the trigger's `ordering.key`, when it has one.
    pub key: Option<String>,
}

/// How a trigger's queue hands out events.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    pub max_inflight: usize,
    /// How long a lease lasts before the event is handed out again (function timeout plus
    /// a margin).
    pub lease: Duration,
}

/// An event leased to a worker.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub trigger: TriggerId,
    /// Position in the trigger's queue.
    pub seq: u64,
    /// 1 for the first delivery.
    pub attempt: u32,
    pub accepted_ms: u64,
    pub event: Arc<CloudEvent>,
}

/// Why and how an event was given up.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub trigger: TriggerId,
    pub seq: u64,
    /// `exhausted`, `fatal`, `expired`, `loop`, …
    pub reason: String,
    pub attempts: u32,
    pub last_error: String,
    pub at_ms: u64,
    pub event: CloudEvent,
}

impl DeadLetter {
    /// The dead letter as a CloudEvent: the original with `sluicereason`, `sluiceattempts`,
    /// `sluicelasterror` and `sluicetrigger` extensions.
    pub fn to_event(&self) -> CloudEvent {
        use sluice_event::Extension;
        let mut e = self.event.clone();
        e.extensions.insert(
            "sluicereason".into(),
            Extension::String(self.reason.clone()),
        );
        e.extensions.insert(
            "sluiceattempts".into(),
            Extension::Integer(i64::from(self.attempts)),
        );
        e.extensions.insert(
            "sluicelasterror".into(),
            Extension::String(self.last_error.clone()),
        );
        e.extensions.insert(
            "sluicetrigger".into(),
            Extension::String(self.trigger.clone()),
        );
        e
    }
}

/// Queue depth, the autoscaling signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub queued: u64,
    pub inflight: u64,
}

impl Depth {
    pub fn pending(&self) -> u64 {
        self.queued + self.inflight
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus storage: {0}")]
    Storage(String),
    #[error("bus {0:?} is unknown")]
    UnknownBus(String),
    #[error("the bus is shutting down")]
    Closed,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
