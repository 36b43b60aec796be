//! The bus log's index: where each retained event of each bus lies in the journal's
//! segments. Event bodies are written once, in the journal record of the commit that
//! appended them, and read back from there with `pread`; this index (16 bytes per event) is
//! rebuilt from the segments on open.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fs::File,
    os::unix::fs::FileExt,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use super::codec;
use crate::BusError;

/// Where an event's stored record (acceptance time, then JSON) lies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loc {
    pub seg: u32,
    pub len: u32,
    pub off: u64,
}

impl Loc {
    /// A position whose event was in damaged journal bytes skipped on open
    /// (`--journal-skip-damaged`): it keeps the positions after it where they were, and
    /// readers pass over it.
    const HOLE: Loc = Loc {
        seg: u32::MAX,
        len: 0,
        off: 0,
    };

    fn is_hole(&self) -> bool {
        self.seg == u32::MAX
    }
}

/// The most holes a gap is filled with; a wider one restarts the index instead.
const MAX_HOLES: u64 = 1 << 20;

/// The retained events in one segment: a segment with none left can be deleted.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct SegUse {
    events: u64,
    bytes: u64,
}

/// Retained events per segment, kept in step with every index change.
#[derive(Default)]
struct Segs(BTreeMap<u32, SegUse>);

impl Segs {
    fn add(&mut self, loc: Loc) {
        if loc.is_hole() {
            return;
        }
        let u = self.0.entry(loc.seg).or_default();
        u.events += 1;
        u.bytes += loc.len as u64;
    }

    fn remove(&mut self, loc: Loc) {
        if let Some(u) = self.0.get_mut(&loc.seg) {
            u.events = u.events.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(loc.len as u64);
            if u.events == 0 {
                self.0.remove(&loc.seg);
            }
        }
    }
}

/// One bus's retained events: positions `first..first + locs.len()`, dense (a bus's
/// positions are handed out one by one). In position order, which is segment order except
/// for events copied forward ([`EventLog::put_moved`]).
#[derive(Default)]
struct BusIndex {
    first: u64,
    locs: VecDeque<Loc>,
    bytes: u64,
}

impl BusIndex {
    fn clear(&mut self, segs: &mut Segs) {
        for loc in self.locs.drain(..) {
            segs.remove(loc);
        }
        self.bytes = 0;
    }

    /// Points `pos`, retained, at `loc` instead.
    fn replace(&mut self, pos: u64, loc: Loc, segs: &mut Segs) {
        let old = std::mem::replace(&mut self.locs[(pos - self.first) as usize], loc);
        self.bytes = self.bytes - old.len as u64 + loc.len as u64;
        segs.remove(old);
        segs.add(loc);
    }

    /// Records `pos`; the same position again (a record read twice) replaces it, and a
    /// position below the retained ones (trimmed) is ignored. Positions skipped (their
    /// record was damaged) become holes.
    fn put(&mut self, pos: u64, loc: Loc, segs: &mut Segs) {
        let end = self.first + self.locs.len() as u64;
        if !self.locs.is_empty() && pos > end && pos - end <= MAX_HOLES {
            tracing::warn!(
                from = end,
                to = pos - 1,
                "bus log positions missing (their journal record was skipped)"
            );
            self.locs.extend((end..pos).map(|_| Loc::HOLE));
        } else if self.locs.is_empty() || pos > end {
            if pos > end && !self.locs.is_empty() {
                // Start over from here rather than number events wrongly.
                tracing::warn!(
                    pos,
                    expected = end,
                    "bus log index has a gap; restarting it"
                );
            }
            self.clear(segs);
            self.first = pos;
        } else if pos < self.first {
            return;
        } else if pos < end {
            self.replace(pos, loc, segs);
            return;
        }
        self.locs.push_back(loc);
        self.bytes += loc.len as u64;
        segs.add(loc);
    }

    /// Records a copied-forward event. It was retained when copied, and any later trim of it
    /// comes later in the journal, so one just below the retained ones is not a trimmed one
    /// but one whose newer neighbours stayed in older segments (read first on open): it
    /// goes in front.
    fn put_moved(&mut self, pos: u64, loc: Loc, segs: &mut Segs) {
        if !self.locs.is_empty() && self.first > 0 && pos == self.first - 1 {
            self.locs.push_front(loc);
            self.bytes += loc.len as u64;
            segs.add(loc);
            self.first = pos;
        } else {
            self.put(pos, loc, segs);
        }
    }

