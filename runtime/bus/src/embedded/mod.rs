//! The embedded bus, under `--data-dir`: a journal of segment files (`journal.rs`) that is also
//! the bus log, and one redb file with trigger queues, dead letters, cursors and dedupe keys.
//! One writer thread applies all changes in group commits: each commit's changes go to the
//! journal in one append, which is fsync'd before a publish is acknowledged, while queue
//! bookkeeping (routing, ack, retry) is appended without fsync, since losing it in a crash
//! only means redelivery. Bus events are read back from the journal (`log.rs` indexes them);
//! the redb store commits without fsync and is made durable at checkpoints; on open, the
//! journal's records after the last checkpoint are applied to it again. Leases live in
//! memory: after a crash every queued event is simply due again.

mod codec;
mod journal;
mod log;
mod port;
mod tables;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, mpsc},
    time::Duration,
};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use sluice_event::CloudEvent;
use tokio::sync::{Notify, oneshot};

pub use codec::QueueRecord;
use journal::Journal;
use log::{EventLog, Loc};
use tables::{
    CURSORS, DEAD, DEDUPE, DEDUPE_AGE, HEADS, JOURNAL_COMMIT, LEGACY_EVENTS, LogChange, NEXT_QSEQ,
    QUEUE, Tables, storage,
};

use super::{
    BusError, DeadLetter, Delivery, Depth, Enqueue, Publish, Published, QueueConfig, TriggerId,
    now_ms,
    queue::{Queue, QueueEntry},
};

/// Ops applied per group commit; bounded so one commit stays short.
const MAX_BATCH: usize = 1024;
/// Dedupe keys expired per commit at most. Steady state expires what arrived one window
/// ago; the bound keeps the first commits after a long pause short.
const MAX_EXPIRED: usize = 4096;
/// A checkpoint (a durable redb commit) is due after [`EmbeddedConfig::checkpoint_interval`]
/// or this many journal bytes.
const CHECKPOINT_BYTES: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// (source, id) pairs seen within this window are dropped at publish.
    pub dedupe_window: Duration,
    /// Bus events older than this are removed.
    pub retention_age: Duration,
    /// Per bus, the oldest events are removed beyond this many bytes.
    pub retention_bytes: u64,
    /// How often the store is made durable. It bounds the replay at start, and the pages the
    /// last durable state references, which redb frees only at the next durable commit. A
    /// checkpoint stalls the writer while redb writes out every page buffered since the last
    /// one and fsyncs them; with event bodies in the store that was p50 ~7 ms every 250 ms in
    /// `sluice bench e2e` (28 ms every 2 s).
    pub checkpoint_interval: Duration,
    /// Journal segment size: the unit in which the bus log's disk space is given back.
    pub segment_bytes: u64,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            dedupe_window: Duration::from_secs(300),
            retention_age: Duration::from_secs(24 * 3600),
            retention_bytes: 1 << 30,
            checkpoint_interval: Duration::from_millis(250),
            segment_bytes: 64 << 20,
        }
    }
}

/// What a queue entry carries in memory.
#[derive(Clone, Debug)]
struct Payload {
    event: Arc<CloudEvent>,
    accepted_ms: u64,
}

#[derive(Default)]
struct State {
    heads: HashMap<String, u64>,
    cursors: HashMap<String, u64>,
    queues: HashMap<TriggerId, Queue<Payload>>,
    leases: HashMap<TriggerId, Duration>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes routers: something was appended.
    published: Notify,
    /// Wakes workers: something became leasable.
    queued: Notify,
    /// Bumped with every `queued` / `published` wake-up, so a waiter that read it before
    /// looking cannot miss a wake-up that came in between.
    queued_version: std::sync::atomic::AtomicU64,
    published_version: std::sync::atomic::AtomicU64,
    /// The next queue / dead-letter position. Taken when an entry is made, so a routed entry
    /// can be leased before its commit; carried in every journal record and stored in `META`
    /// at each checkpoint, always above every position written before it.
    next_qseq: std::sync::atomic::AtomicU64,
    times: Mutex<WriterTimes>,
    /// Told every phase's time as well, for `/metrics` ([`EmbeddedBus::observe_writer`]).
    observer: std::sync::OnceLock<WriterObserver>,
}

