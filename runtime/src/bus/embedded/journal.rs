//! The redo journal in front of the redb store. Every group commit appends one record (the
//! table changes it made) with a single `write`; a commit holding a producer's publish then
//! `fdatasync`s the journal alone. The redb store itself commits without fsync and is made
//! durable only at checkpoints, after which the journal starts over.
//!
//! Why: a durable redb commit flushes every page the copy-on-write B-trees dirtied since the
//! last one (~16 page writes per commit, ~8 KB per handled event), and its `fdatasync` took
//! p50 1.3-1.5 ms here, while one appended record of a few KB syncs in ~0.25 ms. That flush
//! is on the path of every 202 and occupies the one writer thread.
//!
//! Record: `len: u32, crc32: u32, body[len]`, where body is `commit: u64, next_qseq: u64`
//! then the changes. Reading stops at the first record that is cut short, fails its checksum,
//! or does not number its commit above the one before: what follows it was never synced (a
//! crash keeps a prefix of the records, since every sync covers all earlier writes) or is a
//! stale tail from before a truncation.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use crate::bus::BusError;

const HEADER: usize = 8;
/// A record longer than this is not one this code wrote: reading stops there.
const MAX_RECORD: usize = 1 << 30;

fn io(path: &Path, what: &str, e: std::io::Error) -> BusError {
    BusError::Storage(format!("journal {}: {what}: {e}", path.display()))
}

/// One committed record read back: its number, the queue counter at that commit, and the
/// encoded changes.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub commit: u64,
    pub next_qseq: u64,
    pub changes: Vec<u8>,
}

