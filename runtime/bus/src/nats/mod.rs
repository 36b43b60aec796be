//! The NATS JetStream bus: a stream per bus, a work-queue stream per Trigger with durable pull
//! consumers, and one stream of dead-letter records. JetStream does the clustering, storage
//! and redelivery; Sluice maps its delivery semantics onto it (DESIGN §5):
//!
//! * publish: `Nats-Msg-Id` = SHA-256 of (source, id), so the stream's duplicate window is the
//!   dedupe window; the 202 waits for JetStream's publish ack.
//! * leases: a consumer's `AckWait` is the function timeout plus a margin; `max_ack_pending`
//!   is `maxInflight`; a retry is a NAK with the backoff delay; the attempt is the
//!   message's delivery count; dead letters are recorded, published, then acked.
//! * ordering: an ordered trigger's queue is split into partitions by a hash of the key, each
//!   with its own consumer holding one event in flight, so a key's events go one at a time
//!   in bus order, across retries too (a NAK'd event stays pending on its consumer).
//! * depth: the sum of `num_pending + num_ack_pending` over the queue's consumers, as the
//!   stream leader reports them.

pub mod routes;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
        stream::{self, RetentionPolicy, StorageType},
    },
};
use futures::{FutureExt, StreamExt, TryStreamExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;
use tokio::sync::Notify;

use super::{
    Bus, BusError, BusFuture, DeadLetter, Delivery, Depth, Enqueue, Publish, Published,
    QueueConfig, TriggerId, now_ms,
};

/// Partitions of an ordered trigger's queue: keys hash onto them; each goes one at a time.
pub const ORDER_PARTITIONS: u32 = 8;

/// Header carrying when an event was first accepted on its bus (ms since the epoch).
const ACCEPTED: &str = "Sluice-Accepted";
/// Header carrying the ordering key of a queued event.
const KEY: &str = "Sluice-Key";

/// A routed event, still in its stored JSON form, for a trigger queue.
pub struct RawEnqueue {
    pub trigger: TriggerId,
    pub key: Option<String>,
    pub accepted_ms: u64,
    pub payload: bytes::Bytes,
    /// `Nats-Msg-Id`: the same id enqueued twice (a (bus, position) routed again) is
    /// queued once.
    pub id: Option<String>,
}

/// The JetStream message behind a delivery, for acking it.
pub struct Receipt(jetstream::Message);

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
    pub retention_age: Duration,
    pub retention_bytes: i64,
    /// How long dead-letter records are kept for `sluice dlq`.
    pub dead_letter_age: Duration,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials: None,
            dedupe_window: Duration::from_secs(300),
            retention_age: Duration::from_secs(24 * 3600),
            retention_bytes: 1 << 30,
            dead_letter_age: Duration::from_secs(14 * 24 * 3600),
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

struct QueueState {
    /// Each consumer with its `max_ack_pending`: a pull asking for more than that is refused
    /// by the server (409), so requests never exceed it.
    consumers: Vec<(PullConsumer, usize)>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    cfg: NatsConfig,
    buses: Mutex<HashSet<String>>,
    queue_streams: Mutex<HashSet<TriggerId>>,
    queues: Mutex<HashMap<TriggerId, Arc<QueueState>>>,
    doorbells: Mutex<HashMap<TriggerId, tokio::task::JoinHandle<()>>>,
    queued_version: AtomicU64,
    queued: Notify,
    /// Earliest time (ms) a retry this process asked for falls due: NAK'd events come back
    /// without a doorbell, so idle workers wake for them on time.
    next_retry_ms: AtomicU64,
    dead_letters_ready: tokio::sync::OnceCell<()>,
}

/// A handle on the JetStream bus; cheap to clone.
#[derive(Clone)]
pub struct NatsBus(Arc<Inner>);

/// A dead letter as kept in the dead-letter stream.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadRecord {
    reason: String,
    attempts: u32,
    last_error: String,
    at_ms: u64,
    seq: u64,
    event: serde_json::Value,
}

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
            queue_streams: Mutex::default(),
            queues: Mutex::default(),
            doorbells: Mutex::default(),
            queued_version: AtomicU64::new(0),
            queued: Notify::new(),
            next_retry_ms: AtomicU64::new(u64::MAX),
            dead_letters_ready: tokio::sync::OnceCell::new(),
        })))
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.0.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.0.js
    }

    /// Creates the stream of `bus` unless this process already did.
    pub async fn ensure_bus(&self, bus: &str) -> Result<stream::Stream, BusError> {
        let cfg = stream::Config {
            name: names::bus_stream(bus),
            subjects: vec![names::bus_subject(bus)],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: self.0.cfg.retention_age,
            max_bytes: self.0.cfg.retention_bytes,
            duplicate_window: self.0.cfg.dedupe_window,
            allow_direct: true,
            ..Default::default()
        };
        let s = self
            .0
            .js
            .get_or_create_stream(cfg)
            .await
            .map_err(nats_err)?;
        lock(&self.0.buses).insert(bus.to_owned());
        Ok(s)
    }

    async fn ensure_bus_once(&self, bus: &str) -> Result<(), BusError> {
        if lock(&self.0.buses).contains(bus) {
            return Ok(());
        }
        self.ensure_bus(bus).await.map(|_| ())
    }

    /// Creates a trigger's work-queue stream unless this process already did.
    pub async fn ensure_queue_stream(&self, trigger: &str) -> Result<stream::Stream, BusError> {
        let (ns, name) = split_id(trigger)?;
        let cfg = stream::Config {
            name: names::queue_stream(ns, name),
            subjects: vec![format!("sluice.q.{ns}.{name}.*")],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            // Routers publish with a message id per (bus position, trigger): a router that
            // crashed before acking its input routes it again without a second copy.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let s = self
            .0
            .js
            .get_or_create_stream(cfg)
            .await
            .map_err(nats_err)?;
        lock(&self.0.queue_streams).insert(trigger.to_owned());
        Ok(s)
    }

    /// Forgets which queue streams this process created, so the next enqueue to each checks
    /// (and re-creates) it: one may have been deleted with its Trigger since.
    pub fn forget_queue_streams(&self) {
        lock(&self.0.queue_streams).clear();
    }

    async fn ensure_queue_stream_once(&self, trigger: &str) -> Result<(), BusError> {
        if lock(&self.0.queue_streams).contains(trigger) {
            return Ok(());
        }
        self.ensure_queue_stream(trigger).await.map(|_| ())
    }

    async fn dead_letter_stream(&self) -> Result<stream::Stream, BusError> {
        let js = &self.0.js;
        let age = self.0.cfg.dead_letter_age;
        self.0
            .dead_letters_ready
            .get_or_try_init(|| async {
                js.get_or_create_stream(stream::Config {
                    name: names::DEAD_LETTER_STREAM.into(),
                    subjects: vec!["sluice.dlq.>".into()],
                    storage: StorageType::File,
                    max_age: age,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(nats_err)
            })
            .await?;
        js.get_stream(names::DEAD_LETTER_STREAM)
            .await
            .map_err(nats_err)
    }

    /// Makes a trigger's consumers match `cfg` (called by the workers of its Function) and
    /// starts listening for new work on it.
    pub async fn configure_queue(&self, trigger: &str, cfg: &QueueConfig) -> Result<(), BusError> {
        let (ns, name) = split_id(trigger)?;
        let stream = self.ensure_queue_stream(trigger).await?;
        let wanted: Vec<(String, String, i64)> = if cfg.ordered {
            (0..ORDER_PARTITIONS)
                .map(|p| {
                    (
                        names::queue_consumer(Some(p)),
                        names::queue_subject(ns, name, p),
                        1,
                    )
                })
                .collect()
        } else {
            vec![(
                names::queue_consumer(None),
                format!("sluice.q.{ns}.{name}.*"),
                cfg.max_inflight.max(1) as i64,
            )]
        };
        // A work-queue stream refuses overlapping consumers: drop those of the other mode.
        let existing: Vec<String> = stream
            .consumer_names()
            .try_collect()
            .await
            .map_err(nats_err)?;
        for old in existing {
            if !wanted.iter().any(|(n, _, _)| *n == old) {
                stream.delete_consumer(&old).await.map_err(nats_err)?;
            }
        }
        let mut consumers = Vec::with_capacity(wanted.len());
        for (consumer, filter, max_ack_pending) in wanted {
            let config = pull::Config {
                durable_name: Some(consumer.clone()),
                filter_subject: filter,
                ack_policy: AckPolicy::Explicit,
                ack_wait: cfg.lease,
                max_ack_pending,
                max_deliver: -1,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            };
            let c = match stream.create_consumer(config.clone()).await {
                Ok(c) => c,
                // An older server cannot change some settings in place: recreate (queued
                // events stay in the stream; only in-flight leases are handed out again).
                Err(_) => {
                    let _ = stream.delete_consumer(&consumer).await;
                    stream.create_consumer(config).await.map_err(nats_err)?
                }
            };
            consumers.push((c, max_ack_pending as usize));
        }
        lock(&self.0.queues).insert(trigger.to_owned(), Arc::new(QueueState { consumers }));
        self.start_doorbell(trigger, ns, name).await
    }

    /// Forgets a trigger's queue in this process (its stream stays for a comeback).
    pub fn unconfigure_queue(&self, trigger: &str) {
        lock(&self.0.queues).remove(trigger);
        if let Some(h) = lock(&self.0.doorbells).remove(trigger) {
            h.abort();
        }
    }

    /// A plain subscription on the queue's subjects: every enqueue rings it, so idle workers
    /// wake at once instead of polling.
    async fn start_doorbell(&self, trigger: &str, ns: &str, name: &str) -> Result<(), BusError> {
        if lock(&self.0.doorbells).contains_key(trigger) {
            return Ok(());
        }
        let mut sub = self
            .0
            .client
            .subscribe(format!("sluice.q.{ns}.{name}.*"))
            .await
            .map_err(nats_err)?;
        let inner = Arc::downgrade(&self.0);
        let handle = tokio::spawn(async move {
            while sub.next().await.is_some() {
                let Some(inner) = inner.upgrade() else { return };
                inner.queued_version.fetch_add(1, Ordering::Release);
                inner.queued.notify_waiters();
            }
        });
        lock(&self.0.doorbells).insert(trigger.to_owned(), handle);
        Ok(())
    }

    /// Puts events on trigger queues; `ids` (one per item) deduplicate a repeated enqueue.
    pub async fn enqueue_with_ids(
        &self,
        items: Vec<Enqueue>,
        ids: Option<Vec<String>>,
    ) -> Result<(), BusError> {
        let mut ids = ids.map(Vec::into_iter);
        let raw = items
            .into_iter()
            .map(|item| RawEnqueue {
                payload: item.event.to_json().into(),
                trigger: item.trigger,
                key: item.key,
                accepted_ms: item.accepted_ms,
                id: ids.as_mut().and_then(Iterator::next),
            })
            .collect();
        for ack in self.enqueue_raw(raw).await? {
            ack.await.map_err(nats_err)?;
        }
        Ok(())
    }

    /// Sends already-encoded events to trigger queues; returns the publish acks to await.
    pub async fn enqueue_raw(
        &self,
        items: Vec<RawEnqueue>,
    ) -> Result<Vec<jetstream::context::PublishAckFuture>, BusError> {
        let mut acks = Vec::with_capacity(items.len());
        for item in items {
            self.ensure_queue_stream_once(&item.trigger).await?;
            let (ns, name) = split_id(&item.trigger)?;
            let partition = item.key.as_deref().map_or(0, partition_of);
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPTED, item.accepted_ms.to_string().as_str());
            if let Some(k) = &item.key {
                headers.insert(KEY, header_safe(k).as_str());
            }
            if let Some(id) = &item.id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            acks.push(
                self.0
                    .js
                    .publish_with_headers(
                        names::queue_subject(ns, name, partition),
                        headers,
                        item.payload,
                    )
                    .await
                    .map_err(nats_err)?,
            );
        }
        Ok(acks)
    }

    async fn publish_all(&self, items: Vec<Publish>) -> Result<Vec<Published>, BusError> {
        let mut acks = Vec::with_capacity(items.len());
        for item in &items {
            self.ensure_bus_once(&item.bus).await?;
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPTED, now_ms().to_string().as_str());
            if item.dedupe {
                headers.insert("Nats-Msg-Id", dedupe_id(&item.event).as_str());
            }
            let ack = self
                .0
                .js
                .publish_with_headers(
                    names::bus_subject(&item.bus),
                    headers,
                    item.event.to_json().into(),
                )
                .await
                .map_err(nats_err)?;
            acks.push(ack);
        }
        let mut out = Vec::with_capacity(acks.len());
        for ack in acks {
            let a = ack.await.map_err(nats_err)?;
            out.push(if a.duplicate {
                Published::Duplicate
            } else {
                Published::Appended(a.sequence)
            });
        }
        Ok(out)
    }

    async fn lease_now(&self, trigger: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        let Some(q) = lock(&self.0.queues).get(trigger).cloned() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (c, cap) in &q.consumers {
            let want = max.saturating_sub(out.len()).min(*cap);
            if want == 0 {
                break;
            }
            for m in pull(c, want).await? {
                if let Some(d) = self.to_delivery(trigger, m).await {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    async fn to_delivery(&self, trigger: &str, m: jetstream::Message) -> Option<Delivery> {
        let (seq, attempt, published) = match m.info() {
            Ok(i) => (
                i.stream_sequence,
                u32::try_from(i.delivered).unwrap_or(u32::MAX),
                u64::try_from(i.published.timestamp_millis()).unwrap_or(0),
            ),
            Err(e) => {
                tracing::warn!(trigger, error = %e, "message without JetStream metadata; skipped");
                return None;
            }
        };
        let event = match CloudEvent::from_json(&m.payload) {
            Ok(e) => e,
            Err(e) => {
                // Only Sluice writes queue subjects; an unreadable entry can never succeed.
                tracing::error!(trigger, seq, error = %e, "unreadable queue entry dropped");
                let _ = m.ack_with(AckKind::Term).await;
                return None;
            }
        };
        let accepted_ms = m
            .headers
            .as_ref()
            .and_then(|h| h.get(ACCEPTED))
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(published);
        Some(Delivery {
            trigger: trigger.to_owned(),
            seq,
            attempt,
            accepted_ms,
            event: Arc::new(event),
            receipt: Some(Arc::new(Receipt(m))),
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        filter: Option<String>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, jetstream::Message)>, BusError> {
        let s = match self.0.js.get_stream(stream).await {
            Ok(s) => s,
            Err(e) if stream_missing(&e) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(nats_err(e)),
        };
        let c = s
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ack_policy: AckPolicy::None,
                filter_subject: filter.unwrap_or_default(),
                inactive_threshold: Duration::from_secs(5),
                ..Default::default()
            })
            .await
            .map_err(nats_err)?;
        let mut out = Vec::new();
        while out.len() < limit {
            let before = out.len();
            for m in pull(&c, (limit - out.len()).min(1000)).await? {
                if let Ok(i) = m.info() {
                    out.push((i.stream_sequence, m));
                }
            }
            if out.len() == before {
                break;
            }
        }
        let name = c.cached_info().name.clone();
        let _ = s.delete_consumer(&name).await;
        Ok(out)
    }

    async fn read_dead(&self, trigger: &str) -> Result<Vec<(u64, DeadLetter)>, BusError> {
        let (ns, name) = split_id(trigger)?;
        self.dead_letter_stream().await?;
        let msgs = self
            .read_stream(
                names::DEAD_LETTER_STREAM,
                Some(names::dead_letter_subject(ns, name)),
                0,
                usize::MAX,
            )
            .await?;
        let mut out = Vec::with_capacity(msgs.len());
        for (pos, m) in msgs {
            let rec: DeadRecord = match serde_json::from_slice(&m.payload) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(trigger, pos, error = %e, "unreadable dead-letter record");
                    continue;
                }
            };
            let Ok(event) = CloudEvent::from_json_value(rec.event) else {
                continue;
            };
            out.push((
                pos,
                DeadLetter {
                    trigger: trigger.to_owned(),
                    seq: rec.seq,
                    reason: rec.reason,
                    attempts: rec.attempts,
                    last_error: rec.last_error,
                    at_ms: rec.at_ms,
                    event,
                },
            ));
        }
        Ok(out)
    }

    async fn depth_of(&self, trigger: &str) -> Result<Depth, BusError> {
        let (ns, name) = split_id(trigger)?;
        let stream = match self.0.js.get_stream(names::queue_stream(ns, name)).await {
            Ok(s) => s,
            Err(e) if stream_missing(&e) => {
                return Ok(Depth::default());
            }
            Err(e) => return Err(nats_err(e)),
        };
        let infos: Vec<_> = stream.consumers().try_collect().await.map_err(nats_err)?;
        Ok(infos.iter().fold(Depth::default(), |d, i| Depth {
            queued: d.queued + i.num_pending,
            inflight: d.inflight + i.num_ack_pending as u64,
        }))
    }

    async fn dead_letter_now(
        &self,
        dead: DeadLetter,
        to_bus: Option<&str>,
        from: Option<&Delivery>,
    ) -> Result<(), BusError> {
        let (ns, name) = split_id(&dead.trigger)?;
        self.dead_letter_stream().await?;
        let rec = DeadRecord {
            reason: dead.reason.clone(),
            attempts: dead.attempts,
            last_error: dead.last_error.clone(),
            at_ms: dead.at_ms,
            seq: dead.seq,
            event: dead.event.to_json_value(),
        };
        let body = serde_json::to_vec(&rec).map_err(nats_err)?;
        self.0
            .js
            .publish(names::dead_letter_subject(ns, name), body.into())
            .await
            .map_err(nats_err)?
            .await
            .map_err(nats_err)?;
        if let Some(bus) = to_bus {
            self.publish_all(vec![Publish {
                bus: bus.to_owned(),
                event: dead.to_event(),
                dedupe: false,
            }])
            .await?;
        }
        if let Some(r) = from.and_then(|d| d.receipt.as_ref()) {
            r.0.ack().await.map_err(nats_err)?;
        }
        Ok(())
    }

    async fn redrive_now(&self, trigger: &str) -> Result<usize, BusError> {
        let (ns, name) = split_id(trigger)?;
        let dead = self.read_dead(trigger).await?;
        let Some(last) = dead.last().map(|(pos, _)| *pos) else {
            return Ok(0);
        };
        let n = dead.len();
        let now = now_ms();
        let items = dead
            .into_iter()
            .map(|(_, d)| Enqueue {
                trigger: trigger.to_owned(),
                event: Arc::new(d.event),
                accepted_ms: now,
                key: None,
            })
            .collect();
        self.enqueue_with_ids(items, None).await?;
        // Only what was put back is removed; dead letters that arrived meanwhile stay.
        self.dead_letter_stream()
            .await?
            .purge()
            .filter(names::dead_letter_subject(ns, name))
            .sequence(last + 1)
            .await
            .map_err(nats_err)?;
        Ok(n)
    }

    async fn purge_now(&self, trigger: &str) -> Result<usize, BusError> {
        let (ns, name) = split_id(trigger)?;
        let r = self
            .dead_letter_stream()
            .await?
            .purge()
            .filter(names::dead_letter_subject(ns, name))
            .await
            .map_err(nats_err)?;
        Ok(r.purged as usize)
    }
}

impl Bus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
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
                .filter_map(|(pos, m)| {
                    let at = m
                        .info()
                        .map(|i| u64::try_from(i.published.timestamp_millis()).unwrap_or(0))
                        .unwrap_or(0);
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

    /// Schedules and bridges: the event's (source, id) is the message id, so routers firing
    /// the same schedule enqueue it once.
    fn enqueue(&self, items: Vec<Enqueue>) -> BusFuture<'_, ()> {
        let ids = items
            .iter()
            .map(|i| format!("ev:{}", dedupe_id(&i.event)))
            .collect();
        self.enqueue_with_ids(items, Some(ids)).boxed()
    }

    fn lease<'a>(&'a self, trigger: &'a str, max: usize) -> BusFuture<'a, Vec<Delivery>> {
        self.lease_now(trigger, max).boxed()
    }

    fn queued_version(&self) -> u64 {
        self.0.queued_version.load(Ordering::Acquire)
    }

    fn wait_queued<'a>(
        &'a self,
        _triggers: &'a [TriggerId],
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
            // Retries come due on the server without a doorbell: wake when the earliest one
            // this process scheduled is due, and look again now and then for the rest
            // (leases of crashed peers expiring).
            let now = now_ms();
            let retry = self.0.next_retry_ms.load(Ordering::Acquire);
            let until_retry = if retry <= now {
                self.0.next_retry_ms.store(u64::MAX, Ordering::Release);
                Duration::ZERO
            } else {
                Duration::from_millis(retry - now)
            };
            let wait = max.min(Duration::from_millis(200)).min(until_retry);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        .boxed()
    }

    fn ack<'a>(&'a self, d: &'a Delivery, replies: Vec<Publish>) -> BusFuture<'a, ()> {
        async move {
            if !replies.is_empty() {
                self.publish_all(replies).await?;
            }
            match &d.receipt {
                Some(r) => r.0.ack().await.map_err(nats_err),
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn retry<'a>(&'a self, d: &'a Delivery, at_ms: u64, _error: &'a str) -> BusFuture<'a, ()> {
        async move {
            let delay = Duration::from_millis(at_ms.saturating_sub(now_ms()));
            self.0.next_retry_ms.fetch_min(at_ms + 1, Ordering::AcqRel);
            match &d.receipt {
                Some(r) => {
                    r.0.ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(nats_err)
                }
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

    fn dead_letters<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, Vec<DeadLetter>> {
        async move {
            Ok(self
                .read_dead(trigger)
                .await?
                .into_iter()
                .map(|(_, d)| d)
                .collect())
        }
        .boxed()
    }

    fn redrive<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize> {
        self.redrive_now(trigger).boxed()
    }

    fn purge<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize> {
        self.purge_now(trigger).boxed()
    }
}

/// Takes up to `n` messages available now from a pull consumer. Bounded in time: a request
/// the server never answers (it restarted meanwhile) must not stall the caller; anything
/// pulled but not acked is delivered again after the consumer's AckWait.
pub async fn pull(c: &PullConsumer, n: usize) -> Result<Vec<jetstream::Message>, BusError> {
    let fetch = async {
        let mut msgs = c
            .fetch()
            .max_messages(n)
            .messages()
            .await
            .map_err(nats_err)?;
        let mut out = Vec::with_capacity(n.min(1024));
        while let Some(m) = msgs.next().await {
            match m {
                Ok(m) => out.push(m),
                // The end of a no-wait pull comes as a status (404/408/409): done.
                Err(e) => {
                    tracing::trace!(error = %e, "pull ended");
                    break;
                }
            }
        }
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| nats_err("pull request unanswered for 5s"))?
}

/// Waits up to `wait` for the first message of a pull consumer and returns it alone.
pub async fn pull_wait(
    c: &PullConsumer,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, BusError> {
    let fetch = async {
        let mut msgs = c
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(nats_err)?;
        let mut out = Vec::new();
        if let Some(Ok(m)) = msgs.next().await {
            out.push(m);
        }
        Ok(out)
    };
    tokio::time::timeout(wait + Duration::from_secs(5), fetch)
        .await
        .map_err(|_| nats_err("pull request unanswered"))?
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

/// The partition of an ordering key (FNV-1a: stable across processes and versions).
pub fn partition_of(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % ORDER_PARTITIONS
}

/// The `Nats-Msg-Id` of a producer's event: its (source, id) pair.
pub fn dedupe_id(e: &CloudEvent) -> String {
    let mut h = sha2::Sha256::new();
    h.update(e.source.as_bytes());
    h.update([0]);
    h.update(e.id.as_bytes());
    hex::encode(h.finalize())
}

/// Header values cannot carry line breaks; keys only need to stay distinct enough to hash.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("order-1"), partition_of("order-1"));
        let used: HashSet<u32> = (0..100).map(|i| partition_of(&format!("k{i}"))).collect();
        assert_eq!(used.len(), ORDER_PARTITIONS as usize);
    }

    #[test]
    fn dedupe_ids_separate_source_from_id() {
        let a = CloudEvent::new("b", "a", "t");
        let b = CloudEvent::new("", "ab", "t");
        assert_ne!(dedupe_id(&a), dedupe_id(&b));
        assert_eq!(dedupe_id(&a), dedupe_id(&a.clone()));
    }
}
