//! Trigger queues are work-queue streams so that JetStream, not this process, keeps leases and
//! redelivery; an ordered trigger gets a consumer per partition so a key goes one at a time.

use std::{
    sync::{Arc, atomic::Ordering},
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
use futures::{StreamExt, TryStreamExt};
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;

use super::{ACCEPTED, KEY, NatsBus, ORDER_PARTITIONS, Receipt, lock, nats_err, split_id};
use crate::{BusError, Delivery, Enqueue, QueueConfig, TriggerId};

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

pub(super) struct QueueState {
    /// Each consumer with its `max_ack_pending`: a pull asking for more than that is refused
    /// by the server (409), so requests never exceed it.
    consumers: Vec<(PullConsumer, usize)>,
}

impl NatsBus {
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

    pub(super) async fn lease_now(
        &self,
        trigger: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
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

/// The partition of an ordering key (FNV-1a: stable across processes and versions).
pub fn partition_of(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % ORDER_PARTITIONS
}

/// Header values cannot carry line breaks; keys only need to stay distinct enough to hash.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("order-1"), partition_of("order-1"));
        let used: HashSet<u32> = (0..100).map(|i| partition_of(&format!("k{i}"))).collect();
        assert_eq!(used.len(), ORDER_PARTITIONS as usize);
    }
}
