//! One thread applies every change, a batch per group commit (one journal append, one store
//! transaction), so the order of ops in its channel is the order of commits the rest relies on.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use redb::Durability;

use super::{
    CHECKPOINT_BYTES, EmbeddedConfig, MAX_BATCH, MAX_BATCH_BYTES, MAX_EXPIRED, QueueRecord, Reply,
    SLOW_PHASE, Shared, WriterPhase, codec,
    journal::Journal,
    log::EventLog,
    publish::{Log, Logged},
    queue::{Queued, push_entries},
    recovery::index_events,
    space,
    store::Store,
    tables::{Tables, storage},
};
use crate::{BusError, DeadLetter, Published, TriggerId, now_ms};

pub(super) enum Op {
    /// Producers' events: fsync'd before the answer. (Replies travel with their ack.)
    Publish(Vec<Logged>, Reply<Vec<Published>>),
    Enqueue {
        cursor: Option<(String, u64)>,
        items: Vec<Queued>,
        durable: bool,
        /// Already on the in-memory queues (routed events): the commit only stores them.
        visible: bool,
        reply: Reply<()>,
    },
    /// A delivery's replies and the removal of its entry, together.
    Ack {
        trigger: TriggerId,
        seq: u64,
        replies: Vec<Logged>,
        reply: Reply<()>,
    },
    Put {
        trigger: TriggerId,
        seq: u64,
        record: Vec<u8>,
        reply: Reply<()>,
    },
    Dead {
        dead: Box<DeadLetter>,
        record: Vec<u8>,
        publish: Option<Box<Logged>>,
        reply: Reply<()>,
    },
    Redrive {
        trigger: TriggerId,
        reply: Reply<usize>,
    },
    Purge {
        trigger: TriggerId,
        reply: Reply<usize>,
    },
    Trim {
        reply: Reply<usize>,
    },
    /// Makes every earlier non-durable commit durable (clean shutdown).
    Flush {
        reply: Reply<()>,
    },
}

impl Op {
    /// About how many bytes the op adds to its commit's journal record: what bounds a batch
    /// by size as well as by count.
    fn weight(&self) -> usize {
        let logged = |l: &[Logged]| l.iter().map(Logged::weight).sum::<usize>();
        match self {
            Op::Publish(items, _) => logged(items),
            Op::Enqueue { items, .. } => items.iter().map(|q| q.bytes.len() + 64).sum(),
            Op::Ack { replies, .. } => 64 + logged(replies),
            Op::Put { record, .. } => 64 + record.len(),
            Op::Dead {
                record, publish, ..
            } => 64 + record.len() + publish.as_deref().map_or(0, Logged::weight),
            Op::Redrive { .. } | Op::Purge { .. } | Op::Trim { .. } | Op::Flush { .. } => 64,
        }
    }

    fn durable(&self) -> bool {
        match self {
            Op::Publish(..) => true,
            // Like replies: losing a dead-lettering in a crash only means redelivery.
            Op::Dead { .. } => false,
            Op::Redrive { .. } | Op::Purge { .. } | Op::Flush { .. } => true,
            Op::Enqueue { durable, .. } => *durable,
            // Replies as well: a reply lost in a crash goes with the ack of its delivery.
            Op::Ack { .. } | Op::Put { .. } | Op::Trim { .. } => false,
        }
    }
}

/// What to do to the in-memory state once a commit is on disk.
enum After {
    Heads(Vec<(String, u64)>),
    Queued(Vec<(TriggerId, u64, QueueRecord)>),
}

/// While publishing is refused or the store is broken, the writer looks again this often,
/// traffic or not, so that it recovers (and `/readyz` says so) once space is back.
const PROBE: Duration = Duration::from_millis(500);

