//! The NATS JetStream bus: one limits stream per bus, routed at publish, and one stream of
//! dead-letter records. JetStream does the clustering, storage and redelivery; Sluice maps its
//! delivery semantics onto it (docs/architecture.md#the-nats-jetstream-bus):
//!
//! * publish: the publisher matches the event against its route table (hot-reloaded, see
//!   [`crate::Routes`]) and stores it once per matched Trigger under
//!   `sluice.bus.<bus>.t.<ns>.<name>.<partition>`, or once under `sluice.bus.<bus>.none`.
//!   `Nats-Msg-Id` = 128 bits of SHA-256 of (source, id) plus the Trigger, so the duplicate
//!   window is the dedupe window; the 202 waits for every copy's publish ack.
//! * queues: each Trigger's durable pull consumer(s) of its bus's stream, filtered to its
//!   subjects, each read by one pull request at a time into a buffer of the Function's
//!   concurrency. A consumer's `AckWait` is the function timeout plus a margin;
//!   `max_ack_pending` is `maxInflight`; a retry is a NAK with the backoff delay; the attempt
//!   is the message's delivery count; dead letters are recorded, published, then acked.
//! * ordering: an ordered Trigger's copies go to partition subjects by a hash of the key,
//!   each with its own consumer holding one event in flight, so a key's events go one at a
//!   time in bus order, across retries too (a NAK'd event stays pending on its consumer).
//! * depth: the sum of `num_pending + num_ack_pending` over the Trigger's consumers, as the
//!   stream leader reports them.
//! * archive: acked copies stay until the stream's age or size limit drops them; readers
//!   (tail, replay) skip every copy after the first of an event.

mod dead_letter;
mod depth;
mod gate;
mod publish;
mod queue;
pub mod routes;
mod trace;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, future::BoxFuture};
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;
use tokio::sync::Notify;

pub use publish::dedupe_id;
use queue::QueueState;
pub use queue::{partition_of, pull};

use super::{
    Bus, BusError, BusFuture, DeadLetter, DeadLetterPage, Delivery, Depth, Enqueue, NoRoutes,
    Publish, Published, RetentionConfig, Routes, TriggerId,
};

/// Partitions of an ordered trigger's queue: keys hash onto them; each goes one at a time.
pub const ORDER_PARTITIONS: u32 = 8;

/// Header carrying when an event was first accepted on its bus (ms since the epoch).
const ACCEPTED: &str = "Sluice-Accepted";
/// Header carrying the ordering key of a queued event.
const KEY: &str = "Sluice-Key";
/// Header on the second and later stored copies of one event (their index), which readers of
/// the archive skip.
const COPY: &str = "Sluice-Copy";

/// The JetStream message behind a delivery, for acking it, and until when this process
/// holds its lease.
pub struct Receipt {
    msg: jetstream::Message,
    held_until: std::time::Instant,
}

impl Receipt {
    /// The message, while its lease holds. JetStream takes the ack of a delivery whose AckWait
    /// passed even after it sent the message to another worker (`tests/nats_queue.rs`), so the
    /// lease is fenced here: past `held_until` the outcome is refused and the other delivery
    /// decides.
    fn held(&self, d: &Delivery) -> Result<&jetstream::Message, BusError> {
        if std::time::Instant::now() < self.held_until {
            Ok(&self.msg)
        } else {
            Err(BusError::lease_lost(d))
        }
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

/// Stream limits for the streams Sluice creates.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    pub url: String,
    /// A `.creds` file (JWT + NKey) when the server requires it.
    pub credentials: Option<std::path::PathBuf>,
    /// Producers' (source, id) pairs are dropped within this window.
    pub dedupe_window: Duration,
    /// Each bus stream's age and size limits: its archive.
    pub retention: RetentionConfig,
    /// Set a stream's limits to `retention` when they differ. Only the processes configured
    /// with retention (the chart's ingress and router) do; the rest (workers) create streams
    /// with it but leave existing ones alone, so processes never undo each other's setting.
    pub enforce_retention: bool,
    /// How long dead-letter records are kept for `sluice dlq`.
    pub dead_letter_age: Duration,
    /// Record the steps of events' journeys in the `sluice_trace` stream (`sluice trace`,
    /// the console). Off unless `SLUICE_TRACE_STEPS=1`: each step is one more stored message,
    /// and with them publish→handle throughput measured 30–39% of raw JetStream instead of
    /// 51–63% (docs/benchmarks.md).
    pub trace_steps: bool,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials: None,
            dedupe_window: Duration::from_secs(300),
            retention: RetentionConfig::default(),
            enforce_retention: false,
            dead_letter_age: Duration::from_secs(14 * 24 * 3600),
            trace_steps: std::env::var("SLUICE_TRACE_STEPS")
                .is_ok_and(|v| matches!(v.as_str(), "1" | "true")),
        }
    }
}

