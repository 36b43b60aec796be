//! Trigger queue depth and removal, read from JetStream under the names in
//! `sluice_api::jetstream`. A Trigger's queue is no stream of its own: publishers store one copy
//! of each matching event in the Trigger's home bus stream under its subjects, and its workers
//! consume durable consumers of that stream filtered to them. Behind a trait so the autoscaler
//! is tested on scripted depths.

use std::{path::Path, time::Duration};

use async_nats::jetstream::{
    self, ErrorCode,
    context::GetStreamErrorKind,
    stream::{ConsumerErrorKind, Stream},
};
use futures::{StreamExt, future::BoxFuture};
use sluice_api::{
    Trigger, buckets, gate,
    jetstream::{
        DEAD_LETTER_STREAM, breaker_key, bus_stream, dead_letter_subject, is_trigger_consumer,
        trigger_subjects,
    },
    trigger::CircuitStatus,
};

use crate::{Error, Result};

/// The bus of Triggers without a bus source: schedules and the MQTT and NATS bridges put their
/// events on this bus's stream under the Trigger's subjects. `sluice_bus::DEFAULT_BUS`, which
/// the operator does not depend on.
pub const DEFAULT_BUS: &str = "default";

/// The bus whose stream holds Trigger `t`'s queue: its source bus, else [`DEFAULT_BUS`].
pub fn home_bus(t: &Trigger) -> &str {
    t.spec.source.bus.as_deref().unwrap_or(DEFAULT_BUS)
}

/// The delivery queues of Triggers, each on its home bus's stream (see [`home_bus`]).
pub trait Queues: Send + Sync {
    /// Queued plus in-flight events of Trigger `namespace/trigger` on bus `bus`; 0 when it has
    /// none.
    fn pending<'a>(
        &'a self,
        bus: &'a str,
        namespace: &'a str,
        trigger: &'a str,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Deletes the consumers and stored events of a deleted Trigger; `false` when there were
    /// none.
    fn delete<'a>(
        &'a self,
        bus: &'a str,
        namespace: &'a str,
        trigger: &'a str,
    ) -> BoxFuture<'a, Result<bool>>;
    /// What `kubectl get trg -o wide` shows of Trigger `namespace/trigger`; with `breaker`
    /// (it has `delivery.circuitBreaker`), its breaker's state too.
    fn counts<'a>(
        &'a self,
        bus: &'a str,
        namespace: &'a str,
        trigger: &'a str,
        breaker: bool,
    ) -> BoxFuture<'a, Result<TriggerCounts>>;
}

/// A Trigger's counters, read from JetStream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriggerCounts {
    /// Events routed to the Trigger that its bus stream still holds. The stream is a limits
    /// stream, so once its age or size limit drops old events this is less than every match
    /// ever made; acking does not lower it.
    pub matched: u64,
    /// Dead letters held now (what `sluice dlq list` shows; redrive and purge lower it).
    pub dead_lettered: u64,
    /// The circuit breaker as the workers last stored it (closed before any was stored).
    pub circuit: Option<CircuitStatus>,
}

/// A breaker's state as the Trigger's status shows it, read at `now` (wall ms).
pub fn circuit_status(b: &gate::Breaker, now: u64) -> CircuitStatus {
    let s = b.status(now, now);
    CircuitStatus {
        state: s.circuit.as_str().to_owned(),
        failures: s.failures,
        open_until: (s.circuit == gate::Circuit::Open)
            .then(|| rfc3339(s.open_until_ms))
            .flatten(),
    }
}

fn rfc3339(ms: u64) -> Option<String> {
    let t = k8s_openapi::jiff::Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?;
    Some(t.round(k8s_openapi::jiff::Unit::Second).ok()?.to_string())
}

/// Queues in a JetStream server.
pub struct JetStream {
    js: jetstream::Context,
}

impl JetStream {
    /// Connects lazily: the client keeps retrying in the background, so a NATS outage delays
    /// depth readings (and so scaling) without stopping the reconcilers.
    pub async fn connect(url: &str, creds: Option<&Path>) -> Result<Self, Error> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("sluice-operator")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect();
        if let Some(creds) = creds {
            opts = opts
                .credentials_file(creds)
                .await
                .map_err(|e| Error::setting(format!("--nats-creds {}", creds.display()), e))?;
        }
        let client = opts
            .connect(url)
            .await
            .map_err(|e| Error::setting(format!("--nats-url {url}"), e))?;
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(2));
        Ok(Self { js })
    }

    pub fn from_context(js: jetstream::Context) -> Self {
        Self { js }
    }

    /// The JetStream context, shared with the route book.
    pub fn context(&self) -> jetstream::Context {
        self.js.clone()
    }
}

fn not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn consumer_not_found(kind: &ConsumerErrorKind) -> bool {
    matches!(kind, ConsumerErrorKind::JetStream(e) if e.error_code() == ErrorCode::CONSUMER_NOT_FOUND)
}

