//! One thread applies every change, a batch per group commit (one journal append, one store
//! transaction), so the order of ops in its channel is the order of commits the rest relies on.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, mpsc},
};

use redb::{Database, Durability};

use super::{
    CHECKPOINT_BYTES, EmbeddedConfig, MAX_BATCH, MAX_BATCH_BYTES, MAX_EXPIRED, QueueRecord, Reply,
    SLOW_PHASE, Shared, WriterPhase, codec,
    journal::Journal,
    log::EventLog,
    publish::{Log, Logged},
    queue::{Queued, push_entries},
    recovery::index_events,
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

pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: Arc<EmbeddedConfig>,
    pub(super) log: Arc<EventLog>,
    pub(super) journal: Journal,
    /// Set when the store and the journal may disagree (a journalled commit the store then
    /// failed to take): every later commit fails rather than build on it. A restart replays
    /// the journal and heals it.
    pub(super) broken: Option<String>,
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
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
            // journal empty.
            if flush && result.is_ok() {
                self.checkpoint();
            }
            match result {
                Ok((afters, results)) => {
                    self.apply(afters);
                    for (op, result) in batch.into_iter().zip(results) {
                        reply(op, Ok(result));
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
                self.checkpoint();
            }
        }
        // Every handle is gone: leave nothing to replay behind when we can.
        self.checkpoint();
    }

    /// Applies the whole batch in one transaction, journalled. Results are per op, in order.
    fn commit(&mut self, batch: &mut [Op]) -> Result<(Vec<After>, Vec<OpResult>), BusError> {
        let mut w = self.db.begin_write().map_err(storage)?;
        // The journal makes the batch durable; the store is made durable at checkpoints.
        w.set_durability(Durability::None).map_err(storage)?;
        let durable = batch.iter().any(Op::durable);
        let now = now_ms();
        let mut afters = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        let mut heads: HashMap<String, u64> = HashMap::new();
        let (changes, next_qseq) = {
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
            (std::mem::take(&mut t.changes), next_qseq)
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
                self.broken = Some(e.to_string());
                return Err(e);
            }
        } else if durable {
            self.journal.sync()?;
        }
        if let Err(e) = w.commit() {
            let e = storage(e);
            self.broken = Some(e.to_string());
            return Err(e);
        }
        Ok((afters, results))
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