    fn trim(&mut self, through: u64, segs: &mut Segs) {
        while self.first <= through {
            let Some(loc) = self.locs.pop_front() else {
                self.first = through + 1;
                return;
            };
            self.bytes -= loc.len as u64;
            segs.remove(loc);
            self.first += 1;
        }
    }
}

#[derive(Default)]
struct Inner {
    files: HashMap<u32, Arc<File>>,
    buses: HashMap<String, BusIndex>,
    segs: Segs,
}

impl Inner {
    fn bus(&mut self, name: &str) -> (&mut BusIndex, &mut Segs) {
        if !self.buses.contains_key(name) {
            self.buses.insert(name.to_owned(), BusIndex::default());
        }
        let bus = self.buses.get_mut(name).expect("inserted above");
        (bus, &mut self.segs)
    }
}

#[derive(Default)]
pub struct EventLog {
    inner: RwLock<Inner>,
}

impl EventLog {
    fn read_lock(&self) -> RwLockReadGuard<'_, Inner> {
        // The maps stay consistent across a panic in a holder (every change is one call).
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_file(&self, seg: u32, file: Arc<File>) {
        self.write_lock().files.insert(seg, file);
    }

    pub fn remove_file(&self, seg: u32) {
        self.write_lock().files.remove(&seg);
    }

