//! The bus: named, durable event logs plus one delivery queue per Trigger. One trait, two
//! backends: `embedded` (redb, one process, the `sluice dev` default) and `nats` (JetStream
//! streams and durable pull consumers). Ingress and replies publish; the router moves matches
//! into trigger queues; workers lease, then ack, retry or dead-letter.
//!
//! Owns: durable storage of events, queues, leases, retries as scheduled redeliveries, dead
//! letters and depth. Must not know: what a pattern is, how a handler runs, HTTP, processes or
//! Kubernetes — it stores and hands out what the layers above decide.

pub mod archive;
pub mod embedded;
/// Triggers' gates (rate limit, circuit breaker): the pure decisions and the state both buses
/// keep, defined with the spec types so the operator reads the same state.
pub use sluice_api::gate;
/// The fuzz targets' checks (`runtime/bus/fuzz`), callable from `cargo test` too.
#[doc(hidden)]
pub mod fuzz {
    /// A journal segment of arbitrary bytes, read back and decoded.
    pub fn journal(data: &[u8]) {
        crate::embedded::fuzz_segment(data)
    }
}
pub mod nats;
pub mod queue;
pub mod trace;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use sluice_event::CloudEvent;

/// The bus events go to when a manifest names none (schedule and HTTP replies, `POST /`).
pub const DEFAULT_BUS: &str = "default";

/// What a bus call returns.
pub type BusFuture<'a, T> = BoxFuture<'a, Result<T, BusError>>;

/// What ingress, workers and the CLI's admin endpoints need from a bus backend. Routing is
/// backend-specific (the embedded router moves a cursor and enqueues in one commit; the NATS
/// router acks a shared durable consumer), so it is not part of the trait.
pub trait Bus: Send + Sync + 'static {
    /// `embedded` or `nats`, for logs and `/readyz`.
    fn kind(&self) -> &'static str;
    /// Why the bus cannot take publishes now, if it cannot (`/readyz` fails with it): the
    /// embedded bus's disk is full, the NATS connection is down. It clears by itself.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
    /// Appends producers' events; resolves once they are durable.
    fn publish(&self, items: Vec<Publish>) -> BusFuture<'_, Vec<Published>>;
    /// Position of the last event of `bus` (0 when empty).
    fn head<'a>(&'a self, bus: &'a str) -> BusFuture<'a, u64>;
    /// Up to `limit` events after position `after`: (position, accepted ms, event).
    fn read<'a>(
        &'a self,
        bus: &'a str,
        after: u64,
        limit: usize,
    ) -> BusFuture<'a, Vec<(u64, u64, CloudEvent)>>;
    /// Waits (at most `max`) for something to be appended to `bus`.
    fn wait_published<'a>(&'a self, bus: &'a str, max: Duration) -> BoxFuture<'a, ()>;
    /// Puts events straight on trigger queues (schedules and bridges, which skip the router).
    fn enqueue(&self, items: Vec<Enqueue>) -> BusFuture<'_, ()>;
    /// Leases up to `max` due deliveries of `trigger` without waiting, as many as its gate
    /// ([`gate`]: rate limit, circuit breaker) lets go now.
    fn lease<'a>(&'a self, trigger: &'a str, max: usize) -> BusFuture<'a, Vec<Delivery>>;
    /// A number that changes whenever some queue may have something new to lease.
    fn queued_version(&self) -> u64;
    /// Waits until `queued_version` differs from `since`, a retry of `triggers` falls due,
    /// the gate of one holding events back opens, or `max` passes.
    fn wait_queued<'a>(
        &'a self,
        triggers: &'a [TriggerId],
        since: u64,
        max: Duration,
    ) -> BoxFuture<'a, ()>;
    /// The delivery succeeded: appends its replies (Sluice's own events), then acks it. A
    /// delivery whose replies were not appended is never acked, so it runs again.
    fn ack<'a>(&'a self, d: &'a Delivery, replies: Vec<Publish>) -> BusFuture<'a, ()>;
    /// The delivery failed; deliver it again after `delay`.
    fn retry<'a>(&'a self, d: &'a Delivery, delay: Duration, error: &'a str) -> BusFuture<'a, ()>;
    /// Gives an event up: records the dead letter for `sluice dlq` and publishes it on
    /// `to_bus`. `from` is the delivery it ends (none for a reply stopped by the hop limit).
    fn dead_letter<'a>(
        &'a self,
        dead: DeadLetter,
        to_bus: Option<&'a str>,
        from: Option<&'a Delivery>,
    ) -> BusFuture<'a, ()>;
    /// Records an attempt's outcome for the Trigger's circuit breaker: `ok`, or a failure
    /// another attempt could help. Ignored for a Trigger without one.
    fn record_outcome<'a>(&'a self, trigger: &'a str, ok: bool) -> BusFuture<'a, ()>;
    /// The Trigger's circuit breaker as this process last saw it, when it has one.
    fn breaker(&self, trigger: &str) -> Option<gate::BreakerStatus>;
    /// Queued plus in-flight events of a trigger.
    fn depth<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, Depth>;
    /// Up to `limit` of a trigger's dead letters, oldest first, after skipping `offset`, and how
    /// many it has in all. Only the page is decoded and held.
    fn dead_letters<'a>(
        &'a self,
        trigger: &'a str,
        offset: usize,
        limit: usize,
    ) -> BusFuture<'a, DeadLetterPage>;
    /// Puts a trigger's dead letters back on its queue with fresh attempts.
    fn redrive<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize>;
    /// Deletes a trigger's dead letters.
    fn purge<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize>;
    /// Records steps of events' journeys ([`trace`]). Never waits for storage and never
    /// fails: a step is an account of a delivery, not part of it.
    fn trace(&self, steps: Vec<trace::Step>);
    /// Whether [`Bus::trace`] keeps what it is given: when not, callers skip building steps
    /// (on NATS recording is opt-in, and a step costs allocations on the hot path).
    fn records_steps(&self) -> bool {
        true
    }
    /// The recorded steps of the event with this id (any source), oldest first.
    fn traced<'a>(&'a self, id: &'a str) -> BusFuture<'a, Vec<trace::Step>>;
    /// The newest `limit` recorded steps, oldest first.
    fn recent_steps(&self, limit: usize) -> BusFuture<'_, Vec<trace::Step>>;
}

