//! Trigger queues are leased from memory so no lease waits on the disk; that stays crash-safe by
//! the order kept here: an op enters the writer's channel before the in-memory change it allows.

use std::time::Duration;

use tokio::sync::oneshot;

use super::{EmbeddedBus, Payload, QueueRecord, Reply, State, codec, publish::Logged, writer::Op};
use crate::{
    BusError, Delivery, Enqueue, Publish, QueueConfig, TriggerId,
    gate::{Admit, Breaker, Bucket, Gate},
    queue::{Queue, QueueEntry},
    sched_ms,
};

/// A gated Trigger's settings and state (times by [`sched_ms`]).
#[derive(Debug, Default)]
pub(super) struct GateState {
    gate: Gate,
    bucket: Bucket,
    breaker: Breaker,
}

impl GateState {
    /// How many of `want` events may be leased at `now`, and the breaker state to keep if
    /// any is (a trial recorded).
    fn admit(&self, now: u64, lease_ms: u64, want: usize) -> (usize, Breaker) {
        let mut n = want;
        let mut breaker = self.breaker;
        if self.gate.breaker.is_some() {
            match self.breaker.admit(now, lease_ms) {
                (Admit::All, _) => {}
                (Admit::Trial, trying) => {
                    n = n.min(1);
                    breaker = trying;
                }
                (Admit::NoneUntil(_), _) => return (0, breaker),
            }
        }
        if let Some(rate) = &self.gate.rate {
            n = n.min(self.bucket.available(now, rate) as usize);
        }
        (n, breaker)
    }

    /// When the gate next lets an event go, if it lets none go at `now`.
    fn reopens(&self, now: u64, lease_ms: u64) -> Option<u64> {
        if self.gate.breaker.is_some()
            && let (Admit::NoneUntil(at), _) = self.breaker.admit(now, lease_ms)
        {
            return Some(at);
        }
        let rate = self.gate.rate.as_ref()?;
        crate::gate::take(self.bucket, now, rate, 0)
            .next_ms
            .filter(|_| self.bucket.available(now, rate) == 0)
    }
}

/// A queue entry encoded by its producer (see [`Logged`]).
pub(super) struct Queued {
    pub(super) trigger: TriggerId,
    pub(super) seq: u64,
    pub(super) record: QueueRecord,
    pub(super) bytes: Vec<u8>,
}

impl Queued {
    /// `json`: the event's JSON when the caller has it (the router reads it from the log).
    fn new(e: Enqueue, json: Option<&[u8]>, seq: u64) -> Self {
        let record = QueueRecord {
            attempts: 0,
            not_before: 0,
            accepted_ms: e.accepted_ms,
            key: e.key,
            last_error: String::new(),
            event: e.event,
        };
        let bytes = match json {
            Some(json) => codec::encode_queued_json(&record, json),
            None => codec::encode_queued(&record),
        };
        Self {
            trigger: e.trigger,
            seq,
            record,
            bytes,
        }
    }
}

impl EmbeddedBus {
    /// The position the router has routed `bus` through.
    pub fn route_cursor(&self, bus: &str) -> u64 {
        self.shared.state().cursors.get(bus).copied().unwrap_or(0)
    }

    /// Puts routed events on their trigger queues and moves `bus`'s routing cursor to
    /// `through`, in one commit: an event is routed once, or (after a crash) again as a whole.
    /// Each item may come with the event's JSON as read from the log, saving a re-encode.
    pub async fn route(
        &self,
        bus: &str,
        through: u64,
        items: Vec<(Enqueue, Option<&[u8]>)>,
    ) -> Result<(), BusError> {
        self.route_now(bus, through, items)
            .await?
            .await
            .map_err(|_| BusError::Closed)?
    }

    /// [`Self::route`] without waiting for the commit: the entries can be leased, and the
    /// cursor has moved, as soon as this returns; the receiver says how the commit went.
    /// That is safe because commits apply in order: an ack, retry or reply of a delivery is
    /// an op sent after this one, so no crash can keep it while losing the entry, and a lost
    /// entry loses its cursor move with it, so the event is routed again.
    pub async fn route_now(
        &self,
        bus: &str,
        through: u64,
        items: Vec<(Enqueue, Option<&[u8]>)>,
    ) -> Result<oneshot::Receiver<Result<(), BusError>>, BusError> {
        let items: Vec<Queued> = items
            .into_iter()
            .map(|(e, json)| Queued::new(e, json, self.shared.take_qseq()))
            .collect();
        let visible: Vec<(TriggerId, u64, QueueRecord)> = items
            .iter()
            .map(|q| (q.trigger.clone(), q.seq, q.record.clone()))
            .collect();
        let cursor = Some((bus.to_owned(), through));
        // In the channel first, then visible: whatever a worker does with an entry is an op
        // that comes after its commit.
        let rx = self
            .send(|reply| Op::Enqueue {
                cursor,
                items,
                durable: false,
                visible: true,
                reply,
            })
            .await?;
        {
            let mut s = self.shared.state();
            push_entries(&mut s, visible);
            let c = s.cursors.entry(bus.to_owned()).or_default();
            *c = (*c).max(through);
        }
        self.shared.wake_queued();
        Ok(rx)
    }

