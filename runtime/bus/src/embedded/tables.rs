//! The store's tables, opened for one write transaction, with every change also written down
//! in journal form (see `journal.rs`). A group commit makes its changes through [`Tables`];
//! replay after a crash applies the journalled changes to the last checkpoint with
//! [`replay`], through the same methods, so the two cannot drift apart. Bus events are the
//! exception: they are only written down, and the bus log (`log.rs`) indexes them where the
//! journal holds them ([`log_changes`]).

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::codec::{Reader, put_str32};
use crate::BusError;

/// Where bus events were kept before they lived in the journal only: moved out on open.
pub const LEGACY_EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
pub const HEADS: TableDefinition<&str, u64> = TableDefinition::new("heads");
pub const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
pub const DEDUPE: TableDefinition<&str, u64> = TableDefinition::new("dedupe");
/// The dedupe keys by the time they were recorded, so that the window is enforced by
/// removing the oldest few with every commit instead of scanning the whole table.
pub const DEDUPE_AGE: TableDefinition<(u64, &str), ()> = TableDefinition::new("dedupe_age");
pub const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
pub const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `META` keys: the next queue position, and the last journal commit the store holds.
pub const NEXT_QSEQ: &str = "next_qseq";
pub const JOURNAL_COMMIT: &str = "journal_commit";

pub fn storage(e: impl std::fmt::Display) -> BusError {
    BusError::Storage(e.to_string())
}

// Journal tags, one per kind of change. Never renumber: journals outlive builds.
const EVENT_PUT: u8 = 1;
const EVENT_TRIM: u8 = 2;
const DEDUPE_PUT: u8 = 3;
const QUEUE_PUT: u8 = 4;
const QUEUE_DEL: u8 = 5;
const DEAD_PUT: u8 = 6;
const DEAD_CLEAR: u8 = 7;
const CURSOR_SET: u8 = 8;
/// An event copied forward out of an old segment (`EventLog::located_in`); the bus log's
/// index points at the copy, the store has nothing to do.
const EVENT_MOVE: u8 = 9;

fn note(changes: &mut Vec<u8>, tag: u8, name: &str, n: u64) {
    changes.push(tag);
    put_str32(changes, name);
    changes.extend_from_slice(&n.to_le_bytes());
}

fn note_bytes(changes: &mut Vec<u8>, bytes: &[u8]) {
    changes.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    changes.extend_from_slice(bytes);
}

/// Writes down a retained event copied forward, so the old segment can go.
pub fn note_moved(changes: &mut Vec<u8>, bus: &str, pos: u64, record: &[u8]) {
    note(changes, EVENT_MOVE, bus, pos);
    note_bytes(changes, record);
}

/// Writes down an event put as [`Tables::put_event`] does, for moving an older store's events
/// into the journal.
pub fn note_event(changes: &mut Vec<u8>, bus: &str, pos: u64, record: &[u8]) {
    note(changes, EVENT_PUT, bus, pos);
    note_bytes(changes, record);
}

type Keyed<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

pub struct Tables<'t> {
    heads: Table<'t, &'static str, u64>,
    cursors: Table<'t, &'static str, u64>,
    pub dedupe: Table<'t, &'static str, u64>,
    pub dedupe_age: Table<'t, (u64, &'static str), ()>,
    queue: Keyed<'t>,
    pub dead: Keyed<'t>,
    meta: Table<'t, &'static str, u64>,
    /// Every change made through these methods, in journal form.
    pub changes: Vec<u8>,
}

impl<'t> Tables<'t> {
    pub fn open(w: &'t WriteTransaction) -> Result<Self, BusError> {
        Ok(Self {
            heads: w.open_table(HEADS).map_err(storage)?,
            cursors: w.open_table(CURSORS).map_err(storage)?,
            dedupe: w.open_table(DEDUPE).map_err(storage)?,
            dedupe_age: w.open_table(DEDUPE_AGE).map_err(storage)?,
            queue: w.open_table(QUEUE).map_err(storage)?,
            dead: w.open_table(DEAD).map_err(storage)?,
            meta: w.open_table(META).map_err(storage)?,
            changes: Vec::new(),
        })
    }

    fn note(&mut self, tag: u8, name: &str, n: u64) {
        note(&mut self.changes, tag, name, n);
    }

    fn note_bytes(&mut self, bytes: &[u8]) {
        note_bytes(&mut self.changes, bytes);
    }

    /// Appends an event record at `pos` of `bus`, which becomes the bus's head. The record
    /// itself is only written down: the journal is where the bus log keeps it.
    pub fn put_event(&mut self, bus: &str, pos: u64, record: &[u8]) -> Result<(), BusError> {
        self.heads.insert(bus, pos).map_err(storage)?;
        note_event(&mut self.changes, bus, pos, record);
        Ok(())
    }

    /// Removes the events of `bus` up to and including `through` (retention): written down
    /// for the bus log, which drops them from its index, and from the disk with the segments
    /// they are in.
    pub fn trim_events(&mut self, bus: &str, through: u64) {
        self.note(EVENT_TRIM, bus, through);
    }