pub type SharedBus = Arc<dyn Bus>;

/// Where a published event goes: the publisher's compiled route table. The NATS bus routes at
/// publish (each event is stored once per matched Trigger, under that Trigger's subject), so
/// every publisher holds one; the embedded bus routes in its own router task and needs none.
pub trait Routes: Send + Sync + 'static {
    /// The Triggers of `bus` that an event (its CloudEvent JSON) goes to, each with its
    /// ordering key, in a stable order.
    fn route(&self, bus: &str, json: &[u8]) -> Result<Vec<Route>, String>;
    /// The home bus of a Trigger in the table: where its queue is (see [`Enqueue::bus`]).
    fn home(&self, trigger: &str) -> Option<String>;
    /// The Triggers whose source is `bus`, sorted.
    fn triggers_of(&self, bus: &str) -> Vec<TriggerId>;
}

/// One Trigger an event was routed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub trigger: TriggerId,
    /// The value at the Trigger's `ordering.key`, when it has one.
    pub key: Option<String>,
}

/// A route table that routes nothing: every event is archived unrouted.
pub struct NoRoutes;

impl Routes for NoRoutes {
    fn route(&self, _bus: &str, _json: &[u8]) -> Result<Vec<Route>, String> {
        Ok(Vec::new())
    }
    fn home(&self, _trigger: &str) -> Option<String> {
        None
    }
    fn triggers_of(&self, _bus: &str) -> Vec<TriggerId> {
        Vec::new()
    }
}

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
    /// The trigger's home bus: its source bus, or [`DEFAULT_BUS`] for schedules and bridges.
    /// On NATS the queue is that bus's stream; the embedded bus keeps queues apart.
    pub bus: String,
    pub event: Arc<CloudEvent>,
    /// When the event was first accepted (ms since the epoch), for `maxAge`.
    pub accepted_ms: u64,
    /// The value at the trigger's `ordering.key`, when it has one.
    pub key: Option<String>,
    /// The replay (`sluice replay`) this re-delivery belongs to. A replayed copy is not part
    /// of the bus's archive (readers of the bus skip it) and is deduplicated per replay, not
    /// against the original.
    pub replay: Option<String>,
}

