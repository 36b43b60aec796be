//! The bus streams: publishing with the (source, id) message id that makes the stream's
//! duplicate window the dedupe window, and reading a stream back from a position.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, pull},
        stream::{self, RetentionPolicy, StorageType},
    },
};
use sha2::Digest;
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;

use super::{ACCEPTED, NatsBus, lock, nats_err, pull, stream_missing};
use crate::{BusError, Publish, Published, now_ms};

impl NatsBus {
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

    pub(super) async fn ensure_bus_once(&self, bus: &str) -> Result<(), BusError> {
        if lock(&self.0.buses).contains(bus) {
            return Ok(());
        }
        self.ensure_bus(bus).await.map(|_| ())
    }

    pub(super) async fn publish_all(
        &self,
        items: Vec<Publish>,
    ) -> Result<Vec<Published>, BusError> {
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
}

/// The `Nats-Msg-Id` of a producer's event: its (source, id) pair.
pub fn dedupe_id(e: &CloudEvent) -> String {
    let mut h = sha2::Sha256::new();
    h.update(e.source.as_bytes());
    h.update([0]);
    h.update(e.id.as_bytes());
    hex::encode(h.finalize())
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
    }
}
