//! A Trigger's queue is its durable consumer(s) of its bus's stream, filtered to the copies
//! publishers routed to it, so JetStream, not this process, keeps leases and redelivery; an
//! ordered Trigger gets a consumer per partition so a key goes one at a time.
//!
//! Each consumer is read by a *feed*: one pull request open at a time, which the server fills
//! as messages are stored, into a small buffer workers lease from without a round trip.
//! (A pull per lease cost a fixed ~150 µs round trip and made workers wait for half their
//! slots to be free; see docs/benchmarks.md#nats-data-path.)

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::{StreamExt, TryStreamExt};
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    ACCEPTED, Inner, NatsBus, ORDER_PARTITIONS, Receipt, gate::GateKeys, lock, nats_err, split_id,
};
use crate::{BusError, Delivery, Enqueue, QueueConfig, Route, now_ms};

/// A message a feed brought in, and since when this process holds it.
type Fed = (jetstream::Message, Instant);

pub(super) struct QueueState {
    /// The Trigger's home bus, whose stream holds its queue.
    pub(super) bus: String,
    /// The consumers' `AckWait`: how long a message may wait in a feed before it needs its
    /// lease extended.
    lease: Duration,
    feeds: Vec<Feed>,
    /// A gated Trigger's keys in the gates bucket.
    pub(super) gate: Option<GateKeys>,
    hold: Arc<Hold>,
}

/// What a gated Trigger's gate holds back. The messages stay delivered to this process, their
/// leases extended while they wait, rather than being left to expire and come again, which
/// JetStream would count as another delivery (and Sluice as another attempt).
#[derive(Default)]
pub(super) struct Hold {
    /// The feeds pull nothing before this time (wall ms): the gate lets nothing go before it.
    pub(super) until_ms: AtomicU64,
    held: Mutex<VecDeque<Fed>>,
}