/// A phase of the writer thread's work, as [`WriterTimes`] splits it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WriterPhase {
    Commit,
    Journal,
    Checkpoint,
}

impl WriterPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Journal => "journal",
            Self::Checkpoint => "checkpoint",
        }
    }
}

pub type WriterObserver = Arc<dyn Fn(WriterPhase, Duration) + Send + Sync>;

/// Time the writer thread spent in one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseTime {
    pub count: u64,
    pub total: Duration,
    pub max: Duration,
}

impl PhaseTime {
    fn add(&mut self, took: Duration) {
        self.count += 1;
        self.total += took;
        self.max = self.max.max(took);
    }
}

/// Where the writer thread's time went since the last [`EmbeddedBus::take_writer_times`]:
/// every producer's publish waits behind the commit in progress, so a slow publish is one of
/// these phases being slow.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriterTimes {
    /// Whole group commits (the batch applied, journalled, the store committed).
    pub commit: PhaseTime,
    /// Of which the journal append (with its `fdatasync` when a publish is in the batch).
    pub journal: PhaseTime,
    /// Checkpoints: the store made durable, segments sealed and deleted.
    pub checkpoint: PhaseTime,
}

/// A writer phase slower than this is logged: it held up every publish behind it.
const SLOW_PHASE: Duration = Duration::from_millis(100);

impl Shared {
    fn wake_queued(&self) {
        self.queued_version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.queued.notify_waiters();
    }

    fn wake_published(&self) {
        self.published_version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.published.notify_waiters();
    }

