//! Dead letters get a stream of their own so `sluice dlq` can list, redrive and purge them after
//! the queue has moved on; a record is written before its delivery is acked, so none is lost.

use std::sync::Arc;

use async_nats::jetstream::stream::{self, StorageType};
use serde::{Deserialize, Serialize};
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;

use super::{NatsBus, nats_err, publish::reader, pull, split_id};
use crate::{BusError, DeadLetter, DeadLetterPage, Delivery, Enqueue, Publish, now_ms};

/// A dead letter as kept in the dead-letter stream.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadRecord {
    reason: String,
    attempts: u32,
    last_error: String,
    at_ms: u64,
    seq: u64,
    /// The Trigger's home bus, where a redrive puts the event back (absent in records of
    /// older versions: then the bus the route table names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bus: Option<String>,
    event: serde_json::Value,
}

impl NatsBus {
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

    /// Dead letters of `trigger` with their stream position and the bus recorded for them.
    async fn read_dead_records(
        &self,
        trigger: &str,
    ) -> Result<Vec<(u64, Option<String>, DeadLetter)>, BusError> {
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
        Ok(msgs
            .into_iter()
            .filter_map(|(pos, m)| {
                let (bus, d) = decode_dead(trigger, pos, &m.payload)?;
                Some((pos, bus, d))
            })
            .collect())
    }

    /// A page of `trigger`'s dead letters: a throwaway consumer of its subject says how many
    /// there are, the first `offset` are passed over undecoded, and only the page is kept.
    pub(super) async fn dead_letter_page(
        &self,
        trigger: &str,
        offset: usize,
        limit: usize,
    ) -> Result<DeadLetterPage, BusError> {
        let (ns, name) = split_id(trigger)?;
        let stream = self.dead_letter_stream().await?;
        let c = reader(&stream, Some(names::dead_letter_subject(ns, name)), 0).await?;
        let total = usize::try_from(c.cached_info().num_pending).unwrap_or(usize::MAX);
        let mut page = DeadLetterPage {
            items: Vec::new(),
            total,
        };
        let (mut seen, end) = (0usize, offset.saturating_add(limit).min(total));
        while seen < end {
            let got = pull(&c, (end - seen).min(1000)).await?;
            if got.is_empty() {
                break;
            }
            for m in got {
                let i = seen;
                seen += 1;
                if i < offset {
                    continue;
                }
                let pos = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                if let Some((_, d)) = decode_dead(trigger, pos, &m.payload) {
                    page.items.push(d);
                }
            }
        }
        let _ = stream.delete_consumer(&c.cached_info().name).await;
        Ok(page)
    }

    pub(super) async fn dead_letter_now(
        &self,
        dead: DeadLetter,
        to_bus: Option<&str>,
        from: Option<&Delivery>,
    ) -> Result<(), BusError> {
        let (ns, name) = split_id(&dead.trigger)?;
        let receipt = from.and_then(|d| Some((d, d.receipt.as_ref()?)));
        // A late worker records nothing: the delivery that has the event now decides. (Checked
        // again before the ack: recording takes round trips.)
        if let Some((d, r)) = receipt {
            r.held(d)?;
        }
        self.dead_letter_stream().await?;
        let rec = DeadRecord {
            reason: dead.reason.clone(),
            attempts: dead.attempts,
            last_error: dead.last_error.clone(),
            at_ms: dead.at_ms,
            seq: dead.seq,
            bus: self.home_of(&dead.trigger).ok(),
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
        if let Some((d, r)) = receipt {
            r.held(d)?.ack().await.map_err(nats_err)?;
        }
        Ok(())
    }

    pub(super) async fn redrive_now(&self, trigger: &str) -> Result<usize, BusError> {
        let (ns, name) = split_id(trigger)?;
        let dead = self.read_dead_records(trigger).await?;
        let Some(last) = dead.last().map(|(pos, _, _)| *pos) else {
            return Ok(0);
        };
        let n = dead.len();
        let now = now_ms();
        let home = self.home_of(trigger);
        let mut items = Vec::with_capacity(n);
        for (_, bus, d) in dead {
            let bus = match (bus, &home) {
                (Some(b), _) => b,
                (None, Ok(b)) => b.clone(),
                (None, Err(e)) => return Err(BusError::Storage(e.to_string())),
            };
            items.push(Enqueue {
                trigger: trigger.to_owned(),
                bus,
                event: Arc::new(d.event),
                accepted_ms: now,
                key: None,
                replay: None,
            });
        }
        self.enqueue_all(items, false).await?;
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

    pub(super) async fn purge_now(&self, trigger: &str) -> Result<usize, BusError> {
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

/// A dead-letter record as a dead letter of `trigger`, with the bus recorded for it; `None`
/// (logged) when it cannot be read.
fn decode_dead(trigger: &str, pos: u64, payload: &[u8]) -> Option<(Option<String>, DeadLetter)> {
    let rec: DeadRecord = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(trigger, pos, error = %e, "unreadable dead-letter record");
            return None;
        }
    };
    let event = CloudEvent::from_json_value(rec.event).ok()?;
    Some((
        rec.bus,
        DeadLetter {
            trigger: trigger.to_owned(),
            seq: rec.seq,
            reason: rec.reason,
            attempts: rec.attempts,
            last_error: rec.last_error,
            at_ms: rec.at_ms,
            event,
        },
    ))
}
