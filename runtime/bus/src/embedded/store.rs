//! The redb file, shared by the writer and readers. After an I/O error (a full disk, most
//! often) redb refuses every later transaction until the database is closed and opened again,
//! so the writer can reopen it in place ([`Store::reopen`]) once the cause is gone; readers
//! take a handle per read and get an error while it is being reopened.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use redb::Database;

use super::tables::storage;
use crate::BusError;

/// How long a reopen waits for readers to let go of the old handle.
const READERS_GONE: Duration = Duration::from_secs(5);

pub(super) struct Store {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
}

impl Store {
    pub(super) fn open(path: PathBuf) -> Result<Self, BusError> {
        let db = create(&path)?;
        Ok(Self {
            path,
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// The open database, for one transaction.
    pub(super) fn get(&self) -> Result<Arc<Database>, BusError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                storage(format!(
                    "{} is being reopened after a write error",
                    self.path.display()
                ))
            })
    }

    /// Closes the database and opens it again, back at its last durable commit.
    pub(super) fn reopen(&self) -> Result<Arc<Database>, BusError> {
        let old = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut old) = old {
            // redb refuses a second open of a file this process holds: every reader's handle
            // must be gone first. Readers hold one for a single read transaction.
            let deadline = Instant::now() + READERS_GONE;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => break drop(db),
                    Err(back) if Instant::now() < deadline => {
                        old = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(back) => {
                        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(back);
                        return Err(storage(format!(
                            "{}: readers kept the store open for {READERS_GONE:?}; not reopened",
                            self.path.display()
                        )));
                    }
                }
            }
        }
        let db = Arc::new(create(&self.path)?);
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(db.clone());
        Ok(db)
    }
}

fn create(path: &Path) -> Result<Database, BusError> {
    Database::create(path).map_err(|e| storage(format!("opening {}: {e}", path.display())))
}