/// Messages `stream` holds under subjects matching `filter`.
async fn stored(stream: &Stream, filter: &str) -> Result<u64> {
    let name = &stream.cached_info().config.name;
    let mut subjects = stream
        .info_with_subjects(filter)
        .await
        .map_err(|e| Error::Queue(format!("subjects {filter} of stream {name}: {e}")))?;
    let mut n = 0u64;
    while let Some(entry) = subjects.next().await {
        let (_, count) =
            entry.map_err(|e| Error::Queue(format!("subjects {filter} of stream {name}: {e}")))?;
        n = n.saturating_add(count as u64);
    }
    Ok(n)
}

impl JetStream {
    /// Bus `bus`'s stream; `None` when it does not exist (nothing was ever published on it).
    async fn bus(&self, bus: &str) -> Result<Option<Stream>> {
        let name = bus_stream(bus);
        match self.js.get_stream(&name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if not_found(&e.kind()) => Ok(None),
            Err(e) => Err(Error::Queue(format!("stream {name}: {e}"))),
        }
    }
}

impl JetStream {
    /// Trigger `namespace/trigger`'s circuit breaker as its workers stored it.
    async fn breaker(&self, namespace: &str, trigger: &str) -> Result<CircuitStatus> {
        let key = breaker_key(namespace, trigger);
        let store = buckets::open(&self.js, buckets::gates_stream())
            .await
            .map_err(|e| Error::Queue(e.to_string()))?;
        let state: gate::Breaker = match store.entry(key.as_str()).await {
            Ok(Some(e)) => serde_json::from_slice(&e.value).unwrap_or_default(),
            Ok(None) => gate::Breaker::default(),
            Err(e) => return Err(Error::Queue(format!("{key}: {e}"))),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(circuit_status(&state, now))
    }
}

impl Queues for JetStream {
    fn pending<'a>(
        &'a self,
        bus: &'a str,
        namespace: &'a str,
        trigger: &'a str,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let Some(stream) = self.bus(bus).await? else {
                return Ok(0);
            };
            let name = bus_stream(bus);
            // Every Trigger of the bus has its consumers on this stream: only this one's count.
            let mut consumers = stream.consumers();
            let (mut sum, mut any) = (0u64, false);
            while let Some(info) = consumers.next().await {
                let info = info.map_err(|e| Error::Queue(format!("consumers of {name}: {e}")))?;
                if !is_trigger_consumer(&info.name, namespace, trigger) {
                    continue;
                }
                any = true;
                sum = sum
                    .saturating_add(info.num_pending)
                    .saturating_add(info.num_ack_pending as u64);
            }
            if any {
                return Ok(sum);
            }
            // No consumer yet (no worker ever ran): the events stored under the Trigger's
            // subjects are the backlog, so the first events still wake a Function scaled to zero.
            stored(&stream, &trigger_subjects(bus, namespace, trigger)).await
        })
    }

    fn counts<'a>(
        &'a self,
        bus: &'a str,
        namespace: &'a str,
        trigger: &'a str,
        breaker: bool,
    ) -> BoxFuture<'a, Result<TriggerCounts>> {
        Box::pin(async move {
            let matched = match self.bus(bus).await? {
                Some(s) => stored(&s, &trigger_subjects(bus, namespace, trigger)).await?,
                None => 0,
            };
            let subject = dead_letter_subject(namespace, trigger);
            let dead_lettered = match self.js.get_stream(DEAD_LETTER_STREAM).await {
                Ok(s) => stored(&s, &subject).await?,
                Err(e) if not_found(&e.kind()) => 0,
                Err(e) => return Err(Error::Queue(format!("stream {DEAD_LETTER_STREAM}: {e}"))),
            };
            let circuit = match breaker {
                true => Some(self.breaker(namespace, trigger).await?),
                false => None,
            };
            Ok(TriggerCounts {
                matched,
                dead_lettered,
                circuit,
            })
        })
    }

    fn delete<'a>(
        &'a self,
        bus: &'a str,
        namespace: &'a str,
        trigger: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(stream) = self.bus(bus).await? else {
                return Ok(false);
            };
            let name = bus_stream(bus);
            let mut names = stream.consumer_names();
            let mut mine = Vec::new();
            while let Some(c) = names.next().await {
                let c = c.map_err(|e| Error::Queue(format!("consumers of {name}: {e}")))?;
                if is_trigger_consumer(&c, namespace, trigger) {
                    mine.push(c);
                }
            }
            for c in &mine {
                match stream.delete_consumer(c).await {
                    Ok(_) => {}
                    // A worker shutting down may have removed it first.
                    Err(e) if consumer_not_found(&e.kind()) => {}
                    Err(e) => {
                        return Err(Error::Queue(format!(
                            "deleting consumer {c} of stream {name}: {e}"
                        )));
                    }
                }
            }
            // The stored copies go too: a Trigger re-created with the same name must not be
            // delivered the old one's events.
            let subjects = trigger_subjects(bus, namespace, trigger);
            let purged = stream
                .purge()
                .filter(subjects.as_str())
                .await
                .map_err(|e| Error::Queue(format!("purging {subjects} of stream {name}: {e}")))?
                .purged;
            Ok(!mine.is_empty() || purged > 0)
        })
    }
}
