//! Triggers' gates on NATS: each Trigger's token bucket and circuit breaker are entries of the
//! [`names::GATES_BUCKET`] key-value bucket, so every worker replica takes from the same
//! bucket and sees the same breaker. Tokens are taken by compare-and-set on the entry's
//! revision (a lost race reads again); the breaker is read at most every
//! [`BREAKER_FRESH`] and written only when an outcome changes it, so a healthy Trigger's
//! deliveries cost no write at all. Times are the wall clock (ms), shared by the replicas.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use sluice_api::{buckets, jetstream as names};

use super::{NatsBus, lock, nats_err};
use crate::{
    BusError,
    gate::{self, Admit, Breaker, Gate},
    now_ms,
};

/// How long a breaker read from the bucket is taken as current: another replica's opening
/// is seen within this time.
const BREAKER_FRESH: Duration = Duration::from_millis(250);

/// Compare-and-set rounds before a taker gives up for now (it asks again shortly).
const ROUNDS: usize = 8;

/// A gated Trigger's keys and the breaker as last read.
pub(super) struct GateKeys {
    pub(super) gate: Gate,
    rate_key: String,
    breaker_key: String,
    breaker: std::sync::Mutex<Option<Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    state: Breaker,
    revision: Option<u64>,
    at: Instant,
}

impl GateKeys {
    pub(super) fn new(namespace: &str, name: &str, gate: Gate) -> Self {
        Self {
            gate,
            rate_key: names::rate_key(namespace, name),
            breaker_key: names::breaker_key(namespace, name),
            breaker: std::sync::Mutex::new(None),
        }
    }

    pub(super) fn seen(&self) -> Option<Breaker> {
        lock(&self.breaker).map(|s| s.state)
    }
}

/// What the gate decided: `n` events may go; with none, when to ask again.
pub(super) struct Opening {
    pub(super) n: usize,
    pub(super) retry_at_ms: u64,
}

impl NatsBus {
    async fn gates(&self) -> Result<&kv::Store, BusError> {
        self.0
            .gates
            .get_or_try_init(|| async {
                buckets::open(&self.0.js, buckets::gates_stream())
                    .await
                    .map_err(|e| nats_err(e.to_string()))
            })
            .await
    }

    /// How many of `want` events of the Trigger its gate lets go now (the tokens and a trial
    /// are taken).
    pub(super) async fn admit(
        &self,
        keys: &GateKeys,
        lease: Duration,
        want: usize,
    ) -> Result<Opening, BusError> {
        let mut n = want;
        let mut trial = false;
        if keys.gate.breaker.is_some() {
            let seen = self.breaker_now(keys, false).await?;
            let now = now_ms();
            match seen.state.admit(now, lease.as_millis() as u64).0 {
                Admit::All => {}
                Admit::NoneUntil(at) => {
                    // Re-read before then: another replica's success may close it.
                    let retry_at_ms = at.min(now + 1_000);
                    return Ok(Opening { n: 0, retry_at_ms });
                }
                Admit::Trial => {
                    trial = true;
                    n = 1;
                }
            }
        }
        if let Some(rate) = &keys.gate.rate {
            let (granted, next) = self.take_tokens(keys, rate, n as u32).await?;
            if granted == 0 {
                let retry_at_ms = next.unwrap_or_else(|| now_ms() + 10);
                return Ok(Opening { n: 0, retry_at_ms });
            }
            n = granted as usize;
        }
        if trial && !self.take_trial(keys, lease).await? {
            return Ok(Opening {
                n: 0,
                retry_at_ms: now_ms() + 50,
            });
        }
        Ok(Opening { n, retry_at_ms: 0 })
    }

    /// The breaker, from the bucket when `fresh` or when the last read is older than
    /// [`BREAKER_FRESH`].
    async fn breaker_now(&self, keys: &GateKeys, fresh: bool) -> Result<Seen, BusError> {
        if !fresh
            && let Some(s) = *lock(&keys.breaker)
            && s.at.elapsed() < BREAKER_FRESH
        {
            return Ok(s);
        }
        let store = self.gates().await?;
        let entry = store
            .entry(keys.breaker_key.as_str())
            .await
            .map_err(|e| nats_err(format!("reading {}: {e}", keys.breaker_key)))?;
        let (state, revision) = decode(entry);
        let seen = Seen {
            state,
            revision,
            at: Instant::now(),
        };
        *lock(&keys.breaker) = Some(seen);
        Ok(seen)
    }

