//! The store is durable only at checkpoints and the journal is the truth in between: this brings
//! the store and the log index back in step with it on open, and lets segments go at checkpoints.

use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{
    EmbeddedBus, SLOW_PHASE, WriterPhase, journal,
    log::{EventLog, Loc},
    tables::{
        self, DEDUPE, DEDUPE_AGE, JOURNAL_COMMIT, LEGACY_EVENTS, LogChange, NEXT_QSEQ, Tables,
        storage,
    },
    writer::{Op, Writer},
};
use crate::BusError;

/// A store that cannot be reopened (the disk is still full) is tried again this often.
const HEAL_EVERY: Duration = Duration::from_millis(500);

impl EmbeddedBus {
    /// Applies retention; returns events removed. (The dedupe window is applied with every
    /// commit.)
    pub async fn trim(&self) -> Result<usize, BusError> {
        self.call(|reply| Op::Trim { reply }).await
    }
}

/// Indexes the events (and retention trims) of one journal record whose changes start at
/// `changes_at` of segment `seg`: one index update per run of events, in journal order.
pub(super) fn index_events(
    log: &EventLog,
    changes: &[u8],
    seg: u32,
    changes_at: u64,
) -> Result<(), BusError> {
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
pub(super) fn move_events_to_journal(
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

impl Writer {
    /// Makes the store durable up to the last journalled commit, then seals a full journal
    /// segment and deletes the ones retention has emptied. A failure only leaves more of the
    /// journal to be replayed; one of the store's own leaves it refusing every transaction, so
    /// it is then reopened ([`Writer::heal`]).
    pub(super) fn checkpoint(&mut self) -> Result<(), BusError> {
        if let Some(why) = &self.broken {
            return Err(storage(why));
        }
        if self.journal.pending() == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // The store is about to say it holds every commit, bookkeeping included; replies
        // live only in the journal, so it must be on disk first.
        if let Err(e) = self.journal.sync() {
            tracing::warn!(error = %e, "bus checkpoint failed; the journal is kept");
            return Err(e);
        }
        let stored = (|| {
            let mut w = self.store.get()?.begin_write().map_err(storage)?;
            w.set_durability(Durability::Immediate).map_err(storage)?;
            let mut t = Tables::open(&w)?;
            self.mark_checkpoint(&mut t)?;
            drop(t);
            w.commit().map_err(storage)
        })();
        if let Err(e) = stored {
            self.broke(&e);
            return Err(e);
        }
        let done = (|| {
            if let Some((seg, file)) = self.journal.checkpointed()? {
                self.log.add_file(seg, file);
            }
            self.delete_emptied_segments();
            self.copy_forward()
        })();
        let took = started.elapsed();
        self.shared.timed(WriterPhase::Checkpoint, took);
        match &done {
            Ok(()) if took > SLOW_PHASE => tracing::warn!(?took, "slow bus checkpoint"),
            Ok(()) => tracing::debug!(?took, "bus checkpoint"),
            Err(e) => tracing::warn!(error = %e, "bus checkpoint failed; the journal is kept"),
        }
        done
    }

    /// Records in the store that it holds every journalled commit, and the queue counter
    /// (above every position the store holds: the commits took theirs before this).
    fn mark_checkpoint(&self, t: &mut Tables<'_>) -> Result<(), BusError> {
        t.set_meta(JOURNAL_COMMIT, self.journal.commit())?;
        let next_qseq = self
            .shared
            .next_qseq
            .load(std::sync::atomic::Ordering::Relaxed);
        t.set_meta(NEXT_QSEQ, next_qseq)
    }

    /// Reopens a store that failed a write (its last durable state) and applies the journal's
    /// records after it, as a start would, then makes that durable. Tried at most once per
    /// [`HEAL_EVERY`] while it fails, which it does as long as the disk is full.
    pub(super) fn heal(&mut self) {
        if self.healed_at.is_some_and(|t| t.elapsed() < HEAL_EVERY) {
            return;
        }
        self.healed_at = Some(Instant::now());
        let healed = (|| {
            let db = self.store.reopen()?;
            let mut w = db.begin_write().map_err(storage)?;
            w.set_durability(Durability::Immediate).map_err(storage)?;
            let mut t = Tables::open(&w)?;
            let checkpoint = t.meta(JOURNAL_COMMIT)?.unwrap_or(0);
            let mut replayed = 0;
            self.journal.replay_since(checkpoint, |changes| {
                replayed += 1;
                tables::replay(&mut t, changes)
            })?;
            self.mark_checkpoint(&mut t)?;
            drop(t);
            self.journal.sync()?;
            w.commit().map_err(storage)?;
            if let Some((seg, file)) = self.journal.checkpointed()? {
                self.log.add_file(seg, file);
            }
            Ok::<_, BusError>(replayed)
        })();
        match healed {
            Ok(replayed) => {
                tracing::info!(
                    commits = replayed,
                    "bus store reopened and back in step with its journal"
                );
                self.broken = None;
                self.report_health();
            }
            Err(e) => tracing::warn!(error = %e, "bus store still cannot be reopened"),
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
}

/// Indexes dedupe keys by time for a store written before that index existed (once).
pub(super) fn index_dedupe_keys(w: &redb::WriteTransaction) -> Result<(), BusError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copying_forward_is_for_a_segment_nearly_empty_but_not_empty() {
        assert!(
            !worth_copying_forward(0, 4096),
            "an empty one is simply deleted"
        );
        assert!(worth_copying_forward(1, 4096));
        assert!(worth_copying_forward(512, 4096));
        assert!(!worth_copying_forward(513, 4096));
        assert!(!worth_copying_forward(u64::MAX, 64 << 20));
    }
}
