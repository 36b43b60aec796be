//! The journal, which is also the bus log. Every group commit appends one record (the table
//! changes it made, event bodies included) to the active segment with a single `write`; a
//! commit holding a producer's publish then `fdatasync`s that segment alone. The redb store
//! commits without fsync and is made durable at checkpoints; it never holds event bodies:
//! bus events are read straight from the segments (see `log.rs`), so a checkpoint writes only
//! the small queue, cursor and dedupe tables.
//!
//! Why: a durable redb commit flushes every page the copy-on-write B-trees dirtied since the
//! last one (~16 page writes per commit, ~8 KB per handled event), and its `fdatasync` took
//! p50 1.3-1.5 ms here, while one appended record of a few KB syncs in ~0.5 ms. Copying
//! every event into the B-tree at checkpoints instead stalled the writer for ~7 ms every
//! 250 ms under load.
//!
//! Segments are files `journal/NNNNNNNNNN.log`. A checkpoint that finds the active one over
//! the segment size seals it and starts the next, so a sealed segment holds only
//! checkpointed commits; sealed segments are deleted, oldest first, once retention has
//! removed every event they hold.
//!
//! Record: `len: u32, crc32: u32, body[len]`, where body is `commit: u64, next_qseq: u64`
//! then the changes. Reading a segment stops at the first record that is cut short, fails
//! its checksum, or does not number its commit above the one before. If no valid record
//! follows, that is a torn tail, never synced (a crash keeps a prefix of the records, since
//! every sync covers all earlier writes), and it is cut. If one does, the bytes between are
//! *damage* (a flipped bit, a bad sector): the bus refuses to open, naming the segment and
//! the byte range, rather than cut the valid records after it; started with
//! `skip_damaged` it reads on past the damage and reports what it skipped.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use crate::BusError;

const HEADER: usize = 8;
/// The body's fixed part: commit number and queue counter.
const BODY_HEADER: usize = 16;
/// A record longer than this is not one this code wrote: reading stops there, and an append
/// that would write one is refused. (Small in unit tests, so they can reach it.)
const MAX_RECORD: usize = if cfg!(test) { 1 << 16 } else { 1 << 30 };

fn io(path: &Path, what: &str, e: std::io::Error) -> BusError {
    BusError::Storage(format!("journal {}: {what}: {e}", path.display()))
}

/// One committed record read back: its number, the queue counter at that commit, the
/// encoded changes (borrowed from the segment as read), and where the changes start
/// (segment, byte offset in its file).
#[derive(Debug, PartialEq)]
pub struct Entry<'a> {
    pub commit: u64,
    pub next_qseq: u64,
    pub changes: &'a [u8],
    pub seg: u32,
    pub changes_at: u64,
}

pub fn segment_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("{seg:010}.log"))
}

fn open_file(path: &Path) -> Result<File, BusError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io(path, "opening", e))
}

/// Makes a file's creation, rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), BusError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, "syncing the directory", e))
}

pub struct Journal {
    dir: PathBuf,
    /// Sealed segments, oldest first: they hold only checkpointed commits.
    sealed: Vec<u32>,
    active: u32,
    file: Arc<File>,
    /// Bytes of valid records in the active segment (the append position).
    len: u64,
    /// The last commit number written.
    commit: u64,
    /// Bytes appended since the last checkpoint, and when that was.
    pending: u64,
    since: Instant,
    /// A checkpoint seals the active segment once it is this long.
    segment_bytes: u64,
}

