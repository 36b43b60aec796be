//! The trace log on NATS: a limits stream of steps, one subject per event id. Steps are
//! published without waiting for JetStream's ack (a lost step costs an account, never a
//! delivery); `sluice trace` reads one subject, the console the stream's tail.

use std::time::Duration;

use async_nats::jetstream::stream::{self, StorageType};
use sha2::Digest;
use sluice_api::jetstream as names;

use super::{NatsBus, nats_err};
use crate::BusError;
use crate::trace::Step;

/// How long steps are kept, and how many. A count, not a byte size: JetStream reserves a
/// file stream's `max_bytes` against the server's store up front, and a trace log must never
/// take the room a bus stream needs (a 2 GB store with one 1 GiB bus left no room for a
/// second). At a few hundred bytes a step, 500,000 steps are about 200 MB.
const TRACE_AGE: Duration = Duration::from_secs(24 * 3600);
const TRACE_STEPS: i64 = 500_000;

/// Subject of the steps of events with id `id`: a hash of it, since an id is any string and a
/// subject token is not. Readers compare the id held in each step.
pub fn trace_subject(id: &str) -> String {
    let digest = sha2::Sha256::digest(id.as_bytes());
    format!("sluice.trace.{}", hex::encode(&digest[..12]))
}

impl NatsBus {
    /// Creates the stream once per process.
    async fn ensure_trace_stream(&self) -> Result<(), BusError> {
        let js = &self.0.js;
        self.0
            .trace_ready
            .get_or_try_init(|| async {
                js.get_or_create_stream(stream::Config {
                    name: names::TRACE_STREAM.into(),
                    subjects: vec!["sluice.trace.>".into()],
                    storage: StorageType::File,
                    max_age: TRACE_AGE,
                    max_messages: TRACE_STEPS,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(nats_err)
            })
            .await
            .copied()
    }

    async fn trace_stream(&self) -> Result<stream::Stream, BusError> {
        self.ensure_trace_stream().await?;
        self.0
            .js
            .get_stream(names::TRACE_STREAM)
            .await
            .map_err(nats_err)
    }

    pub(super) fn trace_now(&self, steps: Vec<Step>) {
        if steps.is_empty() || !self.0.cfg.trace_steps {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let bus = self.clone();
        rt.spawn(async move {
            // The stream must exist before a core publish is stored; created once.
            if let Err(e) = bus.ensure_trace_stream().await {
                tracing::debug!(error = %e, "trace stream unavailable; steps dropped");
                return;
            }
            for step in steps {
                let Ok(body) = serde_json::to_vec(&step) else {
                    continue;
                };
                if let Err(e) = bus
                    .0
                    .client
                    .publish(trace_subject(&step.event_id), body.into())
                    .await
                {
                    tracing::debug!(error = %e, "trace step dropped");
                }
            }
        });
    }

    pub(super) async fn traced_now(&self, id: &str) -> Result<Vec<Step>, BusError> {
        self.trace_stream().await?;
        let msgs = self
            .read_stream(names::TRACE_STREAM, Some(trace_subject(id)), 0, 10_000)
            .await?;
        // Steps are published as they are taken, by several processes: order them by time.
        let mut steps: Vec<Step> = msgs
            .iter()
            .filter_map(|(_, m)| serde_json::from_slice::<Step>(&m.payload).ok())
            .filter(|s| s.event_id == id)
            .collect();
        steps.sort_by_key(|s| s.at_ms);
        Ok(steps)
    }

    pub(super) async fn recent_steps_now(&self, limit: usize) -> Result<Vec<Step>, BusError> {
        let mut stream = self.trace_stream().await?;
        let last = stream.info().await.map_err(nats_err)?.state.last_sequence;
        let after = last.saturating_sub(limit as u64);
        let msgs = self
            .read_stream(names::TRACE_STREAM, None, after, limit)
            .await?;
        Ok(msgs
            .iter()
            .filter_map(|(_, m)| serde_json::from_slice::<Step>(&m.payload).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::trace_subject;

    #[test]
    fn one_subject_token_per_id_whatever_it_holds() {
        let t = trace_subject("order 1.*>");
        assert_eq!(t.len(), "sluice.trace.".len() + 24, "{t}");
        assert!(!t["sluice.trace.".len()..].contains(['.', '*', '>', ' ']));
        assert_ne!(t, trace_subject("order 2"));
        assert_eq!(t, trace_subject("order 1.*>"));
    }
}