pub(super) struct Writer {
    pub(super) store: Arc<Store>,
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: Arc<EmbeddedConfig>,
    pub(super) log: Arc<EventLog>,
    pub(super) journal: Journal,
    /// Set when the store failed an operation (redb then refuses every later one) and may
    /// disagree with the journal (a journalled commit the store then failed to take): every
    /// later commit fails rather than build on it until [`Writer::heal`] reopens the store
    /// and replays the journal into it, as a restart would.
    pub(super) broken: Option<String>,
    /// When the last heal was tried.
    pub(super) healed_at: Option<Instant>,
    /// Why publishes are refused: the disk is too full ([`space`]).
    pub(super) full: Option<String>,
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Op>) {
        loop {
            let first = if self.broken.is_some() || self.full.is_some() {
                match rx.recv_timeout(PROBE) {
                    Ok(op) => Some(op),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => break,
                }
            };
            if self.broken.is_some() {
                self.heal();
            }
            let Some(first) = first else {
                if self.full.is_some() {
                    self.check_space(0);
                }
                continue;
            };
            // Bounded by count and by bytes: one journal record holds the whole batch, and a
            // record must stay far below what the journal reads back (`MAX_RECORD`).
            let mut weight = first.weight();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && weight < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        weight += op.weight();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.refuse_publishes_when_full(&mut batch);
            if batch.is_empty() {
                continue;
            }
            let flush = batch.iter().any(|op| matches!(op, Op::Flush { .. }));
            let started = std::time::Instant::now();
            let result = match &self.broken {
                Some(why) => Err(BusError::Storage(format!(
                    "the bus store is out of step with its journal since: {why}"
                ))),
                None => self.commit(&mut batch),
            };
            let took = started.elapsed();
            self.shared.timed(WriterPhase::Commit, took);
            if took > SLOW_PHASE {
                tracing::warn!(?took, ops = batch.len(), "slow bus commit");
            }
            // A flush (clean shutdown) answers once the store itself is durable and the
            // journal empty, or with why it is not.
            let unflushed = match (flush, &result) {
                (true, Ok(_)) => self.checkpoint().err(),
                _ => None,
            };
            match result {
                Ok((afters, results)) => {
                    self.apply(afters);
                    for (op, result) in batch.into_iter().zip(results) {
                        let result = match (&op, &unflushed) {
                            (Op::Flush { .. }, Some(e)) => Err(storage(e)),
                            _ => Ok(result),
                        };
                        reply(op, result);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, ops = batch.len(), "bus commit failed");
                    for op in batch {
                        reply(op, Err(BusError::Storage(e.to_string())));
                    }
                }
            }
            let pending = self.journal.pending();
            let due = pending >= CHECKPOINT_BYTES
                || (pending > 0 && self.journal.age() >= self.cfg.checkpoint_interval);
            if due && !flush {
                let _ = self.checkpoint();
            }
        }
        // Every handle is gone: leave nothing to replay behind when we can.
        let _ = self.checkpoint();
    }

    /// Answers the batch's publishes with an error, and takes them out of it, when the disk
    /// has less room than the reserve plus what they would add. Everything else (routing,
    /// acks, retries, dead letters) goes on into the reserve, so deliveries in progress
    /// finish and give space back.
    fn refuse_publishes_when_full(&mut self, batch: &mut Vec<Op>) {
        let adds: usize = batch
            .iter()
            .filter(|op| matches!(op, Op::Publish(..)))
            .map(Op::weight)
            .sum();
        if adds == 0 || self.check_space(adds as u64) {
            return;
        }
        let why = self.full.clone().unwrap_or_default();
        for op in std::mem::take(batch) {
            match op {
                Op::Publish(_, reply) => {
                    let _ = reply.send(Err(BusError::Storage(why.clone())));
                }
                op => batch.push(op),
            }
        }
    }

    /// Whether the data dir's disk has room for `adds` more bytes above the reserve; keeps
    /// [`Writer::full`] and the bus's health up to date.
    fn check_space(&mut self, adds: u64) -> bool {
        let dir = &self.cfg.data_dir;
        let full = match space::free_bytes(dir) {
            Ok(free) => space::refusal(dir, free, self.cfg.disk_reserve, adds),
            Err(e) => {
                // Nothing to go by: let the write itself find out.
                tracing::warn!(error = %e, "bus free-space check failed");
                None
            }
        };
        if full.is_some() != self.full.is_some() {
            match &full {
                Some(why) => tracing::error!("publishing refused: {why}"),
                None => {
                    tracing::info!(dir = %dir.display(), "disk space is back: publishing resumes")
                }
            }
        }
        // Nothing to tell `/readyz` while the disk stays roomy: the common case, every batch.
        let changed = full.is_some() || self.full.is_some();
        self.full = full;
        if changed {
            self.report_health();
        }
        self.full.is_none()
    }

    /// What `/readyz` says about the bus.
    pub(super) fn report_health(&self) {
        let why = match (&self.broken, &self.full) {
            (Some(broken), _) => Some(format!(
                "the bus store failed a write and is being reopened: {broken}"
            )),
            (None, Some(full)) => Some(full.clone()),
            (None, None) => None,
        };
        *self.shared.health() = why;
    }

    /// Applies the whole batch in one transaction, journalled. Results are per op, in order.
    fn commit(&mut self, batch: &mut [Op]) -> Result<(Vec<After>, Vec<OpResult>), BusError> {
        // A failed store operation leaves redb refusing all later ones: reopen it.
        let begun = self.store.get().and_then(|db| {
            let mut w = db.begin_write().map_err(storage)?;
            // The journal makes the batch durable; the store is made durable at checkpoints.
            w.set_durability(Durability::None).map_err(storage)?;
            Ok(w)
        });
        let w = match begun {
            Ok(w) => w,
            Err(e) => {
                self.broke(&e);
                return Err(e);
            }
        };
        let durable = batch.iter().any(Op::durable);
        let now = now_ms();
        let mut afters = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        let mut heads: HashMap<String, u64> = HashMap::new();
        let staged = (|| {
            let mut t = Tables::open(&w)?;
            let state_heads = self.shared.state().heads.clone();
            let window = self.cfg.dedupe_window.as_millis() as u64;
            let mut seen: HashSet<String> = HashSet::new();
            let mut log = Log {
                t: &mut t,
                seen: &mut seen,
                state_heads: &state_heads,
                now,
                window,
            };
            for op in batch.iter_mut() {
                let result = match op {
                    Op::Publish(items, _) => {
                        let mut added = Vec::new();
                        let out = items
                            .iter_mut()
                            .map(|p| log.append(p, &mut heads, &mut added))
                            .collect::<Result<Vec<_>, _>>()?;
                        afters.push(After::Heads(added));
                        OpResult::Published(out)
                    }
                    Op::Enqueue {
                        cursor,
                        items,
                        visible,
                        ..
                    } => {
                        let mut pushed = Vec::with_capacity(items.len());
                        for it in items.drain(..) {
                            log.t.put_queue(&it.trigger, it.seq, &it.bytes)?;
                            if !*visible {
                                pushed.push((it.trigger, it.seq, it.record));
                            }
                        }
                        // The in-memory cursor moved when the routed entries were sent
                        // (`route_now`); routing may have gone further since.
                        if let Some((bus, through)) = cursor {
                            log.t.set_cursor(bus, *through)?;
                        }
                        afters.push(After::Queued(pushed));
                        OpResult::Unit
                    }
                    Op::Flush { .. } => OpResult::Unit,
                    Op::Ack {
                        trigger,
                        seq,
                        replies,
                        ..
                    } => {
                        let mut added = Vec::new();
                        for r in replies.iter_mut() {
                            log.append(r, &mut heads, &mut added)?;
                        }
                        afters.push(After::Heads(added));
                        log.t.del_queue(trigger, *seq)?;
                        OpResult::Unit
                    }
                    Op::Put {
                        trigger,
                        seq,
                        record,
                        ..
                    } => {
                        log.t.put_queue(trigger, *seq, record)?;
                        OpResult::Unit
                    }
                    Op::Dead {
                        dead,
                        record,
                        publish,
                        ..
                    } => {
                        // Queue positions start at 1, so 0 means "not from the queue" (a reply
                        // stopped by the hop limit). Dead letters get positions of their own.
                        if dead.seq != 0 {
                            log.t.del_queue(&dead.trigger, dead.seq)?;
                        }
                        let dseq = self.shared.take_qseq();
                        log.t.put_dead(&dead.trigger, dseq, record)?;
                        if let Some(p) = publish {
                            let mut added = Vec::new();
                            log.append(p, &mut heads, &mut added)?;
                            afters.push(After::Heads(added));
                        }
                        OpResult::Unit
                    }
                    Op::Redrive { trigger, .. } => {
                        let moved = log.t.take_dead(trigger)?;
                        let mut pushed = Vec::with_capacity(moved.len());
                        for (_, bytes) in &moved {
                            let (_, _, _, _, event) = codec::decode_dead(bytes)?;
                            let seq = self.shared.take_qseq();
                            // A redriven event starts over: fresh attempts and a fresh maxAge.
                            let rec = QueueRecord {
                                attempts: 0,
                                not_before: 0,
                                accepted_ms: now,
                                key: None,
                                last_error: String::new(),
                                event: Arc::new(event),
                            };
                            log.t.put_queue(trigger, seq, &codec::encode_queued(&rec))?;
                            pushed.push((trigger.clone(), seq, rec));
                        }
                        afters.push(After::Queued(pushed));
                        OpResult::Count(moved.len())
                    }
                    Op::Purge { trigger, .. } => OpResult::Count(log.t.take_dead(trigger)?.len()),
                    Op::Trim { .. } => {
                        let mut total = 0;
                        for bus in self.log.buses() {
                            let keep = self.cfg.retention.of(&bus);
                            let cutoff = now.checked_sub(keep.max_age.as_millis() as u64);
                            let through = self.log.expired_through(&bus, cutoff, keep.max_bytes)?;
                            // The oldest events, a prefix of the log: one ranged removal,
                            // applied to the index with the journal record (below).
                            if let Some(through) = through {
                                let first = self.log.first(&bus);
                                total += (through + 1).saturating_sub(first) as usize;
                                log.t.trim_events(&bus, through);
                            }
                        }
                        OpResult::Count(total)
                    }
                };
                results.push(result);
            }
            log.expire_dedupe(MAX_EXPIRED)?;
            // The record carries the queue counter; the store gets it at the checkpoint.
            let next_qseq = self
                .shared
                .next_qseq
                .load(std::sync::atomic::Ordering::Relaxed);
            Ok((std::mem::take(&mut t.changes), next_qseq))
        })();
        let (changes, next_qseq) = match staged {
            Ok(staged) => staged,
            Err(e) => {
                self.broke(&e);
                return Err(e);
            }
        };
        // Journal first: a record that fails to be written aborts the transaction (dropped
        // uncommitted), so the store never holds what the journal does not.
        if !changes.is_empty() {
            let started = std::time::Instant::now();
            let (seg, at) = self.journal.append(next_qseq, &changes, durable)?;
            self.shared.timed(WriterPhase::Journal, started.elapsed());
            // Readable from the log before the heads move (`apply`), which is when routers
            // and readers learn of the new positions.
            if let Err(e) = index_events(&self.log, &changes, seg, at) {
                self.broke(&e);
                return Err(e);
            }
        } else if durable {
            self.journal.sync()?;
        }
        if let Err(e) = w.commit() {
            let e = storage(e);
            self.broke(&e);
            return Err(e);
        }
        Ok((afters, results))
    }

    pub(super) fn broke(&mut self, e: &BusError) {
        tracing::error!(error = %e, "the bus store failed: reopening it");
        self.broken = Some(e.to_string());
        self.healed_at = None;
        self.report_health();
    }

    fn apply(&self, afters: Vec<After>) {
        let (mut published, mut queued) = (false, false);
        {
            let mut s = self.shared.state();
            for a in afters {
                match a {
                    After::Heads(added) => {
                        for (bus, head) in added {
                            s.heads.insert(bus, head);
                            published = true;
                        }
                    }
                    After::Queued(items) => {
                        queued |= !items.is_empty();
                        push_entries(&mut s, items);
                    }
                }
            }
        }
        if published {
            self.shared.wake_published();
        }
        if queued {
            self.shared.wake_queued();
        }
    }
}

enum OpResult {
    Unit,
    Count(usize),
    Published(Vec<Published>),
}

fn reply(op: Op, result: Result<OpResult, BusError>) {
    // A caller that went away no longer needs the answer; the change itself is committed.
    match op {
        Op::Publish(_, r) => {
            let _ = r.send(result.and_then(|o| match o {
                OpResult::Published(p) => Ok(p),
                _ => Err(BusError::Storage("internal: wrong result kind".into())),
            }));
        }
        Op::Redrive { reply, .. } | Op::Purge { reply, .. } | Op::Trim { reply } => {
            let _ = reply.send(result.and_then(|o| match o {
                OpResult::Count(n) => Ok(n),
                _ => Err(BusError::Storage("internal: wrong result kind".into())),
            }));
        }
        Op::Flush { reply }
        | Op::Enqueue { reply, .. }
        | Op::Ack { reply, .. }
        | Op::Put { reply, .. }
        | Op::Dead { reply, .. } => {
            let _ = reply.send(result.map(|_| ()));
        }
    }
}
