//! The bus streams: routing at publish (one stored copy per matched Trigger, under that
//! Trigger's subject, or one unrouted copy), the message ids that make the stream's duplicate
//! window the dedupe window, and reading a stream back from a position.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
        stream::{self, RetentionPolicy, StorageType},
    },
};
use sha2::Digest;
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;

use super::{ACCEPTED, COPY, KEY, NatsBus, lock, nats_err, pull, split_id, stream_missing};
use crate::trace::{Step, StepKind};
use crate::{BusError, Publish, Published, Route, now_ms};

impl NatsBus {
    /// Creates the stream of `bus` unless this process already did. A stream made by an older
    /// Sluice (one subject, routed by a router process) gets the routed subjects added, and,
    /// when this process enforces retention, one whose age or size limit differs gets the
    /// configured ones.
    pub async fn ensure_bus(&self, bus: &str) -> Result<stream::Stream, BusError> {
        let keep = self.0.cfg.retention.of(bus);
        let max_bytes = i64::try_from(keep.max_bytes).unwrap_or(i64::MAX);
        let cfg = stream::Config {
            name: names::bus_stream(bus),
            subjects: vec![names::bus_subjects(bus)],
            // Limits, not work-queue: acked events stay until retention drops them, so the
            // stream is also the bus's archive; every Trigger's consumer keeps its own place.
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: keep.max_age,
            max_bytes,
            duplicate_window: self.0.cfg.dedupe_window,
            allow_direct: true,
            ..Default::default()
        };
        let mut s = self
            .0
            .js
            .get_or_create_stream(cfg.clone())
            .await
            .map_err(nats_err)?;
        let have = &s.cached_info().config;
        let limits_differ = have.max_age != cfg.max_age || have.max_bytes != cfg.max_bytes;
        if !have.subjects.contains(&cfg.subjects[0])
            || (limits_differ && self.0.cfg.enforce_retention)
        {
            let mut upgraded = have.clone();
            upgraded.subjects = cfg.subjects.clone();
            if self.0.cfg.enforce_retention {
                upgraded.max_age = cfg.max_age;
                upgraded.max_bytes = cfg.max_bytes;
            }
            self.0
                .js
                .update_stream(upgraded)
                .await
                .map_err(|e| nats_err(format!("stream {}: updating it: {e}", cfg.name)))?;
            s = self.0.js.get_stream(&cfg.name).await.map_err(nats_err)?;
        }
        lock(&self.0.buses).insert(bus.to_owned());
        Ok(s)
    }

    pub(super) async fn ensure_bus_once(&self, bus: &str) -> Result<(), BusError> {
        if lock(&self.0.buses).contains(bus) {
            return Ok(());
        }
        self.ensure_bus(bus).await.map(|_| ())
    }