    /// Puts events straight on trigger queues (schedules), durably.
    pub async fn enqueue(&self, items: Vec<Enqueue>) -> Result<(), BusError> {
        let items = items
            .into_iter()
            .map(|e| Queued::new(e, None, self.shared.take_qseq()))
            .collect();
        self.call(|reply| Op::Enqueue {
            cursor: None,
            items,
            durable: true,
            visible: false,
            reply,
        })
        .await
    }

    /// Sets how a trigger's queue hands out events; creates it when new.
    pub fn configure_queue(&self, trigger: &str, cfg: &QueueConfig) {
        let mut s = self.shared.state();
        s.queues
            .entry(trigger.to_owned())
            .or_insert_with(|| Queue::new(cfg.max_inflight))
            .set_max_inflight(cfg.max_inflight);
        s.leases.insert(trigger.to_owned(), cfg.lease);
        if cfg.gate.is_unset() {
            s.gates.remove(trigger);
        } else {
            s.gates.entry(trigger.to_owned()).or_default().gate = cfg.gate;
        }
        drop(s);
        self.shared.wake_queued();
    }

    /// Leases up to `max` due events of a trigger, as many as its gate lets go.
    pub fn lease(&self, trigger: &str, max: usize) -> Vec<Delivery> {
        let now = sched_ms();
        let mut s = self.shared.state();
        let s = &mut *s;
        let lease = s
            .leases
            .get(trigger)
            .copied()
            .unwrap_or(Duration::from_secs(30));
        let lease_ms = lease.as_millis() as u64;
        let Some(q) = s.queues.get_mut(trigger) else {
            return Vec::new();
        };
        let mut gate = s.gates.get_mut(trigger);
        let (max, trial) = match &gate {
            Some(g) => g.admit(now, lease_ms, max),
            None => (max, Breaker::default()),
        };
        let leased = q.lease(now, now + lease_ms, max);
        if let Some(g) = &mut gate
            && !leased.is_empty()
        {
            g.breaker = trial;
            if let Some(rate) = &g.gate.rate {
                g.bucket = crate::gate::take(g.bucket, now, rate, leased.len() as u32).bucket;
            }
        }
        leased
            .into_iter()
            .map(|(seq, attempt, p)| Delivery {
                trigger: trigger.to_owned(),
                seq,
                attempt,
                accepted_ms: p.accepted_ms,
                event: p.event,
                receipt: None,
            })
            .collect()
    }

    /// Earliest time (ms) an entry of this trigger can be leased (a retry falls due, or its
    /// gate lets an event go), when none can be now.
    pub fn next_due(&self, trigger: &str) -> Option<u64> {
        let s = self.shared.state();
        let due = s.queues.get(trigger).and_then(Queue::next_due)?;
        let reopens = s.gates.get(trigger).and_then(|g| {
            let lease = s
                .leases
                .get(trigger)
                .map_or(30_000, |l| l.as_millis() as u64);
            g.reopens(sched_ms().max(due), lease)
        });
        Some(reopens.map_or(due, |r| r.max(due)))
    }

    /// Records an attempt's outcome for the Trigger's circuit breaker; a breaker that closes
    /// wakes the workers.
    pub fn record_outcome(&self, trigger: &str, ok: bool) {
        let mut s = self.shared.state();
        let Some(g) = s.gates.get_mut(trigger) else {
            return;
        };
        let Some(cfg) = g.gate.breaker else {
            return;
        };
        let was = g.breaker;
        g.breaker = was.record(sched_ms(), &cfg, ok);
        let closed = was.open_until != 0 && g.breaker.open_until == 0;
        drop(s);
        if closed {
            self.shared.wake_queued();
        }
    }

