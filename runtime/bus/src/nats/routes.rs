//! The routers' table as the operator publishes it: a JetStream key-value entry
//! ([`names::ROUTES_BUCKET`], key [`names::ROUTES_KEY`]) that every router watches, so a new
//! Trigger reaches all of them within a round trip of the operator's write instead of after a
//! kubelet's ConfigMap volume refresh (measured 20–85 s, during which events were acked
//! against the old table and lost). Each router then says which revision it routes with in
//! the acknowledgement bucket; the operator reports a Trigger Ready only once every live
//! router has acknowledged a revision that contains it.
//!
//! The entry is mirrored into a file (`DIR/triggers.yaml`) so the router's manifest loader
//! reads it exactly as it reads `--manifests DIR`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use async_nats::jetstream::kv;
use futures::StreamExt;
use sluice_api::{
    buckets,
    jetstream::{self as names, RouterAck},
};
use tokio::sync::watch;

use super::{NatsBus, nats_err};
use crate::BusError;

/// The file the table is mirrored to, inside the feed's directory.
const FILE: &str = "triggers.yaml";

/// A router's live view of the published route table.
pub struct RouteFeed {
    dir: PathBuf,
    revision: watch::Receiver<u64>,
    acks: kv::Store,
    ack_key: String,
    identity: String,
    watcher: tokio::task::JoinHandle<()>,
}

impl RouteFeed {
    /// Reads the current table into `dir` (before any routing starts, so nothing is routed
    /// with a table older than the one published), then follows changes.
    pub async fn start(
        bus: &NatsBus,
        bucket: &str,
        identity: &str,
        dir: PathBuf,
    ) -> Result<Self, BusError> {
        let js = bus.jetstream();
        let open = |config| async move {
            buckets::open(js, config)
                .await
                .map_err(|e| nats_err(e.to_string()))
        };
        let routes = open(buckets::routes_stream(bucket)).await?;
        let acks = open(buckets::routers_stream(bucket)).await?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| BusError::Storage(format!("{}: {e}", dir.display())))?;
        let current = routes
            .entry(names::ROUTES_KEY)
            .await
            .map_err(|e| nats_err(format!("{bucket}/{}: {e}", names::ROUTES_KEY)))?;
        let first = match current {
            Some(e) => {
                mirror(&dir, &e)?;
                e.revision
            }
            None => {
                write_atomic(&dir.join(FILE), b"")?;
                0
            }
        };
        let (tx, revision) = watch::channel(first);
        let watcher = tokio::spawn(follow(routes, dir.clone(), tx, bucket.to_owned()));
        Ok(Self {
            dir,
            revision,
            acks,
            ack_key: names::router_ack_key(identity),
            identity: identity.to_owned(),
            watcher,
        })
    }

    /// Where the table is mirrored (what the manifest loader reads).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Revision of the table now in [`RouteFeed::dir`] (or of a newer one being written: read
    /// it before loading the file, and what was loaded is at least this revision). 0: none yet.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Resolves when a new revision has been mirrored.
    pub async fn changed(&mut self) {
        if self.revision.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Tells the operator this router routes with `revision` (also the liveness heartbeat).
    pub async fn ack(&self, revision: u64) -> Result<(), BusError> {
        let body = serde_json::to_vec(&RouterAck {
            identity: self.identity.clone(),
            revision,
        })
        .map_err(|e| BusError::Storage(e.to_string()))?;
        self.acks
            .put(&self.ack_key, body.into())
            .await
            .map(|_| ())
            .map_err(|e| nats_err(format!("acknowledging route revision {revision}: {e}")))
    }

    /// Withdraws this router's acknowledgement (it stops routing), so the operator does not
    /// wait for it until its entry expires.
    pub async fn leave(&self) {
        self.watcher.abort();
        if let Err(e) = self.acks.delete(&self.ack_key).await {
            tracing::warn!(error = %e, "withdrawing the route acknowledgement failed");
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BusError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| BusError::Storage(format!("{}: {e}", path.display())))
}

fn mirror(dir: &Path, e: &kv::Entry) -> Result<(), BusError> {
    let body: &[u8] = match e.operation {
        kv::Operation::Put => &e.value,
        kv::Operation::Delete | kv::Operation::Purge => b"",
    };
    write_atomic(&dir.join(FILE), body)
}

/// Mirrors every newer revision until the feed is dropped; a broken watch is re-opened.
async fn follow(routes: kv::Store, dir: PathBuf, tx: watch::Sender<u64>, bucket: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match routes.watch_with_history(names::ROUTES_KEY).await {
            Ok(mut w) => {
                backoff = Duration::from_millis(100);
                while let Some(next) = w.next().await {
                    let e = match next {
                        Ok(e) => e,
                        Err(err) => {
                            tracing::warn!(bucket = %bucket, error = %err, "route table watch failed");
                            break;
                        }
                    };
                    if e.revision <= *tx.borrow() {
                        continue;
                    }
                    match mirror(&dir, &e) {
                        Ok(()) => {
                            tracing::info!(bucket = %bucket, revision = e.revision, bytes = e.value.len(), "route table updated");
                            tx.send_replace(e.revision);
                        }
                        Err(err) => tracing::error!(error = %err, "mirroring the route table"),
                    }
                }
            }
            Err(e) => tracing::warn!(bucket = %bucket, error = %e, "watching the route table"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Drop for RouteFeed {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
