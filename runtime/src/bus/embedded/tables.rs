//! The store's tables, opened for one write transaction, with every change also written down
//! in journal form (see `journal.rs`). A group commit makes its changes through [`Tables`];
//! replay after a crash applies the journalled changes to the last checkpoint with
//! [`replay`], through the same methods, so the two cannot drift apart.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::codec::{Reader, put_str32};
use crate::bus::BusError;

pub const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
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

type Keyed<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

pub struct Tables<'t> {
    pub events: Keyed<'t>,
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
            events: w.open_table(EVENTS).map_err(storage)?,
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
        self.changes.push(tag);
        put_str32(&mut self.changes, name);
        self.changes.extend_from_slice(&n.to_le_bytes());
    }

    fn note_bytes(&mut self, bytes: &[u8]) {
        self.changes
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.changes.extend_from_slice(bytes);
    }

    /// Appends an event record at `pos` of `bus`, which becomes the bus's head.
    pub fn put_event(&mut self, bus: &str, pos: u64, record: &[u8]) -> Result<(), BusError> {
        self.events.insert((bus, pos), record).map_err(storage)?;
        self.heads.insert(bus, pos).map_err(storage)?;
        self.note(EVENT_PUT, bus, pos);
        self.note_bytes(record);
        Ok(())
    }

    /// Removes the events of `bus` up to and including `through` (retention).
    pub fn trim_events(&mut self, bus: &str, through: u64) -> Result<(), BusError> {
        self.events
            .retain_in((bus, 0)..=(bus, through), |_, _| false)
            .map_err(storage)?;
        self.note(EVENT_TRIM, bus, through);
        Ok(())
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

/// Applies one journal record's changes (as [`Tables`] wrote them down) again.
pub fn replay(t: &mut Tables<'_>, changes: &[u8]) -> Result<(), BusError> {
    let bad = || BusError::Storage("corrupt journal record".into());
    let mut r = Reader(changes);
    while let Some(tag) = r.take(1) {
        let name = r.str32().ok_or_else(bad)?;
        let n = r.u64().ok_or_else(bad)?;
        let mut bytes = || -> Result<&[u8], BusError> {
            let len = r.u32().ok_or_else(bad)? as usize;
            r.take(len).ok_or_else(bad)
        };
        match tag[0] {
            EVENT_PUT => t.put_event(&name, n, bytes()?)?,
            EVENT_TRIM => t.trim_events(&name, n)?,
            DEDUPE_PUT => t.put_dedupe(&name, n)?,
            QUEUE_PUT => t.put_queue(&name, n, bytes()?)?,
            QUEUE_DEL => t.del_queue(&name, n)?,
            DEAD_PUT => t.put_dead(&name, n, bytes()?)?,
            DEAD_CLEAR => drop(t.take_dead(&name)?),
            CURSOR_SET => t.set_cursor(&name, n)?,
            other => {
                return Err(BusError::Storage(format!(
                    "journal record has an unknown change {other}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase};

    use super::*;

    /// Everything in the tables a commit writes, for comparing two stores.
    fn dump(db: &Database) -> Vec<String> {
        let r = db.begin_read().unwrap();
        let mut out = Vec::new();
        for (label, def) in [("events", EVENTS), ("queue", QUEUE), ("dead", DEAD)] {
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
            t.trim_events("default", 2).unwrap();
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
        assert!(
            a.contains(&"events:default:3=[101, 51]".to_owned()),
            "{a:?}"
        );
        assert!(
            !a.iter().any(|l| l.starts_with("events:default:2")),
            "{a:?}"
        );
        assert!(!a.iter().any(|l| l.starts_with("dead:ns/t")), "{a:?}");

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