    /// Records that the dedupe key was accepted at `at`.
    pub fn put_dedupe(&mut self, key: &str, at: u64) -> Result<(), BusError> {
        self.dedupe.insert(key, at).map_err(storage)?;
        self.dedupe_age.insert((at, key), ()).map_err(storage)?;
        self.note(DEDUPE_PUT, key, at);
        Ok(())
    }

    pub fn put_queue(&mut self, trigger: &str, seq: u64, record: &[u8]) -> Result<(), BusError> {
        self.queue.insert((trigger, seq), record).map_err(storage)?;
        self.note(QUEUE_PUT, trigger, seq);
        self.note_bytes(record);
        Ok(())
    }

    pub fn del_queue(&mut self, trigger: &str, seq: u64) -> Result<(), BusError> {
        self.queue.remove((trigger, seq)).map_err(storage)?;
        self.note(QUEUE_DEL, trigger, seq);
        Ok(())
    }

    pub fn put_dead(&mut self, trigger: &str, seq: u64, record: &[u8]) -> Result<(), BusError> {
        self.dead.insert((trigger, seq), record).map_err(storage)?;
        self.note(DEAD_PUT, trigger, seq);
        self.note_bytes(record);
        Ok(())
    }

    /// Removes and returns all of a trigger's dead letters (redrive, purge).
    pub fn take_dead(&mut self, trigger: &str) -> Result<Vec<(u64, Vec<u8>)>, BusError> {
        let taken = self
            .dead
            .extract_from_if((trigger, 0)..=(trigger, u64::MAX), |_, _| true)
            .map_err(storage)?
            .map(|row| {
                row.map(|(k, v)| (k.value().1, v.value().to_vec()))
                    .map_err(storage)
            })
            .collect::<Result<_, _>>()?;
        self.note(DEAD_CLEAR, trigger, 0);
        Ok(taken)
    }

    /// Moves `bus`'s routing cursor.
    pub fn set_cursor(&mut self, bus: &str, through: u64) -> Result<(), BusError> {
        self.cursors.insert(bus, through).map_err(storage)?;
        self.note(CURSOR_SET, bus, through);
        Ok(())
    }

    /// Stores a `META` value. Not journalled: the journal carries the queue counter in every
    /// record's header, and the checkpoint mark is what replay reads first.
    pub fn set_meta(&mut self, key: &str, value: u64) -> Result<(), BusError> {
        self.meta.insert(key, value).map_err(storage)?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<u64>, BusError> {
        Ok(self.meta.get(key).map_err(storage)?.map(|v| v.value()))
    }
}

/// One change as [`Tables`] wrote it down; `bytes` with its offset in the changes.
struct Change<'a> {
    tag: u8,
    name: &'a str,
    n: u64,
    bytes: Option<(&'a [u8], usize)>,
}

/// Reads back the changes [`Tables`] wrote down.
fn decode(changes: &[u8]) -> Result<Vec<Change<'_>>, BusError> {
    let bad = || BusError::Storage("corrupt journal record".into());
    let mut r = Reader(changes);
    let mut out = Vec::new();
    while let Some(tag) = r.take(1) {
        let len = r.u32().ok_or_else(bad)? as usize;
        let name = std::str::from_utf8(r.take(len).ok_or_else(bad)?).map_err(|_| bad())?;
        let n = r.u64().ok_or_else(bad)?;
        let bytes = match tag[0] {
            EVENT_PUT | EVENT_MOVE | QUEUE_PUT | DEAD_PUT => {
                let len = r.u32().ok_or_else(bad)? as usize;
                let at = changes.len() - r.0.len();
                Some((r.take(len).ok_or_else(bad)?, at))
            }
            EVENT_TRIM | DEDUPE_PUT | QUEUE_DEL | DEAD_CLEAR | CURSOR_SET => None,
            other => {
                return Err(BusError::Storage(format!(
                    "journal record has an unknown change {other}"
                )));
            }
        };
        out.push(Change {
            tag: tag[0],
            name,
            n,
            bytes,
        });
    }
    Ok(out)
}

/// Applies one journal record's changes (as [`Tables`] wrote them down) again.
pub fn replay(t: &mut Tables<'_>, changes: &[u8]) -> Result<(), BusError> {
    for c in decode(changes)? {
        let bytes = c.bytes.map_or(&[][..], |b| b.0);
        match c.tag {
            EVENT_PUT => t.put_event(c.name, c.n, bytes)?,
            EVENT_TRIM => t.trim_events(c.name, c.n),
            DEDUPE_PUT => t.put_dedupe(c.name, c.n)?,
            QUEUE_PUT => t.put_queue(c.name, c.n, bytes)?,
            QUEUE_DEL => t.del_queue(c.name, c.n)?,
            DEAD_PUT => t.put_dead(c.name, c.n, bytes)?,
            DEAD_CLEAR => drop(t.take_dead(c.name)?),
            // The store holds no event bodies, and a move changes no head.
            EVENT_MOVE => {}
            _ => t.set_cursor(c.name, c.n)?,
        }
    }
    Ok(())
}