impl Journal {
    /// Opens (or creates) the segments under `dir`, handing every valid record to `visit` in
    /// order, segment by segment. Commit numbers continue above `checkpoint`. Appends go on
    /// after the last valid record of the newest segment, whose torn tail (if any) is cut.
    /// Damage (see the module doc) is an error unless `skip_damaged`.
    pub fn open(
        dir: &Path,
        checkpoint: u64,
        segment_bytes: u64,
        skip_damaged: bool,
        mut visit: impl FnMut(Entry<'_>) -> Result<(), BusError>,
    ) -> Result<Self, BusError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, "creating", e))?;
        let mut segs: Vec<u32> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, "listing", e))?
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        segs.sort_unstable();
        let mut commit = checkpoint;
        let mut last = (0, 0);
        for (i, &seg) in segs.iter().enumerate() {
            let path = segment_path(dir, seg);
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| io(&path, "reading", e))?;
            let Scan {
                records,
                mut damaged,
                valid,
            } = scan(&bytes);
            if valid < bytes.len() && i + 1 < segs.len() {
                // Only the newest segment is written to; anything else was synced and
                // sealed, so an unreadable tail there is damage too, not a crash's torn tail.
                damaged.push(valid..bytes.len());
            }
            if let Some(first) = damaged.first() {
                if !skip_damaged {
                    return Err(BusError::Storage(format!(
                        "journal {}: bytes {}..{} of {} are damaged (no valid record; {} \
                         damaged range(s) in all), and valid records follow them or the \
                         segment was sealed, so this is not a torn write and nothing was cut. Keep a copy of {}, then start \
                         with --journal-skip-damaged to read on past the damage (what was \
                         recorded in those bytes is lost), or restore the segment from a backup",
                        path.display(),
                        first.start,
                        first.end,
                        bytes.len(),
                        damaged.len(),
                        dir.display()
                    )));
                }
                for d in &damaged {
                    tracing::error!(segment = %path.display(), from = d.start, to = d.end,
                        "journal damage skipped: what was recorded in these bytes is lost");
                }
            }
            for (at, r) in records {
                commit = commit.max(r.commit);
                visit(Entry {
                    commit: r.commit,
                    next_qseq: r.next_qseq,
                    changes: &bytes[at + HEADER + BODY_HEADER..at + HEADER + r.len],
                    seg,
                    changes_at: (at + HEADER + BODY_HEADER) as u64,
                })?;
            }
            last = (seg, valid as u64);
        }
        let (active, len) = last;
        let path = segment_path(dir, active);
        let file = open_file(&path)?;
        // Whatever follows the valid prefix is garbage; cut it so that appends are read back.
        if file.metadata().map_err(|e| io(&path, "reading", e))?.len() > len {
            file.set_len(len)
                .map_err(|e| io(&path, "cutting a torn tail", e))?;
        }
        if segs.is_empty() {
            sync_dir(dir)?;
        }
        let sealed = segs.into_iter().filter(|&s| s != active).collect();
        Ok(Self {
            dir: dir.to_owned(),
            sealed,
            active,
            file: Arc::new(file),
            len,
            commit,
            pending: len,
            since: Instant::now(),
            segment_bytes,
        })
    }

    /// Appends one commit's record; with `sync`, returns only once it is on disk. Returns the
    /// segment and offset its changes start at. On error the segment is cut back to where it
    /// was, so that a failed record is never read back.
    pub fn append(
        &mut self,
        next_qseq: u64,
        changes: &[u8],
        sync: bool,
    ) -> Result<(u32, u64), BusError> {
        if BODY_HEADER + changes.len() > MAX_RECORD {
            // Written, it could not be read back: refuse the commit instead.
            return Err(BusError::Storage(format!(
                "journal {}: a commit of {} bytes is over the {MAX_RECORD}-byte record limit",
                self.path().display(),
                changes.len()
            )));
        }
        let commit = self.commit + 1;
        let record = encode(commit, next_qseq, changes);
        // Positioned writes: the file is shared with readers (`log.rs`), who use `pread`.
        let written = self
            .file
            .write_all_at(&record, self.len)
            .map_err(|e| io(&self.path(), "appending", e))
            .and_then(|()| if sync { self.sync() } else { Ok(()) });
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        let at = self.len + (HEADER + BODY_HEADER) as u64;
        self.len += record.len() as u64;
        self.pending += record.len() as u64;
        self.commit = commit;
        Ok((self.active, at))
    }

    fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.active)
    }

    /// Makes every record written so far durable.
    pub fn sync(&self) -> Result<(), BusError> {
        self.file
            .sync_data()
            .map_err(|e| io(&self.path(), "syncing", e))
    }

    /// Hands `visit` the changes of every record numbered above `after`, in order: what a
    /// store reopened at checkpoint `after` lacks. Only the active segment can hold them: a
    /// segment is sealed after a checkpoint that covered all of it.
    pub fn replay_since(
        &self,
        after: u64,
        mut visit: impl FnMut(&[u8]) -> Result<(), BusError>,
    ) -> Result<(), BusError> {
        let mut bytes = vec![0; self.len as usize];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| io(&self.path(), "reading", e))?;
        for (at, r) in scan(&bytes).records {
            if r.commit > after {
                visit(&bytes[at + HEADER + BODY_HEADER..at + HEADER + r.len])?;
            }
        }
        Ok(())
    }

    /// Bytes appended since the last checkpoint.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The number of the last commit written.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// Time since the last checkpoint.
    pub fn age(&self) -> std::time::Duration {
        self.since.elapsed()
    }

    /// The active segment, for readers.
    pub fn active(&self) -> (u32, Arc<File>) {
        (self.active, self.file.clone())
    }

    /// The store now holds every commit written (a durable checkpoint; the caller synced the
    /// journal before it). Seals the active segment when it is full and starts the next;
    /// returns the new one for readers.
    pub fn checkpointed(&mut self) -> Result<Option<(u32, Arc<File>)>, BusError> {
        self.pending = 0;
        self.since = Instant::now();
        if self.len < self.segment_bytes {
            return Ok(None);
        }
        let next = self.active + 1;
        let path = segment_path(&self.dir, next);
        let file = open_file(&path)?;
        sync_dir(&self.dir)?;
        self.sealed.push(self.active);
        self.active = next;
        self.file = Arc::new(file);
        self.len = 0;
        Ok(Some(self.active()))
    }

    /// Every segment's file, for readers (sealed ones opened read-only).
    pub fn files(&self) -> Result<Vec<(u32, Arc<File>)>, BusError> {
        let mut out = Vec::with_capacity(self.sealed.len() + 1);
        for &seg in &self.sealed {
            let path = segment_path(&self.dir, seg);
            let f = File::open(&path).map_err(|e| io(&path, "opening", e))?;
            out.push((seg, Arc::new(f)));
        }
        out.push(self.active());
        Ok(out)
    }

    /// The oldest sealed segment, if any.
    pub fn oldest_sealed(&self) -> Option<u32> {
        self.sealed.first().copied()
    }

    /// Deletes the sealed segments below `keep_from` (the oldest segment any retained event
    /// is in, or `None` when no event is); returns the ones deleted.
    pub fn delete_before(&mut self, keep_from: Option<u32>) -> Vec<u32> {
        let mut gone = Vec::new();
        while let Some(&seg) = self.sealed.first() {
            if keep_from.is_some_and(|k| seg >= k) {
                break;
            }
            let path = segment_path(&self.dir, seg);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %e, "could not delete a journal segment");
                break;
            }
            self.sealed.remove(0);
            gone.push(seg);
        }
        gone
    }
}