pub struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes of valid records (the append position).
    len: u64,
    /// The last commit number written.
    commit: u64,
    /// When the journal was last emptied by a checkpoint.
    since: Instant,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns the records after commit `after`
    /// (the store's last checkpoint), in order. Appends continue after the last valid record.
    pub fn open(path: &Path, after: u64) -> Result<(Self, Vec<Entry>), BusError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io(path, "opening", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io(path, "reading", e))?;
        let (records, valid) = parse(&bytes);
        let commit = records.last().map_or(after, |r| r.commit.max(after));
        let entries = records.into_iter().filter(|r| r.commit > after).collect();
        let mut j = Self {
            file,
            path: path.to_owned(),
            len: valid as u64,
            commit,
            since: Instant::now(),
        };
        // Whatever follows the valid prefix is garbage; cut it so that appends are read back.
        if valid < bytes.len() {
            j.file
                .set_len(j.len)
                .map_err(|e| io(path, "cutting a torn tail", e))?;
        }
        j.file
            .seek(SeekFrom::Start(j.len))
            .map_err(|e| io(path, "seeking", e))?;
        Ok((j, entries))
    }

    /// Appends one commit's record; with `sync`, returns only once it is on disk. On error
    /// the journal is cut back to where it was, so that a failed record is never replayed.
    pub fn append(&mut self, next_qseq: u64, changes: &[u8], sync: bool) -> Result<u64, BusError> {
        let commit = self.commit + 1;
        let record = encode(commit, next_qseq, changes);
        let written = self
            .file
            .write_all(&record)
            .map_err(|e| io(&self.path, "appending", e))
            .and_then(|()| {
                if sync {
                    self.file
                        .sync_data()
                        .map_err(|e| io(&self.path, "syncing", e))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            let _ = self.cut(self.len);
            return Err(e);
        }
        self.len += record.len() as u64;
        self.commit = commit;
        Ok(commit)
    }

    /// Makes every record written so far durable.
    pub fn sync(&mut self) -> Result<(), BusError> {
        self.file
            .sync_data()
            .map_err(|e| io(&self.path, "syncing", e))
    }

    /// Bytes of records since the last checkpoint.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of the last commit written.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// Time since the journal was last emptied.
    pub fn age(&self) -> std::time::Duration {
        self.since.elapsed()
    }

    /// Empties the journal once the store holds everything in it (a durable checkpoint).
    /// Commit numbers carry on, so a truncation lost in a crash leaves only records the
    /// checkpoint already covers.
    pub fn reset(&mut self) -> Result<(), BusError> {
        self.cut(0)?;
        self.since = Instant::now();
        Ok(())
    }

    fn cut(&mut self, len: u64) -> Result<(), BusError> {
        self.file
            .set_len(len)
            .map_err(|e| io(&self.path, "truncating", e))?;
        self.file
            .seek(SeekFrom::Start(len))
            .map_err(|e| io(&self.path, "seeking", e))?;
        self.len = len;
        Ok(())
    }
}

fn encode(commit: u64, next_qseq: u64, changes: &[u8]) -> Vec<u8> {
    let body_len = 16 + changes.len();
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

/// The valid records at the start of `bytes`, and how many bytes they take.
fn parse(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut out: Vec<Entry> = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if !(16..=MAX_RECORD).contains(&len) {
            break;
        }
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let commit = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        let next_qseq = u64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
        if out.last().is_some_and(|prev| commit <= prev.commit) {
            break;
        }
        out.push(Entry {
            commit,
            next_qseq,
            changes: body[16..].to_vec(),
        });
        at += HEADER + len;
    }
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(commit: u64, changes: &[u8]) -> Entry {
        Entry {
            commit,
            next_qseq: commit * 10,
            changes: changes.to_vec(),
        }
    }

    #[test]
    fn records_read_back_after_reopen_and_skip_checkpointed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        {
            let (mut j, old) = Journal::open(&path, 0).unwrap();
            assert!(old.is_empty());
            assert_eq!(j.append(10, b"one", false).unwrap(), 1);
            assert_eq!(j.append(20, b"two", true).unwrap(), 2);
            assert_eq!(j.append(30, b"", false).unwrap(), 3);
        }
        let (j, all) = Journal::open(&path, 0).unwrap();
        assert_eq!(all, vec![entry(1, b"one"), entry(2, b"two"), entry(3, b"")]);
        assert_eq!(j.commit(), 3);
        let (_, after) = Journal::open(&path, 2).unwrap();
        assert_eq!(
            after,
            vec![entry(3, b"")],
            "commits a checkpoint holds are skipped"
        );
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_journal_and_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        {
            let (mut j, _) = Journal::open(&path, 0).unwrap();
            j.append(10, b"kept", true).unwrap();
            j.append(20, b"torn", true).unwrap();
        }
        let full = std::fs::read(&path).unwrap();
        let first = HEADER + 16 + 4;
        for cut in [first + 1, first + HEADER, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (mut j, got) = Journal::open(&path, 0).unwrap();
            assert_eq!(got, vec![entry(1, b"kept")], "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), first as u64);
            // An append after the cut is read back.
            j.append(20, b"again", true).unwrap();
            drop(j);
            let (_, got) = Journal::open(&path, 0).unwrap();
            assert_eq!(got, vec![entry(1, b"kept"), entry(2, b"again")]);
        }
        let mut flipped = full.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let (_, got) = Journal::open(&path, 0).unwrap();
        assert_eq!(
            got,
            vec![entry(1, b"kept")],
            "a bad checksum ends the journal"
        );
    }

    #[test]
    fn reset_empties_and_numbering_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, 0).unwrap();
        j.append(1, b"a", true).unwrap();
        j.reset().unwrap();
        assert!(j.is_empty());
        assert_eq!(j.append(20, b"b", true).unwrap(), 2);
        drop(j);
        let (_, got) = Journal::open(&path, 1).unwrap();
        assert_eq!(got, vec![entry(2, b"b")]);
    }

    #[test]
    fn a_stale_record_numbered_below_its_predecessor_ends_the_journal() {
        let mut bytes = encode(5, 50, b"new");
        bytes.extend(encode(3, 30, b"stale"));
        let (got, valid) = parse(&bytes);
        assert_eq!(got, vec![entry(5, b"new")]);
        assert_eq!(valid, HEADER + 16 + 3);
    }
}