    fn take_qseq(&self) -> u64 {
        self.next_qseq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later
        // callers could not cope with, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn times(&self) -> MutexGuard<'_, WriterTimes> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `took` against `phase`.
    fn timed(&self, phase: WriterPhase, took: Duration) {
        {
            let mut t = self.times();
            match phase {
                WriterPhase::Commit => t.commit.add(took),
                WriterPhase::Journal => t.journal.add(took),
                WriterPhase::Checkpoint => t.checkpoint.add(took),
            }
        }
        if let Some(observe) = self.observer.get() {
            observe(phase, took);
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, BusError>>;

/// An event encoded for the log by its publisher, so that the one writer thread does storage
/// work only and encoding runs on every core.
struct Logged {
    bus: String,
    /// The `(source, id)` dedupe key, when the publish is deduplicated.
    dedupe: Option<String>,
    /// [`codec::encode_logged`] with the acceptance time left for the writer to stamp.
    record: Vec<u8>,
}

impl Logged {
    fn new(p: &Publish) -> Self {
        Self {
            bus: p.bus.clone(),
            dedupe: p
                .dedupe
                .then(|| format!("{}\0{}\0{}", p.bus, p.event.source, p.event.id)),
            record: codec::encode_logged(0, &p.event.to_json()),
        }
    }
}

/// A queue entry encoded by its producer (see [`Logged`]).
struct Queued {
    trigger: TriggerId,
    seq: u64,
    record: QueueRecord,
    bytes: Vec<u8>,
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

enum Op {
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

/// The embedded bus. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedBus {
    shared: Arc<Shared>,
    db: Arc<Database>,
    log: Arc<EventLog>,
    ops: mpsc::SyncSender<Op>,
    cfg: Arc<EmbeddedConfig>,
}

impl EmbeddedBus {
    /// Opens (or creates) the store under `cfg.data_dir` and rebuilds queues from it.
    pub fn open(cfg: EmbeddedConfig) -> Result<Self, BusError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| storage(format!("creating {}: {e}", cfg.data_dir.display())))?;
        let path = cfg.data_dir.join("bus.redb");
        let db = Database::create(&path)
            .map_err(|e| storage(format!("opening {}: {e}", path.display())))?;
        let db = Arc::new(db);
        let mut state = State::default();
        let journal_dir = cfg.data_dir.join("journal");
        if !journal_dir.exists() {
            move_events_to_journal(&db, &cfg.data_dir, &journal_dir)?;
        }
        let log = Arc::new(EventLog::default());
        let (next_qseq, journal) = {
            let mut w = db.begin_write().map_err(storage)?;
            w.set_durability(Durability::Immediate).map_err(storage)?;
            // Moved into the journal (above), by this open or one that crashed before this.
            w.delete_table(LEGACY_EVENTS).map_err(storage)?;
            let (journal, next_qseq) = {
                let mut t = Tables::open(&w)?;
                let checkpoint = t.meta(JOURNAL_COMMIT)?.unwrap_or(0);
                let mut next_qseq = t.meta(NEXT_QSEQ)?.unwrap_or(1);
                let mut replayed = 0;
                // Every record indexes its events; the commits after the last checkpoint
                // are also applied to the store again, in order, and made durable below.
                let journal = Journal::open(&journal_dir, checkpoint, cfg.segment_bytes, |e| {
                    index_events(&log, e.changes, e.seg, e.changes_at)?;
                    if e.commit > checkpoint {
                        tables::replay(&mut t, e.changes).map_err(|err| {
                            storage(format!(
                                "replaying commit {} of {}: {err}",
                                e.commit,
                                journal_dir.display()
                            ))
                        })?;
                        next_qseq = next_qseq.max(e.next_qseq);
                        replayed += 1;
                    }
                    Ok(())
                })?;
                if replayed > 0 {
                    tracing::info!(commits = replayed, "bus journal replayed");
                }
                t.set_meta(NEXT_QSEQ, next_qseq)?;
                t.set_meta(JOURNAL_COMMIT, journal.commit())?;
                (journal, next_qseq)
            };
            index_dedupe_keys(&w)?;
            // What was read back may not have been synced before a crash; the store is about
            // to say it holds it.
            journal.sync()?;
            w.commit().map_err(storage)?;
            let mut journal = journal;
            for (seg, file) in journal.files()? {
                log.add_file(seg, file);
            }
            if let Some((seg, file)) = journal.checkpointed()? {
                log.add_file(seg, file);
            }
            let r = db.begin_read().map_err(storage)?;
            for (name, map) in [(HEADS, &mut state.heads), (CURSORS, &mut state.cursors)] {
                let t = r.open_table(name).map_err(storage)?;
                for row in t.iter().map_err(storage)? {
                    let (k, v) = row.map_err(storage)?;
                    map.insert(k.value().to_owned(), v.value());
                }
            }
            let queue = r.open_table(QUEUE).map_err(storage)?;
            for row in queue.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let (trigger, seq) = k.value();
                let rec = codec::decode_queued(v.value())?;
                let q = state
                    .queues
                    .entry(trigger.to_owned())
                    .or_insert_with(|| Queue::new(100));
                q.push(seq, entry_of(rec));
            }
            (next_qseq, journal)
        };
        let shared = Arc::new(Shared {
            next_qseq: next_qseq.into(),
            state: Mutex::new(state),
            published: Notify::new(),
            queued: Notify::new(),
            queued_version: Default::default(),
            published_version: Default::default(),
            times: Mutex::default(),
            observer: std::sync::OnceLock::new(),
        });
        let (tx, rx) = mpsc::sync_channel(4 * MAX_BATCH);
        let cfg = Arc::new(cfg);
        {
            let (db, shared, cfg, log) = (db.clone(), shared.clone(), cfg.clone(), log.clone());
            std::thread::Builder::new()
                .name("sluice-bus-writer".into())
                .spawn(move || {
                    Writer {
                        db,
                        shared,
                        cfg,
                        log,
                        journal,
                        broken: None,
                    }
                    .run(rx)
                })
                .map_err(storage)?;
        }
        Ok(Self {
            shared,
            db,
            log,
            ops: tx,
            cfg,
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, BusError> {
        self.send(make).await?.await.map_err(|_| BusError::Closed)?
    }

    /// Hands an op to the writer; resolves once it is in the writer's channel (the order
    /// of ops is the order of commits), to the receiver of its result.
    async fn send<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Op,
    ) -> Result<oneshot::Receiver<Result<T, BusError>>, BusError> {
        let (tx, rx) = oneshot::channel();
        let op = make(tx);
        let ops = self.ops.clone();
        // The channel is bounded: a full one means the disk is behind, so callers wait
        // (backpressure) on a blocking thread rather than stall the async runtime.
        match ops.try_send(op) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(op)) => tokio::task::spawn_blocking(move || ops.send(op))
                .await
                .map_err(|_| BusError::Closed)?
                .map_err(|_| BusError::Closed)?,
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(BusError::Closed),
        }
        Ok(rx)
    }

    /// Appends events durably (fsync'd before this returns).
    pub async fn publish(&self, items: Vec<Publish>) -> Result<Vec<Published>, BusError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let items = items.iter().map(Logged::new).collect();
        self.call(|r| Op::Publish(items, r)).await
    }

    /// Up to `max` events of `bus` after position `after`, in order.
    pub fn read(
        &self,
        bus: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<(u64, u64, CloudEvent)>, BusError> {
        self.read_raw(bus, after, max)?
            .into_iter()
            .map(|(pos, accepted, json)| {
                codec::decode_event(&json).map(|event| (pos, accepted, event))
            })
            .collect()
    }

    /// Like [`Self::read`], with each event's JSON as stored, undecoded: (position,
    /// accepted_ms, JSON).
    pub fn read_raw(
        &self,
        bus: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<(u64, u64, Vec<u8>)>, BusError> {
        self.log.read(bus, after, max)
    }

    /// The last position written on `bus` (0 when empty).
    pub fn head(&self, bus: &str) -> u64 {
        self.shared.state().heads.get(bus).copied().unwrap_or(0)
    }

    /// Every bus that has ever had an event.
    pub fn buses(&self) -> Vec<String> {
        let mut b: Vec<String> = self.shared.state().heads.keys().cloned().collect();
        b.sort();
        b
    }

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
        drop(s);
        self.shared.wake_queued();
    }

    /// Leases up to `max` due events of a trigger.
    pub fn lease(&self, trigger: &str, max: usize) -> Vec<Delivery> {
        let now = now_ms();
        let mut s = self.shared.state();
        let lease = s
            .leases
            .get(trigger)
            .copied()
            .unwrap_or(Duration::from_secs(30));
        let Some(q) = s.queues.get_mut(trigger) else {
            return Vec::new();
        };
        q.lease(now, now + lease.as_millis() as u64, max)
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

    /// Earliest time (ms) an entry of this trigger becomes due, when none is due now.
    pub fn next_due(&self, trigger: &str) -> Option<u64> {
        self.shared
            .state()
            .queues
            .get(trigger)
            .and_then(Queue::next_due)
    }

    /// The delivery succeeded: its replies are appended and its entry removed in one commit,
    /// without fsync. A crash that loses that commit loses both, and the redelivery produces
    /// the replies again; a commit that fails leaves the event to come back after a restart.
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
        self.settle(&d.trigger, op, |q| {
            q.remove(d.seq);
        })
        .await
    }

    /// Hands a delivery's outcome to the writer, then applies it to the trigger's in-memory
    /// queue (which may let the next event of its ordering key be leased), then waits for the
    /// commit. In that order, whatever the next event's delivery writes is a later commit, so a
    /// crash cannot keep the next event's ack (or its replies, ahead of these) while losing
    /// this one.
    async fn settle(
        &self,
        trigger: &str,
        make: impl FnOnce(Reply<()>) -> Op,
        change: impl FnOnce(&mut Queue<Payload>),
    ) -> Result<(), BusError> {
        let rx = self.send(make).await?;
        if let Some(q) = self.shared.state().queues.get_mut(trigger) {
            change(q);
        }
        self.shared.wake_queued();
        rx.await.map_err(|_| BusError::Closed)?
    }

    /// The delivery failed and may be retried at `at_ms`.
    pub async fn retry(&self, d: &Delivery, at_ms: u64, error: &str) -> Result<(), BusError> {
        let record = {
            let s = self.shared.state();
            let Some(e) = s.queues.get(&d.trigger).and_then(|q| q.get(d.seq)) else {
                return Ok(());
            };
            QueueRecord {
                attempts: e.attempts,
                not_before: at_ms,
                accepted_ms: e.payload.accepted_ms,
                key: e.key.clone(),
                last_error: error.to_owned(),
                event: e.payload.event.clone(),
            }
        };
        let (trigger, seq) = (d.trigger.clone(), d.seq);
        let record = codec::encode_queued(&record);
        let op = |reply| Op::Put {
            trigger,
            seq,
            record,
            reply,
        };
        // Released after the op is queued: a retry due at once could otherwise be leased,
        // handled and acked ahead of this op, which would then store the entry again.
        self.settle(&d.trigger, op, |q| q.release(d.seq, at_ms))
            .await
    }

    /// Gives the delivery up (or, with `seq` 0, an event that never was on the queue, such as
    /// a reply stopped by the hop limit): records the dead letter and, when the trigger has a
    /// dead-letter bus, publishes it there as a CloudEvent, in one durable commit.
    pub async fn dead_letter(
        &self,
        dead: DeadLetter,
        to_bus: Option<&str>,
    ) -> Result<(), BusError> {
        let (trigger, seq) = (dead.trigger.clone(), dead.seq);
        let publish = to_bus.map(|bus| {
            Box::new(Logged::new(&Publish {
                bus: bus.to_owned(),
                event: dead.to_event(),
                dedupe: false,
            }))
        });
        let record = codec::encode_dead(
            &dead.reason,
            dead.attempts,
            dead.at_ms,
            &dead.last_error,
            &dead.event,
        );
        let op = |reply| Op::Dead {
            dead: Box::new(dead),
            record,
            publish,
            reply,
        };
        self.settle(&trigger, op, |q| {
            q.remove(seq);
        })
        .await
    }

    /// Dead letters kept for a trigger, oldest first.
    pub fn dead_letters(&self, trigger: &str) -> Result<Vec<DeadLetter>, BusError> {
        let r = self.db.begin_read().map_err(storage)?;
        let t = r.open_table(DEAD).map_err(storage)?;
        let mut out = Vec::new();
        for row in t
            .range((trigger, 0)..=(trigger, u64::MAX))
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let (reason, attempts, at_ms, last_error, event) = codec::decode_dead(v.value())?;
            out.push(DeadLetter {
                trigger: trigger.to_owned(),
                seq: k.value().1,
                reason,
                attempts,
                last_error,
                at_ms,
                event,
            });
        }
        Ok(out)
    }

    /// Puts a trigger's dead letters back on its queue with fresh attempts.
    pub async fn redrive(&self, trigger: &str) -> Result<usize, BusError> {
        let trigger = trigger.to_owned();
        self.call(|reply| Op::Redrive { trigger, reply }).await
    }

    /// Deletes a trigger's dead letters.
    pub async fn purge(&self, trigger: &str) -> Result<usize, BusError> {
        let trigger = trigger.to_owned();
        self.call(|reply| Op::Purge { trigger, reply }).await
    }

    /// Applies retention; returns events removed. (The dedupe window is applied with every
    /// commit.)
    pub async fn trim(&self) -> Result<usize, BusError> {
        self.call(|reply| Op::Trim { reply }).await
    }

    /// The writer's phase times since the last call, and starts counting afresh.
    pub fn take_writer_times(&self) -> WriterTimes {
        std::mem::take(&mut *self.shared.times())
    }

    /// Tells `observe` the time of every writer phase from now on (one observer per bus;
    /// a second is ignored).
    pub fn observe_writer(&self, observe: WriterObserver) {
        let _ = self.shared.observer.set(observe);
    }

    /// Makes all bookkeeping durable; call before a clean exit.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.call(|reply| Op::Flush { reply }).await
    }