    /// The Trigger's circuit breaker, when it has one. Its times are [`sched_ms`]; shown as
    /// the wall clock they are within a process's clock steps.
    pub fn breaker(&self, trigger: &str) -> Option<Breaker> {
        let s = self.shared.state();
        let g = s.gates.get(trigger)?;
        g.gate.breaker.map(|_| g.breaker)
    }

    /// The delivery succeeded: its replies are appended and its entry removed in one commit,
    /// without fsync. A crash that loses that commit loses both, and the redelivery produces
    /// the replies again; a commit that fails puts the entry back, to be delivered again.
    pub async fn ack(&self, d: &Delivery, replies: Vec<Publish>) -> Result<(), BusError> {
        // Encoded here, on the caller's core, so the writer only stores.
        let replies = replies.iter().map(Logged::new).collect();
        let (trigger, seq) = (d.trigger.clone(), d.seq);
        let op = |reply| Op::Ack {
            trigger,
            seq,
            replies,
            reply,
        };
        self.settle(&d.trigger, Some((d.seq, d.attempt)), op, |q| {
            q.remove(d.seq)
        })
        .await
    }

    /// Hands a delivery's outcome to the writer, then applies it to the trigger's in-memory
    /// queue (which may let the next event of its ordering key be leased), then waits for the
    /// commit. In that order, whatever the next event's delivery writes is a later commit, so a
    /// crash cannot keep the next event's ack (or its replies, ahead of these) while losing
    /// this one. With `lease` (sequence, delivery number), the outcome is refused unless that
    /// lease still holds: a worker whose lease expired cannot ack, retry or dead-letter an
    /// entry another worker now has. An entry `change` removed comes back when the commit
    /// fails (a full disk): the bus heals in place, and the event must still be delivered.
    pub(super) async fn settle(
        &self,
        trigger: &str,
        lease: Option<(u64, u32)>,
        make: impl FnOnce(Reply<()>) -> Op,
        change: impl FnOnce(&mut Queue<Payload>) -> Option<QueueEntry<Payload>>,
    ) -> Result<(), BusError> {
        if let Some((seq, attempt)) = lease {
            // A trigger no longer configured here has no leases to check: its outcome is
            // written as before.
            let held = self
                .shared
                .state()
                .queues
                .get_mut(trigger)
                .is_none_or(|q| q.pin(seq, attempt));
            if !held {
                return Err(BusError::LeaseLost {
                    trigger: trigger.to_owned(),
                    seq,
                    attempt,
                });
            }
        }
        let rx = self.send(make).await?;
        let removed = self.shared.state().queues.get_mut(trigger).and_then(change);
        self.shared.wake_queued();
        let result = rx.await.map_err(|_| BusError::Closed)?;
        if result.is_err()
            && let (Some(entry), Some((seq, _))) = (removed, lease)
        {
            if let Some(q) = self.shared.state().queues.get_mut(trigger) {
                q.restore(seq, entry);
            }
            self.shared.wake_queued();
        }
        result
    }

    /// Hands expired leases out again; returns how many.
    pub fn expire_leases(&self) -> usize {
        let now = sched_ms();
        let n: usize = self
            .shared
            .state()
            .queues
            .values_mut()
            .map(|q| q.expire(now))
            .sum();
        if n > 0 {
            self.shared.wake_queued();
        }
        n
    }

    /// Resolves when some queue may have something to lease.
    pub fn queued(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.queued.notified()
    }

    /// Changes whenever a queue may have something new to lease.
    pub fn queued_version(&self) -> u64 {
        self.shared
            .queued_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until [`Self::queued_version`] differs from `since`, an entry of `triggers`
    /// falls due, or `max` passes.
    pub async fn wait_queued(&self, triggers: &[TriggerId], since: u64, max: Duration) {
        let notified = self.queued();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.queued_version() != since {
            return;
        }
        let due = triggers
            .iter()
            .filter_map(|t| self.next_due(t))
            .min()
            .map(|at| Duration::from_millis(at.saturating_sub(sched_ms()).max(1)));
        let wait = due.map_or(max, |d| d.min(max));
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

pub(super) fn push_entries(s: &mut State, items: Vec<(TriggerId, u64, QueueRecord)>) {
    for (trigger, seq, rec) in items {
        s.queues
            .entry(trigger)
            .or_insert_with(|| Queue::new(100))
            .push(seq, entry_of(rec));
    }
}

pub(super) fn entry_of(rec: QueueRecord) -> QueueEntry<Payload> {
    QueueEntry {
        attempts: rec.attempts,
        not_before: rec.not_before,
        key: rec.key,
        payload: Payload {
            event: rec.event,
            accepted_ms: rec.accepted_ms,
        },
    }
}