    pub fn put_many<'a>(&self, items: impl IntoIterator<Item = (&'a str, u64, Loc)>) {
        let mut inner = self.write_lock();
        for (bus, pos, loc) in items {
            let (b, segs) = inner.bus(bus);
            b.put(pos, loc, segs);
        }
    }

    /// Records events copied forward. Applied newest first per bus, so that on open, where
    /// the events after them may have been read already (from older segments), each lands
    /// just in front of the ones read.
    pub fn put_moved<'a>(&self, items: impl IntoIterator<Item = (&'a str, u64, Loc)>) {
        let mut items: Vec<_> = items.into_iter().collect();
        items.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        let mut inner = self.write_lock();
        for (bus, pos, loc) in items {
            let (b, segs) = inner.bus(bus);
            b.put_moved(pos, loc, segs);
        }
    }

    /// Forgets `bus`'s events up to and including `through` (retention).
    pub fn trim(&self, bus: &str, through: u64) {
        let mut inner = self.write_lock();
        let Inner { buses, segs, .. } = &mut *inner;
        if let Some(b) = buses.get_mut(bus) {
            b.trim(through, segs);
        }
    }

    /// The first retained position of `bus`.
    pub fn first(&self, bus: &str) -> u64 {
        self.read_lock().buses.get(bus).map_or(0, |b| b.first)
    }

    /// Every bus the log has indexed.
    pub fn buses(&self) -> Vec<String> {
        self.read_lock().buses.keys().cloned().collect()
    }

    /// The oldest segment any retained event is in.
    pub fn oldest_segment(&self) -> Option<u32> {
        self.read_lock().segs.0.keys().next().copied()
    }

    /// The bytes of retained events in `seg`.
    pub fn live_bytes(&self, seg: u32) -> u64 {
        self.read_lock().segs.0.get(&seg).map_or(0, |u| u.bytes)
    }

    /// Every retained event in `seg`, as `(bus, position, stored record)`: to copy forward.
    pub fn located_in(&self, seg: u32) -> Result<Vec<(String, u64, Vec<u8>)>, BusError> {
        let inner = self.read_lock();
        let mut out = Vec::new();
        for (name, b) in &inner.buses {
            for (i, loc) in b.locs.iter().enumerate() {
                if loc.seg == seg {
                    let mut record = vec![0; loc.len as usize];
                    read_at(&inner.files, seg, loc.off, &mut record)?;
                    out.push((name.clone(), b.first + i as u64, record));
                }
            }
        }
        Ok(out)
    }

    /// The last position of `bus` that retention removes: its oldest events while they were
    /// accepted at or before `cutoff` (ms) or the bus is over `budget` bytes.
    pub fn expired_through(
        &self,
        bus: &str,
        cutoff: Option<u64>,
        budget: u64,
    ) -> Result<Option<u64>, BusError> {
        let inner = self.read_lock();
        let Some(b) = inner.buses.get(bus) else {
            return Ok(None);
        };
        let mut size = b.bytes;
        let mut through = None;
        for (i, loc) in b.locs.iter().enumerate() {
            if size <= budget && !loc.is_hole() {
                let Some(cutoff) = cutoff else { break };
                let mut at = [0; 8];
                read_at(&inner.files, loc.seg, loc.off, &mut at)?;
                if u64::from_le_bytes(at) > cutoff {
                    break;
                }
            }
            size -= loc.len as u64;
            through = Some(b.first + i as u64);
        }
        Ok(through)
    }

    /// Up to `max` stored records of `bus` after position `after`, in order, as
    /// `(position, acceptance time, JSON)`. Neighbouring events are read with one `pread`.
    pub fn read(
        &self,
        bus: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<(u64, u64, Vec<u8>)>, BusError> {
        let (first_pos, locs, files) = {
            let inner = self.read_lock();
            let Some(b) = inner.buses.get(bus) else {
                return Ok(Vec::new());
            };
            let start = after.saturating_add(1).max(b.first);
            let skip = (start - b.first) as usize;
            let locs: Vec<Loc> = b.locs.iter().skip(skip).take(max).copied().collect();
            // Usually one segment, two around a rotation, more with copied-forward events.
            let mut files: HashMap<u32, Arc<File>> = HashMap::new();
            for loc in &locs {
                if !files.contains_key(&loc.seg)
                    && let Some(f) = inner.files.get(&loc.seg)
                {
                    files.insert(loc.seg, f.clone());
                }
            }
            (start, locs, files)
        };
        let mut out = Vec::with_capacity(locs.len());
        let mut i = 0;
        while i < locs.len() {
            // One read for a run of events that lie close together in one segment (a
            // record's events, separated only by a few bytes of change headers).
            let from = locs[i];
            if from.is_hole() {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            let mut end = from.off + from.len as u64;
            let mut payload = from.len as u64;
            while let Some(next) = locs.get(j) {
                let next_end = next.off + next.len as u64;
                if next.seg != from.seg
                    || next.off < end
                    || next_end - from.off > 2 * (payload + next.len as u64) + 4096
                {
                    break;
                }
                payload += next.len as u64;
                end = next_end;
                j += 1;
            }
            let mut buf = vec![0; (end - from.off) as usize];
            read_at(&files, from.seg, from.off, &mut buf)?;
            for (k, loc) in locs[i..j].iter().enumerate() {
                let rel = (loc.off - from.off) as usize;
                let record = buf
                    .get(rel..rel + loc.len as usize)
                    .ok_or_else(|| BusError::Storage("bus log index out of range".into()))?;
                let (at, json) = codec::split_logged(record)?;
                out.push((first_pos + (i + k) as u64, at, json.to_vec()));
            }
            i = j;
        }
        Ok(out)
    }
}

fn read_at(
    files: &HashMap<u32, Arc<File>>,
    seg: u32,
    off: u64,
    buf: &mut [u8],
) -> Result<(), BusError> {
    let file = files
        .get(&seg)
        .ok_or_else(|| BusError::Storage(format!("bus log segment {seg} is gone")))?;
    file.read_exact_at(buf, off)
        .map_err(|e| BusError::Storage(format!("reading bus log segment {seg}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(off: u64) -> Loc {
        Loc {
            seg: 0,
            len: 10,
            off,
        }
    }

    fn at(seg: u32, off: u64) -> Loc {
        Loc { seg, len: 10, off }
    }

    #[test]
    fn the_index_replaces_repeats_ignores_trimmed_and_restarts_at_a_gap() {
        let (mut b, mut segs) = (BusIndex::default(), Segs::default());
        b.put(5, loc(0), &mut segs);
        b.put(6, loc(10), &mut segs);
        b.put(6, loc(20), &mut segs);
        assert_eq!((b.first, b.locs.len(), b.bytes), (5, 2, 20));
        assert_eq!(b.locs[1].off, 20, "a repeat replaces");
        b.trim(5, &mut segs);
        b.put(5, loc(30), &mut segs);
        assert_eq!(
            (b.first, b.locs.len(), b.bytes),
            (6, 1, 10),
            "trimmed stays gone"
        );
        b.put(9, loc(40), &mut segs);
        assert_eq!(
            (b.first, b.locs.len(), b.bytes),
            (6, 4, 20),
            "a gap is filled with holes"
        );
        assert!(b.locs[1].is_hole() && b.locs[2].is_hole());
        b.put(9 + MAX_HOLES + 2, loc(40), &mut segs);
        assert_eq!(
            (b.first, b.locs.len()),
            (9 + MAX_HOLES + 2, 1),
            "a wide gap restarts the index"
        );
        b.trim(20 + MAX_HOLES, &mut segs);
        assert_eq!((b.first, b.locs.len(), b.bytes), (21 + MAX_HOLES, 0, 0));
        assert!(segs.0.is_empty(), "nothing retained, no segment in use");
        b.put(21 + MAX_HOLES, loc(50), &mut segs);
        assert_eq!((b.first, b.locs.len()), (21 + MAX_HOLES, 1));
        assert_eq!(
            segs.0[&0],
            SegUse {
                events: 1,
                bytes: 10
            }
        );
    }

    /// Copied-forward events: at run time they replace the retained ones; on open, where the
    /// newer events of the bus were read first from older segments, they go in front.
    #[test]
    fn moved_events_replace_or_go_in_front_and_segment_use_follows() {
        let log = EventLog::default();
        log.put_many([("q", 1, at(0, 0)), ("q", 2, at(0, 10)), ("q", 3, at(1, 0))]);
        log.put_many([("busy", 1, at(1, 10))]);
        assert_eq!(log.oldest_segment(), Some(0));
        assert_eq!(log.live_bytes(0), 20);
        log.put_moved([("q", 1, at(2, 0)), ("q", 2, at(2, 10))]);
        assert_eq!(log.oldest_segment(), Some(1), "segment 0 holds nothing now");
        assert_eq!((log.live_bytes(1), log.live_bytes(2)), (20, 20));

        // The same journal read back on open, segments 1 then 2 (0 deleted).
        let reopened = EventLog::default();
        reopened.put_many([("q", 3, at(1, 0)), ("busy", 1, at(1, 10))]);
        reopened.put_moved([("q", 1, at(2, 0)), ("q", 2, at(2, 10))]);
        let inner = reopened.read_lock();
        let q = &inner.buses["q"];
        assert_eq!(q.first, 1);
        assert_eq!(
            q.locs.iter().copied().collect::<Vec<_>>(),
            vec![at(2, 0), at(2, 10), at(1, 0)]
        );
        drop(inner);
        assert_eq!(reopened.oldest_segment(), Some(1));
        // A trim after the move (later in the journal) still removes them.
        reopened.trim("q", 2);
        assert_eq!(reopened.live_bytes(2), 0);
        assert_eq!(reopened.first("q"), 3);
    }

    #[test]
    fn reads_come_from_the_segment_files_near_or_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut bytes = Vec::new();
        let mut locs = Vec::new();
        for (i, gap) in [0usize, 3, 20_000, 3].into_iter().enumerate() {
            bytes.extend(std::iter::repeat_n(0xEE, gap));
            let rec = codec::encode_logged(100 + i as u64, format!("{{\"n\":{i}}}").as_bytes());
            locs.push(Loc {
                seg: 4,
                len: rec.len() as u32,
                off: bytes.len() as u64,
            });
            bytes.extend(rec);
        }
        std::fs::write(&path, &bytes).unwrap();
        let log = EventLog::default();
        log.add_file(4, Arc::new(File::open(&path).unwrap()));
        log.put_many(
            locs.iter()
                .enumerate()
                .map(|(i, l)| ("b", 11 + i as u64, *l)),
        );
        let got = log.read("b", 0, 10).unwrap();
        let want: Vec<(u64, u64, Vec<u8>)> = (0..4)
            .map(|i| (11 + i, 100 + i, format!("{{\"n\":{i}}}").into_bytes()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(log.read("b", 12, 1).unwrap(), want[2..3].to_vec());
        assert!(log.read("b", 14, 10).unwrap().is_empty());
        assert!(log.read("other", 0, 10).unwrap().is_empty());
        // Retention: by age (accepted at 100 and 101, at or before 101) and by size.
        assert_eq!(
            log.expired_through("b", Some(101), u64::MAX).unwrap(),
            Some(12)
        );
        assert_eq!(log.expired_through("b", Some(99), u64::MAX).unwrap(), None);
        assert_eq!(log.expired_through("b", None, u64::MAX).unwrap(), None);
        let one = locs[3].len as u64;
        assert_eq!(log.expired_through("b", None, one).unwrap(), Some(13));
        log.trim("b", 12);
        assert_eq!(log.read("b", 0, 10).unwrap(), want[2..].to_vec());
        log.remove_file(4);
        assert!(
            log.read("b", 0, 10).is_err(),
            "a missing segment is an error, not a panic"
        );
    }
}