/// One consumer's feed: the task keeping its pull request open, and the buffer it fills.
struct Feed {
    rx: Mutex<mpsc::Receiver<Fed>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl QueueState {
    /// Stops the feeds and hands back what they hold unleased (NAK: at once to any other
    /// worker, not after `AckWait`).
    async fn release(&self) {
        let mut held = Vec::new();
        for f in &self.feeds {
            // Gone before the NAKs: dropping the feed's open pull request unsubscribes its
            // inbox, and the server skips a request nobody listens to, so what is handed back
            // cannot land in it (and sit unseen until `AckWait`).
            let task = lock(&f.task).take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
            let mut rx = lock(&f.rx);
            rx.close();
            while let Ok((m, _)) = rx.try_recv() {
                held.push(m);
            }
        }
        held.extend(lock(&self.hold.held).drain(..).map(|(m, _)| m));
        for m in held {
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
    }
}

impl Drop for QueueState {
    fn drop(&mut self) {
        for f in &self.feeds {
            if let Some(task) = lock(&f.task).take() {
                task.abort();
            }
        }
    }
}

/// Keeps one pull request for `batch` messages open on `consumer` at a time and moves what
/// arrives into `tx`, waking workers when the buffer goes from empty to not. The server
/// delivers a message the moment it is stored while a request waits, so an idle Trigger adds
/// no latency; under load each request is filled at once and the next one is sent, with the
/// buffer covering its round trip. The buffer's bound (`batch`) and the open request's bound
/// the messages this process holds unleased; the consumer's `max_ack_pending` bounds them
/// across processes.
///
/// Why one request at a time, each with its own inbox, rather than `async-nats`'s continuous
/// `messages()`: that sends overlapping requests on one inbox and counts what it is owed
/// across them, and in `sluice bench nats` it stopped receiving now and then (nothing
/// delivered, no heartbeat) until its missed-heartbeat check reopened it 10 s later.
///
/// A gated Trigger's feed (`hold`) pulls nothing while its gate lets nothing go, and no more
/// than the room its held messages leave, so what it holds back stays bounded.
async fn feed(
    consumer: PullConsumer,
    batch: usize,
    tx: mpsc::Sender<Fed>,
    inner: Weak<Inner>,
    hold: Option<Arc<Hold>>,
) {
    loop {
        let mut want = batch;
        if let Some(h) = &hold {
            let until = h.until_ms.load(Ordering::Acquire);
            let now = now_ms();
            let room = batch.saturating_sub(lock(&h.held).len());
            if until > now || room == 0 {
                let wait = Duration::from_millis(until.saturating_sub(now).clamp(20, 1_000));
                tokio::time::sleep(wait).await;
                if tx.is_closed() {
                    return;
                }
                continue;
            }
            want = room;
        }
        // A short expiry bounds how long a request lost with a restarted server goes unnoticed
        // (the client gives up 5 s after it); an idle Trigger sends one request per expiry.
        let request = consumer
            .batch()
            .max_messages(want)
            .expires(Duration::from_secs(5))
            .messages()
            .await;
        let mut failed = false;
        match request {
            Ok(mut msgs) => {
                while let Some(m) = msgs.next().await {
                    match m {
                        Ok(m) => {
                            if tx.send((m, Instant::now())).await.is_err() {
                                return;
                            }
                            // Wake workers when this message is the only one held: the buffer
                            // was empty when it landed (judged after the send, which may have
                            // waited for room that workers then emptied).
                            if tx.max_capacity() - tx.capacity() == 1 {
                                let Some(inner) = inner.upgrade() else { return };
                                inner.queued_version.fetch_add(1, Ordering::Release);
                                inner.queued.notify_waiters();
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "pull request failed; pulling again");
                            failed = true;
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "pull request not sent; trying again");
                failed = true;
            }
        }
        if tx.is_closed() {
            return;
        }
        if failed {
            // The server is away or refusing: do not spin.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Until when this process counts a lease that began at `from` (when the message arrived, or
/// was last extended) as its own: the AckWait less a second, as the server's clock started a
/// little earlier (the message's trip here). The lease is the function timeout plus 5 s, so
/// a handler that runs to its timeout still acks in time.
fn held_until(from: Instant, lease: Duration) -> Instant {
    from + lease.saturating_sub(Duration::from_secs(1))
}

/// A message that waited in a feed for a quarter of its lease or more: extend the lease
/// before handing it to a worker, so a handler that takes its whole timeout still acks in
/// time.
fn stale(waited: Duration, lease: Duration) -> bool {
    waited >= lease / 4
}

impl NatsBus {
    /// Makes a trigger's consumers match `cfg` (called by the workers of its Function) and
    /// starts listening for new work on it.
    pub async fn configure_queue(&self, trigger: &str, cfg: &QueueConfig) -> Result<(), BusError> {
        let (ns, name) = split_id(trigger)?;
        let stream = self.ensure_bus(&cfg.bus).await?;
        let wanted: Vec<(String, String, i64)> = if cfg.ordered {
            (0..ORDER_PARTITIONS)
                .map(|p| {
                    (
                        names::trigger_consumer(ns, name, Some(p)),
                        names::trigger_subject(&cfg.bus, ns, name, p),
                        1,
                    )
                })
                .collect()
        } else {
            vec![(
                names::trigger_consumer(ns, name, None),
                names::trigger_subjects(&cfg.bus, ns, name),
                cfg.max_inflight.max(1) as i64,
            )]
        };
        // Consumers of the other mode (ordering was switched on or off) would deliver every
        // copy a second time: drop them, and start the new ones where they had got to.
        let existing: Vec<String> = stream
            .consumer_names()
            .try_collect()
            .await
            .map_err(nats_err)?;
        let mut resume_after: Option<u64> = None;
        for old in existing {
            if names::is_trigger_consumer(&old, ns, name)
                && !wanted.iter().any(|(n, _, _)| *n == old)
            {
                let floor = ack_floor(&stream, &old).await?;
                resume_after = Some(resume_after.map_or(floor, |r| r.min(floor)));
                stream.delete_consumer(&old).await.map_err(nats_err)?;
            }
        }
        let mut feeds = Vec::with_capacity(wanted.len());
        let hold = Arc::new(Hold::default());
        let gated = !cfg.gate.is_unset();
        for (consumer, filter, max_ack_pending) in wanted {
            let config = |after: Option<u64>| pull::Config {
                durable_name: Some(consumer.clone()),
                filter_subject: filter.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: cfg.lease,
                max_ack_pending,
                max_deliver: -1,
                deliver_policy: match after {
                    // Everything routed to the Trigger so far: publishers may have routed to
                    // it before any worker ran (the copies wait in the stream).
                    None => DeliverPolicy::All,
                    Some(a) => DeliverPolicy::ByStartSequence {
                        start_sequence: a + 1,
                    },
                },
                ..Default::default()
            };
            let c = match stream.get_consumer::<pull::Config>(&consumer).await {
                Ok(mut c) => {
                    let info = c.info().await.map_err(nats_err)?;
                    if info.config.ack_wait == cfg.lease
                        && info.config.max_ack_pending == max_ack_pending
                        && info.config.filter_subject == filter
                    {
                        c
                    } else {
                        let floor = info.ack_floor.stream_sequence;
                        match stream.create_consumer(config(None)).await {
                            Ok(c) => c,
                            // An older server cannot change some settings in place: recreate
                            // from where it had got to (only in-flight leases come again).
                            Err(_) => {
                                let _ = stream.delete_consumer(&consumer).await;
                                stream
                                    .create_consumer(config(Some(floor)))
                                    .await
                                    .map_err(nats_err)?
                            }
                        }
                    }
                }
                Err(_) => stream
                    .create_consumer(config(resume_after))
                    .await
                    .map_err(nats_err)?,
            };
            // A pull asking for more than `max_ack_pending` is refused by the server (409).
            let batch = cfg.prefetch.clamp(1, max_ack_pending as usize);
            let (tx, rx) = mpsc::channel(batch);
            let task = tokio::spawn(feed(
                c,
                batch,
                tx,
                Arc::downgrade(&self.0),
                gated.then(|| hold.clone()),
            ));
            feeds.push(Feed {
                rx: Mutex::new(rx),
                task: Mutex::new(Some(task)),
            });
        }
        let old = lock(&self.0.queues).insert(
            trigger.to_owned(),
            Arc::new(QueueState {
                bus: cfg.bus.clone(),
                lease: cfg.lease,
                feeds,
                gate: gated.then(|| GateKeys::new(ns, name, cfg.gate)),
                hold,
            }),
        );
        if let Some(old) = old {
            old.release().await;
        }
        Ok(())
    }

    /// Forgets a trigger's queue in this process and hands back what its feeds held
    /// unleased (its consumers stay for a comeback).
    pub async fn unconfigure_queue(&self, trigger: &str) {
        let old = lock(&self.0.queues).remove(trigger);
        if let Some(old) = old {
            old.release().await;
        }
    }

    /// The home bus of a trigger: as its workers configured it here, else as the route table
    /// says.
    pub(super) fn home_of(&self, trigger: &str) -> Result<String, BusError> {
        if let Some(q) = lock(&self.0.queues).get(trigger) {
            return Ok(q.bus.clone());
        }
        self.routes().home(trigger).ok_or_else(|| {
            BusError::Storage(format!(
                "trigger {trigger:?} is in no route table this process loaded"
            ))
        })
    }

    /// Puts events straight on trigger queues (schedules, bridges, redrive): stored under
    /// each trigger's subject of its home bus. With `dedupe`, the message id is the event's
    /// (source, id) and the trigger, so the same event enqueued twice is stored once.
    pub async fn enqueue_all(&self, items: Vec<Enqueue>, dedupe: bool) -> Result<(), BusError> {
        let mut acks = Vec::with_capacity(items.len());
        for item in items {
            self.ensure_bus_once(&item.bus).await?;
            let mut base_id = dedupe.then(|| super::dedupe_id(&item.event));
            if let (Some(id), Some(replay)) = (&mut base_id, &item.replay) {
                // Deduplicated within its replay (a replay resumed under the same name stores
                // nothing twice), never against the original delivery.
                id.push_str(":replay:");
                id.push_str(replay);
            }
            let route = Route {
                trigger: item.trigger,
                key: item.key,
            };
            let mut headers = super::publish::copy_headers(
                Some(&item.accepted_ms.to_string()),
                &route,
                0,
                base_id.as_deref(),
            );
            if item.replay.is_some() {
                // A re-delivery, not a new event on the bus: readers of the archive skip it.
                headers.insert(super::COPY, "replay");
            }
            let subject = super::publish::trigger_subject(&item.bus, &route)?;
            acks.push(
                self.send(subject, headers, item.event.to_json().into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await.map_err(nats_err)?;
        }
        Ok(())
    }

    /// Takes up to `max` messages the trigger's feeds hold now; never waits for the server.
    pub(super) async fn lease_now(
        &self,
        trigger: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let Some(q) = lock(&self.0.queues).get(trigger).cloned() else {
            return Ok(Vec::new());
        };
        let max = match &q.gate {
            Some(keys) => self.gated(&q, keys, trigger, max).await,
            None => max,
        };
        let mut taken: Vec<Fed> = {
            let mut held = lock(&q.hold.held);
            let n = max.min(held.len());
            held.drain(..n).collect()
        };
        for f in &q.feeds {
            let mut rx = lock(&f.rx);
            while taken.len() < max {
                match rx.try_recv() {
                    Ok(m) => taken.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut out = Vec::with_capacity(taken.len());
        for (m, since) in taken {
            let mut from = since;
            if stale(since.elapsed(), q.lease) {
                let _ = m.ack_with(AckKind::Progress).await;
                from = Instant::now();
            }
            if let Some(d) = self
                .to_delivery(trigger, m, held_until(from, q.lease))
                .await
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// How many of `max` events a gated Trigger may take now. What its feeds brought in moves
    /// to the hold first, where the leases of those that waited long are extended: a gated
    /// Trigger's events may wait for the gate longer than a lease, and one left to expire would
    /// come again as another delivery. When the gate lets none go, the feeds pause until it may.
    async fn gated(&self, q: &QueueState, keys: &GateKeys, trigger: &str, max: usize) -> usize {
        let (here, stale_ones) = {
            let mut held = lock(&q.hold.held);
            for f in &q.feeds {
                let mut rx = lock(&f.rx);
                while let Ok(m) = rx.try_recv() {
                    held.push_back(m);
                }
            }
            let stale_ones: Vec<jetstream::Message> = held
                .iter_mut()
                .filter(|(_, since)| stale(since.elapsed(), q.lease))
                .map(|(m, since)| {
                    *since = Instant::now();
                    m.clone()
                })
                .collect();
            (held.len(), stale_ones)
        };
        for m in stale_ones {
            let _ = m.ack_with(AckKind::Progress).await;
        }
        if here == 0 || max == 0 {
            return 0;
        }
        let opening = match self.admit(keys, q.lease, max.min(here)).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(trigger, error = %e, "gate unreadable; holding events back");
                super::gate::Opening {
                    n: 0,
                    retry_at_ms: now_ms() + 1_000,
                }
            }
        };
        let until = if opening.n > 0 {
            0
        } else {
            opening.retry_at_ms
        };
        q.hold.until_ms.store(until, Ordering::Release);
        opening.n
    }

    /// The earliest time (wall ms) the gate of one of `triggers` holding events back may
    /// let them go.
    pub(super) fn gate_reopens(&self, triggers: &[String]) -> Option<u64> {
        let now = now_ms();
        let queues = lock(&self.0.queues);
        triggers
            .iter()
            .filter_map(|t| queues.get(t))
            .map(|q| q.hold.until_ms.load(Ordering::Acquire))
            .filter(|&u| u > now)
            .min()
    }

    async fn to_delivery(
        &self,
        trigger: &str,
        m: jetstream::Message,
        held_until: Instant,
    ) -> Option<Delivery> {
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
            receipt: Some(Arc::new(Receipt { msg: m, held_until })),
        })
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

/// The partition of an ordering key (FNV-1a: stable across processes and versions).
pub fn partition_of(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % ORDER_PARTITIONS
}

/// Where consumer `name` has acked up to (stream sequence).
async fn ack_floor(stream: &jetstream::stream::Stream, name: &str) -> Result<u64, BusError> {
    let mut c = stream
        .get_consumer::<pull::Config>(name)
        .await
        .map_err(nats_err)?;
    Ok(c.info().await.map_err(nats_err)?.ack_floor.stream_sequence)
}

/// Header values cannot carry line breaks; keys only need to stay distinct enough to hash.
pub(super) fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_message_that_waited_a_quarter_of_its_lease_gets_it_extended() {
        let lease = Duration::from_secs(40);
        assert!(!stale(Duration::from_secs(9), lease));
        assert!(stale(Duration::from_secs(10), lease));
        assert!(stale(Duration::from_secs(60), lease));
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("order-1"), partition_of("order-1"));
        let used: HashSet<u32> = (0..100).map(|i| partition_of(&format!("k{i}"))).collect();
        assert_eq!(used.len(), ORDER_PARTITIONS as usize);
    }
}