    /// Routes each event with this process's table and stores it once per matched Trigger
    /// (or once unrouted), then waits for every copy's publish ack. When some event could not
    /// be stored, the error says which were ([`BusError::Partial`]): a producer retrying the
    /// whole batch has the stored ones deduplicated.
    pub(super) async fn publish_all(
        &self,
        items: Vec<Publish>,
    ) -> Result<Vec<Published>, BusError> {
        let routes = self.routes();
        let mut pending = Vec::with_capacity(items.len());
        let mut failed: Option<BusError> = None;
        let mut steps = Vec::with_capacity(items.len());
        for item in &items {
            match self.send_copies(routes.as_ref(), item, &mut steps).await {
                Ok(acks) => pending.push(acks),
                Err(e) => {
                    // Nothing after a failed event is sent: the answer stays a prefix.
                    failed = Some(e);
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for acks in pending {
            // Duplicate only when every copy was: a producer's retry after the route table
            // gained a Trigger stores the new Trigger's copy and drops the others.
            let mut first = None;
            let mut stored = true;
            for ack in acks {
                match ack.await {
                    Ok(a) if !a.duplicate && first.is_none() => first = Some(a.sequence),
                    Ok(_) => {}
                    Err(e) => {
                        stored = false;
                        failed.get_or_insert(nats_err(e));
                    }
                }
            }
            out.push(stored.then(|| first.map_or(Published::Duplicate, Published::Appended)));
        }
        self.trace_now(steps);
        match failed {
            None => Ok(out.into_iter().flatten().collect()),
            Some(e) => {
                out.resize(items.len(), None);
                Err(BusError::Partial {
                    stored: out,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Sends one event's copies (one per matched Trigger, or one unrouted); returns their
    /// pending publish acks, and adds the routing to `steps` once they are sent.
    async fn send_copies(
        &self,
        routes: &dyn crate::Routes,
        item: &Publish,
        steps: &mut Vec<Step>,
    ) -> Result<Vec<jetstream::context::PublishAckFuture>, BusError> {
        self.ensure_bus_once(&item.bus).await?;
        let json = item.event.to_json();
        let hits = routes
            .route(&item.bus, &json)
            .map_err(|e| BusError::Storage(format!("routing event {:?}: {e}", item.event.id)))?;
        let base_id = item.dedupe.then(|| dedupe_id(&item.event));
        let payload = bytes::Bytes::from(json);
        let mut acks = Vec::with_capacity(hits.len().max(1));
        if hits.is_empty() {
            let mut headers = HeaderMap::new();
            if let Some(id) = &base_id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            acks.push(
                self.send(names::unrouted_subject(&item.bus), headers, payload.clone())
                    .await?,
            );
        }
        for (i, hit) in hits.iter().enumerate() {
            // No `Sluice-Accepted`: a new event is accepted when the stream stores it, and
            // readers take the stream's timestamp when the header is absent.
            let headers = copy_headers(None, hit, i, base_id.as_deref());
            let subject = trigger_subject(&item.bus, hit)?;
            acks.push(self.send(subject, headers, payload.clone()).await?);
        }
        // As on the embedded bus, an event that matched nothing (most replies, dead letters
        // on their bus) is archived, not traced.
        if !hits.is_empty() && self.0.cfg.trace_steps {
            let routed = StepKind::Routed {
                bus: item.bus.clone(),
                triggers: hits.into_iter().map(|h| h.trigger).collect(),
            };
            steps.push(Step::of(&item.event, now_ms(), routed));
        }
        Ok(acks)
    }

    pub(super) async fn send(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, BusError> {
        self.0
            .js
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(nats_err)
    }

    pub(super) async fn read_stream(
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
        let c = reader(&s, filter, after).await?;
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
        let _ = s.delete_consumer(&c.cached_info().name).await;
        Ok(out)
    }
}

/// A throwaway reader of stream `s` from after position `after`, filtered to `filter`: an
/// unacknowledged consumer, which the caller deletes when done (the server drops it 5 s after
/// its last use otherwise). Its `num_pending` is how many messages it will read.
pub(super) async fn reader(
    s: &stream::Stream,
    filter: Option<String>,
    after: u64,
) -> Result<PullConsumer, BusError> {
    s.create_consumer(pull::Config {
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        },
        ack_policy: AckPolicy::None,
        filter_subject: filter.unwrap_or_default(),
        inactive_threshold: Duration::from_secs(5),
        ..Default::default()
    })
    .await
    .map_err(nats_err)
}

/// Headers of the `i`th stored copy of an event routed to `hit`.
pub(super) fn copy_headers(
    accepted: Option<&str>,
    hit: &Route,
    i: usize,
    base_id: Option<&str>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(accepted) = accepted {
        headers.insert(ACCEPTED, accepted);
    }
    if let Some(k) = &hit.key {
        headers.insert(KEY, super::queue::header_safe(k).as_str());
    }
    if i > 0 {
        // Readers of the archive (tail, replay) show an event once: they skip later copies.
        headers.insert(COPY, i.to_string().as_str());
    }
    if let Some(id) = base_id {
        // One id per (event, Trigger): a retry drops copies already stored, not new routes.
        headers.insert("Nats-Msg-Id", format!("{id}:{}", hit.trigger).as_str());
    }
    headers
}

/// Where a copy routed to `hit` is stored on `bus`.
pub(super) fn trigger_subject(bus: &str, hit: &Route) -> Result<String, BusError> {
    let (ns, name) = split_id(&hit.trigger)?;
    let partition = hit.key.as_deref().map_or(0, super::partition_of);
    Ok(names::trigger_subject(bus, ns, name, partition))
}

/// The `Nats-Msg-Id` of a producer's event: its (source, id) pair, hashed to 128 bits and
/// written in 22 characters (base64url). The server keeps every id of its duplicate window in
/// memory and compares them on each publish; 128 bits keep collisions out of reach.
pub fn dedupe_id(e: &CloudEvent) -> String {
    use base64::Engine as _;
    let mut h = sha2::Sha256::new();
    h.update(e.source.as_bytes());
    h.update([0]);
    h.update(e.id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_ids_separate_source_from_id() {
        let a = CloudEvent::new("b", "a", "t");
        let b = CloudEvent::new("", "ab", "t");
        assert_ne!(dedupe_id(&a), dedupe_id(&b));
        assert_eq!(dedupe_id(&a), dedupe_id(&a.clone()));
        // 128 bits in base64url: short, and safe in a header.
        assert_eq!(dedupe_id(&a).len(), 22);
        assert!(
            dedupe_id(&a)
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