/// Writes a whole segment of one record, durably (moving an older store's events in).
pub fn write_segment(
    path: &Path,
    commit: u64,
    next_qseq: u64,
    changes: &[u8],
) -> Result<(), BusError> {
    let mut f = File::create(path).map_err(|e| io(path, "creating", e))?;
    f.write_all(&encode(commit, next_qseq, changes))
        .and_then(|()| f.sync_all())
        .map_err(|e| io(path, "writing", e))
}

fn encode(commit: u64, next_qseq: u64, changes: &[u8]) -> Vec<u8> {
    let body_len = BODY_HEADER + changes.len();
    let mut out = Vec::with_capacity(HEADER + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&commit.to_le_bytes());
    out.extend_from_slice(&next_qseq.to_le_bytes());
    out.extend_from_slice(changes);
    let crc = crc32fast::hash(&out[HEADER..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A record found by [`parse`].
struct Found {
    commit: u64,
    next_qseq: u64,
    /// The body's length.
    len: usize,
}

/// The record at `at`, if one is there whole, with a good checksum and a commit number above
/// `after`.
fn record_at(bytes: &[u8], at: usize, after: Option<u64>) -> Option<Found> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(BODY_HEADER..=MAX_RECORD).contains(&len) {
        return None;
    }
    let body = bytes.get(at + HEADER..at + HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let commit = u64::from_le_bytes(body[..8].try_into().ok()?);
    let next_qseq = u64::from_le_bytes(body[8..16].try_into().ok()?);
    if after.is_some_and(|prev| commit <= prev) {
        return None;
    }
    Some(Found {
        commit,
        next_qseq,
        len,
    })
}

/// What reading a segment found.
struct Scan {
    /// The valid records with their offsets.
    records: Vec<(usize, Found)>,
    /// Byte ranges that hold no valid record and are followed by one.
    damaged: Vec<std::ops::Range<usize>>,
    /// Where the last valid record ends: anything after it is a torn tail.
    valid: usize,
}

/// Reads the records of a segment, looking past any that is unreadable for a valid record
/// further on (which makes the bytes between damage, not a torn tail).
fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan {
        records: Vec::new(),
        damaged: Vec::new(),
        valid: 0,
    };
    let mut at = 0;
    loop {
        let last = out.records.last().map(|(_, r): &(usize, Found)| r.commit);
        if let Some(r) = record_at(bytes, at, last) {
            let len = r.len;
            out.records.push((at, r));
            at += HEADER + len;
            out.valid = at;
            continue;
        }
        // Only reached on damage or at the end: a byte-by-byte search is cheap enough.
        match (at + 1..bytes.len()).find(|&next| record_at(bytes, next, last).is_some()) {
            Some(next) => {
                out.damaged.push(at..next);
                at = next;
            }
            None => return out,
        }
    }
}

/// The fuzz target's check (`runtime/bus/fuzz`, `sluice_bus::fuzz::journal`): whatever the
/// bytes of a segment, reading it back never panics, finds records only where whole, valid
/// ones are, and what those records hold decodes or is refused with an error.
pub fn fuzz_segment(bytes: &[u8]) {
    let s = scan(bytes);
    assert!(s.valid <= bytes.len());
    let mut end = 0;
    for (at, r) in &s.records {
        assert!(*at >= end, "records overlap");
        end = at + HEADER + r.len;
        assert!(end <= bytes.len());
        let again = record_at(bytes, *at, None).expect("a found record is found again");
        assert_eq!((again.commit, again.len), (r.commit, r.len));
        let changes = &bytes[at + HEADER + BODY_HEADER..end];
        if let Ok(logged) = super::tables::log_changes(changes) {
            for c in logged {
                if let super::tables::LogChange::Put { at, len, .. } = c {
                    let record = &changes[at..at + len];
                    if let Ok((_, json)) = super::codec::split_logged(record) {
                        let _ = super::codec::decode_event(json);
                    }
                }
            }
        }
    }
    for d in &s.damaged {
        assert!(d.start < d.end && d.end <= bytes.len());
    }
    let _ = super::codec::decode_queued(bytes);
    let _ = super::codec::decode_dead(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: u64 = 1024;

    /// The fuzz target's seeds and every input it once failed on, through its check.
    #[test]
    fn the_fuzz_corpus_and_every_found_input_pass() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut n = 0;
        for dir in ["corpus/journal", "regressions/journal"] {
            let Ok(files) = std::fs::read_dir(fuzz.join(dir)) else {
                continue;
            };
            for f in files {
                fuzz_segment(&std::fs::read(f.unwrap().path()).unwrap());
                n += 1;
            }
        }
        assert!(n > 0, "no seeds");
    }

    /// (commit, next_qseq, changes, segment) of every record `open` hands out.
    type Seen = Vec<(u64, u64, Vec<u8>, u32)>;

    fn open(dir: &Path, checkpoint: u64) -> (Journal, Seen) {
        try_open(dir, checkpoint, false).unwrap()
    }

    fn try_open(dir: &Path, checkpoint: u64, skip: bool) -> Result<(Journal, Seen), BusError> {
        let mut seen = Vec::new();
        let j = Journal::open(dir, checkpoint, SEGMENT, skip, |e| {
            let f = File::open(segment_path(dir, e.seg)).unwrap();
            let mut at = vec![0; e.changes.len()];
            f.read_exact_at(&mut at, e.changes_at).unwrap();
            assert_eq!(at, e.changes, "changes_at points at the changes");
            seen.push((e.commit, e.next_qseq, e.changes.to_vec(), e.seg));
            Ok(())
        })?;
        Ok((j, seen))
    }

    fn rec(commit: u64, changes: &[u8]) -> (u64, u64, Vec<u8>, u32) {
        (commit, commit * 10, changes.to_vec(), 0)
    }

    #[test]
    fn records_read_back_after_reopen_with_where_their_changes_are() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, old) = open(dir.path(), 0);
            assert!(old.is_empty());
            assert_eq!(j.append(10, b"one", false).unwrap(), (0, 24));
            assert_eq!(j.append(20, b"two", true).unwrap(), (0, 24 + 27));
            j.append(30, b"", false).unwrap();
            assert_eq!(j.commit(), 3);
        }
        let (j, all) = open(dir.path(), 0);
        assert_eq!(all, vec![rec(1, b"one"), rec(2, b"two"), rec(3, b"")]);
        assert_eq!(j.commit(), 3);
        let (j, _) = open(dir.path(), 7);
        assert_eq!(j.commit(), 7, "numbering continues above the checkpoint");
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_segment_and_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0);
        {
            let (mut j, _) = open(dir.path(), 0);
            j.append(10, b"kept", true).unwrap();
            j.append(20, b"torn", true).unwrap();
        }
        let full = std::fs::read(&path).unwrap();
        let first = HEADER + BODY_HEADER + 4;
        for cut in [first + 1, first + HEADER, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (mut j, got) = open(dir.path(), 0);
            assert_eq!(got, vec![rec(1, b"kept")], "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), first as u64);
            // An append after the cut is read back.
            j.append(20, b"again", true).unwrap();
            drop(j);
            let (_, got) = open(dir.path(), 0);
            assert_eq!(got, vec![rec(1, b"kept"), rec(2, b"again")]);
        }
        let mut flipped = full.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let (_, got) = open(dir.path(), 0);
        assert_eq!(
            got,
            vec![rec(1, b"kept")],
            "a bad checksum ends the segment"
        );
    }

    #[test]
    fn damage_with_valid_records_after_it_is_refused_then_skipped_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0);
        {
            let (mut j, _) = open(dir.path(), 0);
            j.append(10, b"first", true).unwrap();
            j.append(20, b"middle", true).unwrap();
            j.append(30, b"last", true).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = HEADER + BODY_HEADER + 5;
        let middle_end = middle + HEADER + BODY_HEADER + 6;
        bytes[middle + HEADER + BODY_HEADER + 2] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = try_open(dir.path(), 0, false)
            .err()
            .expect("damage is refused");
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string())
                && text.contains(&format!("bytes {middle}..{middle_end}"))
                && text.contains("--journal-skip-damaged"),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
        let (mut j, got) = try_open(dir.path(), 0, true).unwrap();
        assert_eq!(got, vec![rec(1, b"first"), rec(3, b"last")]);
        j.append(40, b"after", true).unwrap();
        drop(j);
        let (_, got) = try_open(dir.path(), 0, true).unwrap();
        assert_eq!(
            got,
            vec![rec(1, b"first"), rec(3, b"last"), rec(4, b"after")],
            "appends go after the last valid record"
        );
    }

    #[test]
    fn a_commit_over_the_record_limit_is_refused_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path(), 0);
        j.append(10, b"before", true).unwrap();
        let len = std::fs::metadata(segment_path(dir.path(), 0))
            .unwrap()
            .len();
        let err = j.append(20, &vec![0u8; MAX_RECORD], true).unwrap_err();
        assert!(err.to_string().contains("record limit"), "{err}");
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 0))
                .unwrap()
                .len(),
            len,
            "nothing written"
        );
        j.append(30, b"after", true).unwrap();
        drop(j);
        let (_, got) = open(dir.path(), 0);
        assert_eq!(got, vec![rec(1, b"before"), (2, 30, b"after".to_vec(), 0)]);
    }

    #[test]
    fn an_unreadable_tail_of_a_sealed_segment_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, _) = open(dir.path(), 0);
            j.append(10, &vec![1u8; SEGMENT as usize], false).unwrap();
            j.checkpointed().unwrap().expect("sealed");
            j.append(20, b"next", true).unwrap();
        }
        let sealed = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&sealed, &bytes).unwrap();
        let err = try_open(dir.path(), 0, false).err().expect("refused");
        assert!(err.to_string().contains("bytes 0.."), "{err}");
        let (_, got) = try_open(dir.path(), 0, true).unwrap();
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_full_segment_is_sealed_at_a_checkpoint_and_deleted_once_unused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path(), 0);
        j.append(10, b"small", false).unwrap();
        assert!(j.checkpointed().unwrap().is_none(), "not full yet");
        assert_eq!(j.pending(), 0);
        let big = vec![7u8; SEGMENT as usize];
        j.append(20, &big, false).unwrap();
        assert_eq!(j.pending(), (HEADER + BODY_HEADER + big.len()) as u64);
        let (seg, _) = j.checkpointed().unwrap().expect("sealed and rotated");
        assert_eq!(seg, 1);
        assert_eq!(j.append(30, b"next", true).unwrap(), (1, 24));
        drop(j);
        let (mut j, got) = open(dir.path(), 0);
        let segs: Vec<(u64, u32)> = got.iter().map(|r| (r.0, r.3)).collect();
        assert_eq!(segs, vec![(1, 0), (2, 0), (3, 1)]);
        assert_eq!(
            j.delete_before(Some(0)),
            Vec::<u32>::new(),
            "segment 0 in use"
        );
        assert_eq!(j.delete_before(None), vec![0]);
        assert!(!segment_path(dir.path(), 0).exists());
        assert_eq!(
            j.delete_before(None),
            Vec::<u32>::new(),
            "the active one stays"
        );
        drop(j);
        let (_, got) = open(dir.path(), 0);
        assert_eq!(got, vec![(3, 30, b"next".to_vec(), 1)]);
    }

    #[test]
    fn a_stale_record_numbered_below_its_predecessor_ends_the_segment() {
        let mut bytes = encode(5, 50, b"new");
        bytes.extend(encode(3, 30, b"stale"));
        let got = scan(&bytes);
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.records[0].1.commit, 5);
        assert_eq!(got.valid, HEADER + BODY_HEADER + 3);
        assert!(got.damaged.is_empty(), "a stale tail is not damage");
    }
}