/// How much of a bus is kept: its archive, which `sluice tail --after` and `sluice replay`
/// read. Whichever limit is reached first removes the oldest events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
        }
    }
}

/// Retention per bus (`--retention BUS=AGE:SIZE`), with a default for every other bus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    pub default: Retention,
    pub buses: BTreeMap<String, Retention>,
}

impl RetentionConfig {
    /// The retention of `bus`.
    pub fn of(&self, bus: &str) -> Retention {
        self.buses.get(bus).copied().unwrap_or(self.default)
    }
}

/// How a trigger's queue hands out events.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    /// The trigger's home bus (see [`Enqueue::bus`]).
    pub bus: String,
    pub max_inflight: usize,
    /// The trigger has an `ordering.key`: events sharing a key go one at a time.
    pub ordered: bool,
    /// How long a lease lasts before the event is handed out again (function timeout plus
    /// a margin).
    pub lease: Duration,
    /// How many events a process may hold ready for its workers ahead of their leases (the
    /// Function's concurrency): a remote bus streams that many in so a free slot never waits
    /// for a round trip. The embedded bus leases in place and ignores it.
    pub prefetch: usize,
    /// The Trigger's rate limit and circuit breaker, applied when its events are leased.
    pub gate: gate::Gate,
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
    /// The backend's handle for acking (the JetStream message); none on the embedded bus.
    pub receipt: Option<Arc<nats::Receipt>>,
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

/// One page of a trigger's dead letters.
#[derive(Debug, Default)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetter>,
    /// Dead letters the trigger has in all.
    pub total: usize,
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
    /// Some events of a publish were stored and some not: `stored[i]` is event i's outcome,
    /// `None` when it was not (fully) stored.
    #[error("bus storage: {} of {} events stored: {reason}", stored.iter().flatten().count(), stored.len())]
    Partial {
        stored: Vec<Option<Published>>,
        reason: String,
    },
    #[error("bus {0:?} is unknown")]
    UnknownBus(String),
    #[error("the bus is shutting down")]
    Closed,
    /// A worker reported the outcome of a delivery whose lease had expired and been given to
    /// another worker: the outcome is dropped (the other worker's counts).
    #[error(
        "trigger {trigger}: the lease on queue entry {seq} (delivery {attempt}) expired and the entry was handed out again; this outcome is dropped"
    )]
    LeaseLost {
        trigger: String,
        seq: u64,
        attempt: u32,
    },
}

impl BusError {
    /// Delivery `d`'s outcome came after its lease ran out.
    pub fn lease_lost(d: &Delivery) -> Self {
        BusError::LeaseLost {
            trigger: d.trigger.clone(),
            seq: d.seq,
            attempt: d.attempt,
        }
    }
}

/// The clock retries and leases are timed by, in milliseconds: the wall clock as it read when
/// this process first asked, advanced by the monotonic clock since. A step of the wall clock
/// (NTP correcting it, a VM resumed) must not move due times: a step back of an hour would
/// hold every retry for an hour, a step forward expire every lease at once. It stays within
/// the steps taken since the process started of the wall clock, so due times stored by an
/// earlier process (`not_before`) still read right after a restart.
pub fn sched_ms() -> u64 {
    static START: std::sync::OnceLock<(std::time::Instant, u64)> = std::sync::OnceLock::new();
    let (t0, wall0) = *START.get_or_init(|| (std::time::Instant::now(), now_ms()));
    wall0 + t0.elapsed().as_millis() as u64
}

/// Milliseconds since the Unix epoch: the wall clock, for timestamps (acceptance times, the
/// archive's time ranges, dead letters), never for timing delays ([`sched_ms`]).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