pub fn nats_err(e: impl std::fmt::Display) -> BusError {
    BusError::Storage(format!("nats: {e}"))
}

/// `namespace/name` → (namespace, name).
fn split_id(trigger: &str) -> Result<(&str, &str), BusError> {
    trigger
        .split_once('/')
        .ok_or_else(|| BusError::Storage(format!("trigger id {trigger:?} is not namespace/name")))
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    cfg: NatsConfig,
    buses: Mutex<HashSet<String>>,
    /// The route table publishes are routed with; swapped whole on reload.
    routes: std::sync::RwLock<Arc<dyn Routes>>,
    queues: Mutex<HashMap<TriggerId, Arc<QueueState>>>,
    /// Bumped (and `queued` notified) when a queue's feed receives work into an empty buffer.
    queued_version: AtomicU64,
    queued: Notify,
    dead_letters_ready: tokio::sync::OnceCell<()>,
    trace_ready: tokio::sync::OnceCell<()>,
    /// The gates bucket, opened by the first gated Trigger.
    gates: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
}

/// A handle on the JetStream bus; cheap to clone.
#[derive(Clone)]
pub struct NatsBus(Arc<Inner>);

impl NatsBus {
    /// Connects; reconnects by itself after a server restart.
    pub async fn connect(cfg: NatsConfig) -> Result<Self, BusError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("sluice")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5));
        if let Some(creds) = &cfg.credentials {
            opts = opts
                .credentials_file(creds)
                .await
                .map_err(|e| nats_err(format!("--nats-creds {}: {e}", creds.display())))?;
        }
        let client = tokio::time::timeout(Duration::from_secs(10), opts.connect(&cfg.url))
            .await
            .map_err(|_| nats_err(format!("{}: no answer within 10s", cfg.url)))?
            .map_err(|e| nats_err(format!("{}: {e}", cfg.url)))?;
        let js = jetstream::new(client.clone());
        Ok(Self(Arc::new(Inner {
            client,
            js,
            cfg,
            buses: Mutex::default(),
            routes: std::sync::RwLock::new(Arc::new(NoRoutes)),
            queues: Mutex::default(),
            queued_version: AtomicU64::new(0),
            queued: Notify::new(),
            dead_letters_ready: tokio::sync::OnceCell::new(),
            trace_ready: tokio::sync::OnceCell::new(),
            gates: tokio::sync::OnceCell::new(),
        })))
    }

    /// Routes every later publish with `routes` (publishes under way keep the table they
    /// started with).
    pub fn set_routes(&self, routes: Arc<dyn Routes>) {
        *self.0.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// The route table publishes are routed with now.
    pub fn routes(&self) -> Arc<dyn Routes> {
        self.0
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.0.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.0.js
    }
}

