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
mod dead_letter;
mod depth;
mod journal;
mod log;
mod port;
mod publish;
mod queue;
mod recovery;
mod space;
mod store;
mod tables;
mod writer;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, mpsc},
    time::Duration,
};

use redb::{Durability, ReadableDatabase, ReadableTable};
use sluice_event::CloudEvent;
use tokio::sync::{Notify, oneshot};

pub use codec::QueueRecord;
use journal::Journal;
#[doc(hidden)]
pub use journal::fuzz_segment;
use log::EventLog;
use queue::entry_of;
use recovery::{index_dedupe_keys, index_events, move_events_to_journal};
use store::Store;
use tables::{CURSORS, HEADS, JOURNAL_COMMIT, LEGACY_EVENTS, NEXT_QSEQ, QUEUE, Tables, storage};
use writer::{Op, Writer};

use super::{BusError, RetentionConfig, TriggerId, queue::Queue};

/// Ops applied per group commit; bounded so one commit stays short.
const MAX_BATCH: usize = 1024;
/// A batch stops taking ops once they add up to this many bytes (one more op may cross it).
const MAX_BATCH_BYTES: usize = 64 << 20;
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
    /// Per bus, events older than the age, or the oldest beyond the size, are removed.
    pub retention: RetentionConfig,
    /// How often the store is made durable. It bounds the replay at start, and the pages the
    /// last durable state references, which redb frees only at the next durable commit. A
    /// checkpoint stalls the writer while redb writes out every page buffered since the last
    /// one and fsyncs them; with event bodies in the store that was p50 ~7 ms every 250 ms in
    /// `sluice bench e2e` (28 ms every 2 s).
    pub checkpoint_interval: Duration,
    /// Journal segment size: the unit in which the bus log's disk space is given back.
    pub segment_bytes: u64,
    /// Read on past damaged journal bytes (reporting them) instead of refusing to open
    /// (`--journal-skip-damaged`; see `journal.rs`).
    pub skip_damaged: bool,
    /// Publishing is refused (503) while the data dir's disk has less free space than this;
    /// routing, acks and dead letters go on into it (`space.rs`).
    pub disk_reserve: u64,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            dedupe_window: Duration::from_secs(300),
            retention: RetentionConfig::default(),
            checkpoint_interval: Duration::from_millis(250),
            segment_bytes: 64 << 20,
            skip_damaged: false,
            disk_reserve: 64 << 20,
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
    /// Gated Triggers' settings and state, in this process only: `sluice dev` is the one
    /// process delivering them (a restart closes the breakers and fills the buckets).
    gates: HashMap<TriggerId, queue::GateState>,
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
    /// Why the bus cannot take publishes now (a full disk, a store being reopened).
    health: Mutex<Option<String>>,
    /// The newest steps of events' journeys (`sluice trace`); in memory, so a restart of
    /// `sluice dev` starts it afresh.
    trace: crate::trace::Recent,
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

/// Steps the embedded bus's trace log keeps: at a few hundred bytes each, a few MB.
const TRACE_STEPS: usize = 20_000;

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

    fn health(&self) -> MutexGuard<'_, Option<String>> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
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

/// The embedded bus. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedBus {
    shared: Arc<Shared>,
    store: Arc<Store>,
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
        let store = Arc::new(Store::open(path)?);
        let db = store.get()?;
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
                let journal = Journal::open(
                    &journal_dir,
                    checkpoint,
                    cfg.segment_bytes,
                    cfg.skip_damaged,
                    |e| {
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
                    },
                )?;
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
            health: Mutex::new(None),
            trace: crate::trace::Recent::new(TRACE_STEPS),
        });
        let (tx, rx) = mpsc::sync_channel(4 * MAX_BATCH);
        let cfg = Arc::new(cfg);
        {
            let (store, shared, cfg, log) =
                (store.clone(), shared.clone(), cfg.clone(), log.clone());
            std::thread::Builder::new()
                .name("sluice-bus-writer".into())
                .spawn(move || {
                    Writer {
                        store,
                        shared,
                        cfg,
                        log,
                        journal,
                        broken: None,
                        healed_at: None,
                        full: None,
                    }
                    .run(rx)
                })
                .map_err(storage)?;
        }
        drop(db);
        Ok(Self {
            shared,
            store,
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

    /// Why the bus cannot take publishes now, if it cannot: the disk is full or the store is
    /// being reopened after a write error. Both clear by themselves (`/readyz`).
    pub fn health(&self) -> Result<(), String> {
        match self.shared.health().clone() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    pub fn config(&self) -> &EmbeddedConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests;