/// What the bus log needs from a record, in order.
#[derive(Debug, PartialEq)]
pub enum LogChange<'a> {
    /// An event at `pos` of `bus`, whose stored record is `len` bytes at offset `at` of the
    /// changes. `moved`: a retained event copied forward, which may be older than the events
    /// of its bus read so far (they stayed in segments older than the copy).
    Put {
        bus: &'a str,
        pos: u64,
        at: usize,
        len: usize,
        moved: bool,
    },
    Trim {
        bus: &'a str,
        through: u64,
    },
}

pub fn log_changes(changes: &[u8]) -> Result<Vec<LogChange<'_>>, BusError> {
    Ok(decode(changes)?
        .into_iter()
        .filter_map(|c| match (c.tag, c.bytes) {
            (EVENT_PUT | EVENT_MOVE, Some((b, at))) => Some(LogChange::Put {
                bus: c.name,
                pos: c.n,
                at,
                len: b.len(),
                moved: c.tag == EVENT_MOVE,
            }),
            (EVENT_TRIM, _) => Some(LogChange::Trim {
                bus: c.name,
                through: c.n,
            }),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase};

    use super::*;

    /// Everything in the tables a commit writes, for comparing two stores.
    fn dump(db: &Database) -> Vec<String> {
        let r = db.begin_read().unwrap();
        let mut out = Vec::new();
        for (label, def) in [("queue", QUEUE), ("dead", DEAD)] {
            for row in r.open_table(def).unwrap().iter().unwrap() {
                let (k, v) = row.unwrap();
                let (name, n) = k.value();
                out.push(format!("{label}:{name}:{n}={:?}", v.value()));
            }
        }
        for (label, def) in [("heads", HEADS), ("cursors", CURSORS), ("dedupe", DEDUPE)] {
            for row in r.open_table(def).unwrap().iter().unwrap() {
                let (k, v) = row.unwrap();
                out.push(format!("{label}:{}={}", k.value(), v.value()));
            }
        }
        for row in r.open_table(DEDUPE_AGE).unwrap().iter().unwrap() {
            let (k, _) = row.unwrap();
            out.push(format!("age:{:?}", k.value()));
        }
        out
    }

    #[test]
    fn replaying_the_changes_rebuilds_the_same_tables() {
        let dir = tempfile::tempdir().unwrap();
        let original = Database::create(dir.path().join("a")).unwrap();
        let w = original.begin_write().unwrap();
        let changes = {
            let mut t = Tables::open(&w).unwrap();
            for pos in 1..=4 {
                t.put_event("default", pos, format!("e{pos}").as_bytes())
                    .unwrap();
            }
            t.put_event("other", 1, b"o1").unwrap();
            t.trim_events("default", 2);
            t.put_dedupe("default\0/s\0a", 77).unwrap();
            t.put_queue("ns/t", 1, b"q1").unwrap();
            t.put_queue("ns/t", 2, b"q2").unwrap();
            t.put_queue("ns/u", 3, b"q3").unwrap();
            t.del_queue("ns/t", 1).unwrap();
            t.put_dead("ns/t", 4, b"d4").unwrap();
            t.put_dead("ns/u", 5, b"d5").unwrap();
            assert_eq!(t.take_dead("ns/t").unwrap(), vec![(4, b"d4".to_vec())]);
            t.set_cursor("default", 4).unwrap();
            std::mem::take(&mut t.changes)
        };
        w.commit().unwrap();

        let copy = Database::create(dir.path().join("b")).unwrap();
        let w = copy.begin_write().unwrap();
        {
            let mut t = Tables::open(&w).unwrap();
            replay(&mut t, &changes).unwrap();
            assert_eq!(t.changes, changes, "replay writes the same changes down");
        }
        w.commit().unwrap();
        let (a, b) = (dump(&original), dump(&copy));
        assert_eq!(a, b);
        assert!(a.contains(&"heads:default=4".to_owned()), "{a:?}");
        assert!(a.contains(&"queue:ns/u:3=[113, 51]".to_owned()), "{a:?}");
        assert!(!a.iter().any(|l| l.starts_with("dead:ns/t")), "{a:?}");
        // The events themselves are only written down, where the bus log finds them.
        let log = log_changes(&changes).unwrap();
        assert_eq!(log.len(), 6, "{log:?}");
        let LogChange::Put {
            bus,
            pos,
            at,
            len,
            moved: false,
        } = log[2]
        else {
            panic!("{log:?}")
        };
        assert_eq!(
            (bus, pos, &changes[at..at + len]),
            ("default", 3, &b"e3"[..])
        );
        assert_eq!(
            log[5],
            LogChange::Trim {
                bus: "default",
                through: 2
            }
        );

        let w = copy.begin_write().unwrap();
        {
            let mut t = Tables::open(&w).unwrap();
            for cut in [1, 5, changes.len() - 1] {
                assert!(replay(&mut t, &changes[..cut]).is_err(), "cut at {cut}");
            }
            assert!(replay(&mut t, &[99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        }
    }
}