    /// Records the half-open breaker's trial, unless another replica took it first.
    async fn take_trial(&self, keys: &GateKeys, lease: Duration) -> Result<bool, BusError> {
        let seen = self.breaker_now(keys, true).await?;
        let (admit, trying) = seen.state.admit(now_ms(), lease.as_millis() as u64);
        if admit != Admit::Trial {
            return Ok(false);
        }
        self.write_breaker(keys, seen, trying).await
    }

    /// Stores `next` over `seen` if nobody wrote in between; whether it was stored.
    async fn write_breaker(
        &self,
        keys: &GateKeys,
        seen: Seen,
        next: Breaker,
    ) -> Result<bool, BusError> {
        let store = self.gates().await?;
        let body = serde_json::to_vec(&next).map_err(|e| BusError::Storage(e.to_string()))?;
        match put_at(store, &keys.breaker_key, body, seen.revision).await {
            Ok(revision) => {
                *lock(&keys.breaker) = Some(Seen {
                    state: next,
                    revision: Some(revision),
                    at: Instant::now(),
                });
                Ok(true)
            }
            Err(e) => {
                tracing::debug!(key = %keys.breaker_key, error = %e, "breaker changed meanwhile");
                // Read again next time.
                *lock(&keys.breaker) = None;
                Ok(false)
            }
        }
    }

    /// Records an attempt's outcome in the Trigger's breaker. A success where the breaker
    /// was last seen closed with no failures writes nothing.
    pub(super) async fn record(&self, keys: &GateKeys, ok: bool) -> Result<(), BusError> {
        let Some(cfg) = keys.gate.breaker else {
            return Ok(());
        };
        if ok
            && lock(&keys.breaker).is_some_and(|s| s.state.failures == 0 && s.state.open_until == 0)
        {
            return Ok(());
        }
        for _ in 0..ROUNDS {
            let seen = self.breaker_now(keys, true).await?;
            let next = seen.state.record(now_ms(), &cfg, ok);
            if next == seen.state || self.write_breaker(keys, seen, next).await? {
                if next.opened > seen.state.opened {
                    tracing::warn!(key = %keys.breaker_key, failures = next.failures, "circuit breaker opened");
                }
                return Ok(());
            }
        }
        Err(nats_err(format!(
            "{}: the breaker kept changing under {ROUNDS} writes",
            keys.breaker_key
        )))
    }

    /// Takes up to `want` tokens; the number taken and, when the bucket is empty, when the
    /// next token is there.
    async fn take_tokens(
        &self,
        keys: &GateKeys,
        rate: &gate::RateLimit,
        want: u32,
    ) -> Result<(u32, Option<u64>), BusError> {
        let store = self.gates().await?;
        for _ in 0..ROUNDS {
            let entry = store
                .entry(keys.rate_key.as_str())
                .await
                .map_err(|e| nats_err(format!("reading {}: {e}", keys.rate_key)))?;
            let (bucket, revision) = decode(entry);
            let t = gate::take(bucket, now_ms(), rate, want);
            if t.granted == 0 {
                return Ok((0, t.next_ms));
            }
            let body =
                serde_json::to_vec(&t.bucket).map_err(|e| BusError::Storage(e.to_string()))?;
            if put_at(store, &keys.rate_key, body, revision).await.is_ok() {
                return Ok((t.granted, t.next_ms));
            }
        }
        // Other replicas won every round: they are taking the tokens; try again shortly.
        Ok((0, Some(now_ms() + 10)))
    }
}

/// Writes `key` if it is still at `revision` (none: if it does not exist yet); the new revision,
/// or why not (another writer came first, or the server refused).
async fn put_at(
    store: &kv::Store,
    key: &str,
    body: Vec<u8>,
    revision: Option<u64>,
) -> Result<u64, String> {
    match revision {
        Some(r) => store
            .update(key, body.into(), r)
            .await
            .map_err(|e| e.to_string()),
        None => store
            .create(key, body.into())
            .await
            .map_err(|e| e.to_string()),
    }
}

/// An entry's state and revision (a missing or deleted entry: the default state, to be
/// created; an unreadable one: the default, overwritten at its revision).
fn decode<T: Default + serde::de::DeserializeOwned>(entry: Option<kv::Entry>) -> (T, Option<u64>) {
    match entry {
        Some(e) if e.operation == kv::Operation::Put => (
            serde_json::from_slice(&e.value).unwrap_or_default(),
            Some(e.revision),
        ),
        Some(e) => (T::default(), Some(e.revision)),
        None => (T::default(), None),
    }
}
