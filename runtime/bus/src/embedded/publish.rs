//! Events are encoded by their publishers, on every core, so the one writer thread only stores
//! them; dedupe is checked in the writer's transaction, the one place seeing every commit in order.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use redb::ReadableTable;
use sluice_event::CloudEvent;

use super::{
    EmbeddedBus, codec,
    tables::{Tables, storage},
    writer::Op,
};
use crate::{BusError, Publish, Published};

/// An event encoded for the log by its publisher, so that the one writer thread does storage
/// work only and encoding runs on every core.
pub(super) struct Logged {
    bus: String,
    /// The `(source, id)` dedupe key, when the publish is deduplicated.
    dedupe: Option<String>,
    /// [`codec::encode_logged`] with the acceptance time left for the writer to stamp.
    record: Vec<u8>,
}

impl Logged {
    /// Bytes it adds to a journal record, about.
    pub(super) fn weight(&self) -> usize {
        self.record.len() + self.bus.len() + self.dedupe.as_ref().map_or(0, String::len) + 16
    }

    pub(super) fn new(p: &Publish) -> Self {
        Self {
            bus: p.bus.clone(),
            dedupe: p
                .dedupe
                .then(|| format!("{}\0{}\0{}", p.bus, p.event.source, p.event.id)),
            record: codec::encode_logged(0, &p.event.to_json()),
        }
    }
}

impl EmbeddedBus {
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

    /// Resolves when something is appended to any bus.
    pub fn published(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.published.notified()
    }

    /// Changes whenever something is appended to a bus.
    pub fn published_version(&self) -> u64 {
        self.shared
            .published_version
            .load(std::sync::atomic::Ordering::Acquire)
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
}

/// The publish side of one transaction.
pub(super) struct Log<'a, 't> {
    pub(super) t: &'a mut Tables<'t>,
    /// Dedupe keys already used in this transaction.
    pub(super) seen: &'a mut HashSet<String>,
    pub(super) state_heads: &'a HashMap<String, u64>,
    pub(super) now: u64,
    pub(super) window: u64,
}

impl Log<'_, '_> {
    pub(super) fn append(
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
    pub(super) fn expire_dedupe(&mut self, max: usize) -> Result<(), BusError> {
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