impl Bus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn health(&self) -> Result<(), String> {
        match self.0.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(format!("NATS connection {state}; reconnecting")),
        }
    }

    fn publish(&self, items: Vec<Publish>) -> BusFuture<'_, Vec<Published>> {
        self.publish_all(items).boxed()
    }

    fn head<'a>(&'a self, bus: &'a str) -> BusFuture<'a, u64> {
        async move {
            match self.0.js.get_stream(names::bus_stream(bus)).await {
                Ok(mut s) => Ok(s.info().await.map_err(nats_err)?.state.last_sequence),
                Err(e) if stream_missing(&e) => Ok(0),
                Err(e) => Err(nats_err(e)),
            }
        }
        .boxed()
    }

    fn read<'a>(
        &'a self,
        bus: &'a str,
        after: u64,
        limit: usize,
    ) -> BusFuture<'a, Vec<(u64, u64, CloudEvent)>> {
        async move {
            let msgs = self
                .read_stream(&names::bus_stream(bus), None, after, limit)
                .await?;
            Ok(msgs
                .into_iter()
                .filter(|(_, m)| !is_later_copy(m))
                .filter_map(|(pos, m)| {
                    let at = accepted_ms(&m);
                    CloudEvent::from_json(&m.payload).ok().map(|e| (pos, at, e))
                })
                .collect())
        }
        .boxed()
    }

    fn wait_published<'a>(&'a self, _bus: &'a str, max: Duration) -> BoxFuture<'a, ()> {
        // Followers of a bus poll: cheap at this rate, and no subscription to clean up.
        tokio::time::sleep(max.min(Duration::from_millis(100))).boxed()
    }

    /// Schedules and bridges: the event's (source, id) and the trigger are the message id, so
    /// routers firing the same schedule enqueue it once.
    fn enqueue(&self, items: Vec<Enqueue>) -> BusFuture<'_, ()> {
        let steps = crate::trace::enqueued(&items);
        async move {
            self.enqueue_all(items, true).await?;
            self.trace_now(steps);
            Ok(())
        }
        .boxed()
    }

    fn lease<'a>(&'a self, trigger: &'a str, max: usize) -> BusFuture<'a, Vec<Delivery>> {
        self.lease_now(trigger, max).boxed()
    }

    fn queued_version(&self) -> u64 {
        self.0.queued_version.load(Ordering::Acquire)
    }

    fn wait_queued<'a>(
        &'a self,
        triggers: &'a [TriggerId],
        since: u64,
        max: Duration,
    ) -> BoxFuture<'a, ()> {
        async move {
            let notified = self.0.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.queued_version() != since {
                return;
            }
            // Everything, retries and expired leases of crashed peers included, comes back
            // through the feeds, which notify; the timeout only bounds a missed wake-up. A
            // gate holding events back says when it may let them go.
            let mut wait = max.min(Duration::from_secs(1));
            if let Some(at) = self.gate_reopens(triggers) {
                wait = wait.min(Duration::from_millis(
                    at.saturating_sub(crate::now_ms()).max(1),
                ));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        .boxed()
    }

    fn record_outcome<'a>(&'a self, trigger: &'a str, ok: bool) -> BusFuture<'a, ()> {
        async move {
            let q = lock(&self.0.queues).get(trigger).cloned();
            match q.as_ref().and_then(|q| q.gate.as_ref()) {
                Some(keys) => self.record(keys, ok).await,
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn breaker(&self, trigger: &str) -> Option<crate::gate::BreakerStatus> {
        let q = lock(&self.0.queues).get(trigger).cloned()?;
        let keys = q.gate.as_ref()?;
        keys.gate.breaker?;
        let now = crate::now_ms();
        Some(keys.seen().unwrap_or_default().status(now, now))
    }

    fn ack<'a>(&'a self, d: &'a Delivery, replies: Vec<Publish>) -> BusFuture<'a, ()> {
        async move {
            // Checked before the replies too: a late worker's replies would duplicate those of
            // the worker that has the event now.
            if let Some(r) = &d.receipt {
                r.held(d)?;
            }
            if !replies.is_empty() {
                self.publish_all(replies).await?;
            }
            match &d.receipt {
                Some(r) => r.held(d)?.ack().await.map_err(nats_err),
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn retry<'a>(&'a self, d: &'a Delivery, delay: Duration, _error: &'a str) -> BusFuture<'a, ()> {
        async move {
            // The server sends it again after the delay, through the Trigger's feed.
            match &d.receipt {
                Some(r) => r
                    .held(d)?
                    .ack_with(AckKind::Nak(Some(delay)))
                    .await
                    .map_err(nats_err),
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn dead_letter<'a>(
        &'a self,
        dead: DeadLetter,
        to_bus: Option<&'a str>,
        from: Option<&'a Delivery>,
    ) -> BusFuture<'a, ()> {
        self.dead_letter_now(dead, to_bus, from).boxed()
    }

    fn depth<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, Depth> {
        self.depth_of(trigger).boxed()
    }

    fn dead_letters<'a>(
        &'a self,
        trigger: &'a str,
        offset: usize,
        limit: usize,
    ) -> BusFuture<'a, DeadLetterPage> {
        self.dead_letter_page(trigger, offset, limit).boxed()
    }

    fn redrive<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize> {
        self.redrive_now(trigger).boxed()
    }

    fn purge<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize> {
        self.purge_now(trigger).boxed()
    }

    fn trace(&self, steps: Vec<crate::trace::Step>) {
        self.trace_now(steps);
    }

    fn records_steps(&self) -> bool {
        self.0.cfg.trace_steps
    }

    fn traced<'a>(&'a self, id: &'a str) -> BusFuture<'a, Vec<crate::trace::Step>> {
        self.traced_now(id).boxed()
    }

    fn recent_steps(&self, limit: usize) -> BusFuture<'_, Vec<crate::trace::Step>> {
        self.recent_steps_now(limit).boxed()
    }
}

/// A second or later stored copy of an event (routed to more than one Trigger).
pub(crate) fn is_later_copy(m: &jetstream::Message) -> bool {
    m.headers.as_ref().is_some_and(|h| h.get(COPY).is_some())
}

/// When the event was first accepted: its header, else the stream's timestamp.
pub(crate) fn accepted_ms(m: &jetstream::Message) -> u64 {
    m.headers
        .as_ref()
        .and_then(|h| h.get(ACCEPTED))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or_else(|| {
            m.info()
                .map(|i| u64::try_from(i.published.timestamp_millis()).unwrap_or(0))
                .unwrap_or(0)
        })
}

fn stream_missing(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