    /// Hands expired leases out again; returns how many.
    pub fn expire_leases(&self) -> usize {
        let now = now_ms();
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

    pub fn depth(&self, trigger: &str) -> Depth {
        let s = self.shared.state();
        s.queues
            .get(trigger)
            .map_or_else(Depth::default, |q| Depth {
                queued: q.queued() as u64,
                inflight: q.inflight() as u64,
            })
    }

    /// Resolves when something is appended to any bus.
    pub fn published(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.published.notified()
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

    /// Changes whenever something is appended to a bus.
    pub fn published_version(&self) -> u64 {
        self.shared
            .published_version
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
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(1)));
        let wait = due.map_or(max, |d| d.min(max));
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// Waits until [`Self::published_version`] differs from `since` or `max` passes.
    pub async fn wait_published(&self, since: u64, max: Duration) {
        let notified = self.published();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.published_version() != since {
            return;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(max) => {}
        }
    }

    pub fn config(&self) -> &EmbeddedConfig {
        &self.cfg
    }
}

fn push_entries(s: &mut State, items: Vec<(TriggerId, u64, QueueRecord)>) {
    for (trigger, seq, rec) in items {
        s.queues
            .entry(trigger)
            .or_insert_with(|| Queue::new(100))
            .push(seq, entry_of(rec));
    }
}

fn entry_of(rec: QueueRecord) -> QueueEntry<Payload> {
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

/// Indexes the events (and retention trims) of one journal record whose changes start at
/// `changes_at` of segment `seg`: one index update per run of events, in journal order.
fn index_events(log: &EventLog, changes: &[u8], seg: u32, changes_at: u64) -> Result<(), BusError> {
    let (mut puts, mut moved) = (Vec::new(), Vec::new());
    for c in tables::log_changes(changes)? {
        match c {
            LogChange::Put {
                bus,
                pos,
                at,
                len,
                moved: m,
            } => {
                let loc = Loc {
                    seg,
                    len: u32::try_from(len)
                        .map_err(|_| storage(format!("bus {bus}: event {pos} is over 4 GiB")))?,
                    off: changes_at + at as u64,
                };
                if m { &mut moved } else { &mut puts }.push((bus, pos, loc));
            }
            LogChange::Trim { bus, through } => {
                if !puts.is_empty() {
                    log.put_many(puts.drain(..));
                }
                log.trim(bus, through);
            }
        }
    }
    if !puts.is_empty() {
        log.put_many(puts);
    }
    // A record of moves holds nothing else (`Writer::copy_forward`).
    if !moved.is_empty() {
        log.put_moved(moved);
    }
    Ok(())
}

/// Whether the oldest sealed segment's retained events are few enough to copy forward so
/// that it can go: at most an eighth of a segment, so copying costs at most an eighth more
/// writing, and only when the rest of the segment is gone.
fn worth_copying_forward(live_bytes: u64, segment_bytes: u64) -> bool {
    live_bytes > 0 && live_bytes.saturating_mul(8) <= segment_bytes
}

/// Moves the bus events of a store from before the journal was the bus log into a first
/// journal segment, with the older single-file journal (same record format) after it. The
/// new directory appears by one rename, so a crash leaves either the old layout or the new;
/// the events are removed from the store by the open that follows.
fn move_events_to_journal(
    db: &Database,
    data_dir: &std::path::Path,
    journal_dir: &std::path::Path,
) -> Result<(), BusError> {
    let r = db.begin_read().map_err(storage)?;
    let mut changes = Vec::new();
    let mut checkpoint = 0;
    let mut next_qseq = 1;
    if let Ok(events) = r.open_table(LEGACY_EVENTS) {
        for row in events.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let (bus, pos) = k.value();
            tables::note_event(&mut changes, bus, pos, v.value());
        }
    }
    if let Ok(meta) = r.open_table(tables::META) {
        let get = |key| -> Result<Option<u64>, BusError> {
            Ok(meta.get(key).map_err(storage)?.map(|v| v.value()))
        };
        checkpoint = get(JOURNAL_COMMIT)?.unwrap_or(0);
        next_qseq = get(NEXT_QSEQ)?.unwrap_or(1);
    }
    drop(r);
    let legacy_journal = data_dir.join("bus.journal");
    if changes.is_empty() && !legacy_journal.exists() {
        return Ok(());
    }
    let tmp = data_dir.join("journal.new");
    let fail = |what: &str, e: std::io::Error| storage(format!("{what} {}: {e}", tmp.display()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| fail("removing", e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| fail("creating", e))?;
    // Numbered as the checkpoint: indexed for its events, never applied to the store again.
    journal::write_segment(
        &journal::segment_path(&tmp, 0),
        checkpoint,
        next_qseq,
        &changes,
    )?;
    if legacy_journal.exists() {
        std::fs::rename(&legacy_journal, journal::segment_path(&tmp, 1))
            .map_err(|e| fail("moving the old journal into", e))?;
    }
    journal::sync_dir(&tmp)?;
    std::fs::rename(&tmp, journal_dir).map_err(|e| fail("renaming", e))?;
    journal::sync_dir(data_dir)?;
    tracing::info!(dir = %journal_dir.display(), "bus events moved into the journal");
    Ok(())
}

/// What to do to the in-memory state once a commit is on disk.
enum After {
    Heads(Vec<(String, u64)>),
    Queued(Vec<(TriggerId, u64, QueueRecord)>),
}

struct Writer {
    db: Arc<Database>,
    shared: Arc<Shared>,
    cfg: Arc<EmbeddedConfig>,
    log: Arc<EventLog>,
    journal: Journal,
    /// Set when the store and the journal may disagree (a journalled commit the store then
    /// failed to take): every later commit fails rather than build on it. A restart replays
    /// the journal and heals it.
    broken: Option<String>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
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

    /// Makes the store durable up to the last journalled commit, then seals a full journal
    /// segment and deletes the ones retention has emptied. A failure only leaves more of the
    /// journal to be replayed on the next open.
    fn checkpoint(&mut self) {
        if self.broken.is_some() || self.journal.pending() == 0 {
            return;
        }
        let started = std::time::Instant::now();
        let done = (|| {
            // The store is about to say it holds every commit, bookkeeping included; replies
            // live only in the journal, so it must be on disk first.
            self.journal.sync()?;
            let mut w = self.db.begin_write().map_err(storage)?;
            w.set_durability(Durability::Immediate).map_err(storage)?;
            let mut t = Tables::open(&w)?;
            t.set_meta(JOURNAL_COMMIT, self.journal.commit())?;
            // Above every position the store holds: the commits took theirs before this.
            let next_qseq = self
                .shared
                .next_qseq
                .load(std::sync::atomic::Ordering::Relaxed);
            t.set_meta(NEXT_QSEQ, next_qseq)?;
            drop(t);
            w.commit().map_err(storage)?;
            if let Some((seg, file)) = self.journal.checkpointed()? {
                self.log.add_file(seg, file);
            }
            self.delete_emptied_segments();
            self.copy_forward()
        })();
        let took = started.elapsed();
        self.shared.timed(WriterPhase::Checkpoint, took);
        match done {
            Ok(()) if took > SLOW_PHASE => tracing::warn!(?took, "slow bus checkpoint"),
            Ok(()) => tracing::debug!(?took, "bus checkpoint"),
            Err(e) => tracing::warn!(error = %e, "bus checkpoint failed; the journal is kept"),
        }
    }

    /// Deletes the sealed segments older than every retained event.
    fn delete_emptied_segments(&mut self) {
        for seg in self.journal.delete_before(self.log.oldest_segment()) {
            self.log.remove_file(seg);
        }
    }

    /// Copies the few events still retained in the oldest sealed segment into the active one
    /// and deletes it, when that is cheap (`worth_copying_forward`): segments are shared by
    /// all buses, so without this one old event of a quiet bus would keep a whole segment
    /// until its own retention age. The copy is synced before the segment goes.
    fn copy_forward(&mut self) -> Result<(), BusError> {
        let Some(seg) = self.journal.oldest_sealed() else {
            return Ok(());
        };
        if !worth_copying_forward(self.log.live_bytes(seg), self.cfg.segment_bytes) {
            return Ok(());
        }
        let events = self.log.located_in(seg)?;
        let mut changes = Vec::new();
        for (bus, pos, record) in &events {
            tables::note_moved(&mut changes, bus, *pos, record);
        }
        let next_qseq = self
            .shared
            .next_qseq
            .load(std::sync::atomic::Ordering::Relaxed);
        let (active, at) = self.journal.append(next_qseq, &changes, true)?;
        index_events(&self.log, &changes, active, at)?;
        self.delete_emptied_segments();
        tracing::debug!(
            segment = seg,
            events = events.len(),
            "bus log events copied forward"
        );
        Ok(())
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
                        let max_age = self.cfg.retention_age.as_millis() as u64;
                        let cutoff = now.checked_sub(max_age);
                        let mut total = 0;
                        for bus in self.log.buses() {
                            let through =
                                self.log
                                    .expired_through(&bus, cutoff, self.cfg.retention_bytes)?;
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

/// The publish side of one transaction.
struct Log<'a, 't> {
    t: &'a mut Tables<'t>,
    /// Dedupe keys already used in this transaction.
    seen: &'a mut HashSet<String>,
    state_heads: &'a HashMap<String, u64>,
    now: u64,
    window: u64,
}

impl Log<'_, '_> {
    fn append(
        &mut self,
        p: &mut Logged,
        heads: &mut HashMap<String, u64>,
        added: &mut Vec<(String, u64)>,
    ) -> Result<Published, BusError> {
        if let Some(key) = &p.dedupe {
            let recent = self
                .t
                .dedupe
                .get(key.as_str())
                .map_err(storage)?
                .is_some_and(|v| self.now.saturating_sub(v.value()) < self.window);
            if recent || !self.seen.insert(key.to_owned()) {
                return Ok(Published::Duplicate);
            }
            self.t.put_dedupe(key, self.now)?;
        }
        let head = heads
            .entry(p.bus.clone())
            .or_insert_with(|| self.state_heads.get(&p.bus).copied().unwrap_or(0));
        *head += 1;
        codec::stamp_logged(&mut p.record, self.now);
        self.t.put_event(&p.bus, *head, &p.record)?;
        added.push((p.bus.clone(), *head));
        Ok(Published::Appended(*head))
    }

    /// Forgets up to `max` dedupe keys recorded a whole window ago or earlier. A key
    /// published again since then has a newer time in `dedupe` and stays. Not journalled:
    /// after a crash, the checkpoint's old keys are still indexed by age and simply expire
    /// again with the next commits.
    fn expire_dedupe(&mut self, max: usize) -> Result<(), BusError> {
        let Some(cutoff) = self.now.checked_sub(self.window) else {
            return Ok(());
        };
        let doomed: Vec<(u64, String)> = self
            .t
            .dedupe_age
            .range(..(cutoff.saturating_add(1), ""))
            .map_err(storage)?
            .take(max)
            .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect::<Result<_, _>>()
            .map_err(storage)?;
        for (at, key) in doomed {
            self.t
                .dedupe_age
                .remove((at, key.as_str()))
                .map_err(storage)?;
            let current = self.t.dedupe.get(key.as_str()).map_err(storage)?;
            if current.is_some_and(|v| v.value() == at) {
                self.t.dedupe.remove(key.as_str()).map_err(storage)?;
            }
        }
        Ok(())
    }
}

/// Indexes dedupe keys by time for a store written before that index existed (once).
fn index_dedupe_keys(w: &redb::WriteTransaction) -> Result<(), BusError> {
    let mut age = w.open_table(DEDUPE_AGE).map_err(storage)?;
    if !age.is_empty().map_err(storage)? {
        return Ok(());
    }
    let dedupe = w.open_table(DEDUPE).map_err(storage)?;
    for row in dedupe.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        age.insert((v.value(), k.value()), ()).map_err(storage)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests;
