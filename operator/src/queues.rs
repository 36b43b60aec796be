//! Queue depth and queue removal, read from JetStream under the names in
//! `sluice_api::jetstream`. Behind a trait so the autoscaler is tested on scripted depths.

use std::{path::Path, time::Duration};

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};
use futures::{StreamExt, future::BoxFuture};
use sluice_api::jetstream::{DEAD_LETTER_STREAM, dead_letter_subject, queue_stream};

use crate::{Error, Result};

/// The delivery queues of Triggers.
pub trait Queues: Send + Sync {
    /// Queued plus in-flight events of Trigger `namespace/trigger`; 0 when it has no queue.
    fn pending<'a>(&'a self, namespace: &'a str, trigger: &'a str) -> BoxFuture<'a, Result<u64>>;
    /// Deletes the queue of a deleted Trigger; `false` when there was none.
    fn delete<'a>(&'a self, namespace: &'a str, trigger: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// What `kubectl get trg -o wide` shows of Trigger `namespace/trigger`.
    fn counts<'a>(
        &'a self,
        namespace: &'a str,
        trigger: &'a str,
    ) -> BoxFuture<'a, Result<TriggerCounts>>;
}

/// A Trigger's counters, read from JetStream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TriggerCounts {
    /// Events ever put on the Trigger's queue (the queue stream's last sequence): every match.
    pub matched: u64,
    /// Dead letters held now (what `sluice dlq list` shows; redrive and purge lower it).
    pub dead_lettered: u64,
}

/// Queues in a JetStream server.
pub struct JetStream {
    js: jetstream::Context,
}

impl JetStream {
    /// Connects lazily: the client keeps retrying in the background, so a NATS outage delays
    /// depth readings (and so scaling) without stopping the reconcilers.
    pub async fn connect(url: &str, creds: Option<&Path>) -> Result<Self, Error> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("sluice-operator")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect();
        if let Some(creds) = creds {
            opts = opts
                .credentials_file(creds)
                .await
                .map_err(|e| Error::setting(format!("--nats-creds {}", creds.display()), e))?;
        }
        let client = opts
            .connect(url)
            .await
            .map_err(|e| Error::setting(format!("--nats-url {url}"), e))?;
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(2));
        Ok(Self { js })
    }

    pub fn from_context(js: jetstream::Context) -> Self {
        Self { js }
    }

    /// The JetStream context, shared with the route book.
    pub fn context(&self) -> jetstream::Context {
        self.js.clone()
    }
}

fn not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

impl Queues for JetStream {
    fn pending<'a>(&'a self, namespace: &'a str, trigger: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let name = queue_stream(namespace, trigger);
            let stream = match self.js.get_stream(&name).await {
                Ok(s) => s,
                Err(e) if not_found(&e.kind()) => return Ok(0),
                Err(e) => return Err(Error::Queue(format!("stream {name}: {e}"))),
            };
            let mut consumers = stream.consumers();
            let (mut sum, mut any) = (0u64, false);
            while let Some(info) = consumers.next().await {
                let info = info.map_err(|e| Error::Queue(format!("consumers of {name}: {e}")))?;
                any = true;
                sum = sum
                    .saturating_add(info.num_pending)
                    .saturating_add(info.num_ack_pending as u64);
            }
            // No consumer yet (no worker ever ran): the work-queue stream's messages are the
            // backlog, so the first events still wake a Function scaled to zero.
            Ok(if any {
                sum
            } else {
                stream.cached_info().state.messages
            })
        })
    }

    fn counts<'a>(
        &'a self,
        namespace: &'a str,
        trigger: &'a str,
    ) -> BoxFuture<'a, Result<TriggerCounts>> {
        Box::pin(async move {
            let name = queue_stream(namespace, trigger);
            let matched = match self.js.get_stream(&name).await {
                Ok(s) => s.cached_info().state.last_sequence,
                Err(e) if not_found(&e.kind()) => 0,
                Err(e) => return Err(Error::Queue(format!("stream {name}: {e}"))),
            };
            let subject = dead_letter_subject(namespace, trigger);
            let dead_lettered = match self.js.get_stream(DEAD_LETTER_STREAM).await {
                Ok(s) => {
                    let mut subjects = s
                        .info_with_subjects(&subject)
                        .await
                        .map_err(|e| Error::Queue(format!("stream {DEAD_LETTER_STREAM}: {e}")))?;
                    let mut n = 0;
                    while let Some(entry) = subjects.next().await {
                        let (subj, count) = entry.map_err(|e| {
                            Error::Queue(format!("stream {DEAD_LETTER_STREAM}: {e}"))
                        })?;
                        if subj == subject {
                            n += count as u64;
                        }
                    }
                    n
                }
                Err(e) if not_found(&e.kind()) => 0,
                Err(e) => return Err(Error::Queue(format!("stream {DEAD_LETTER_STREAM}: {e}"))),
            };
            Ok(TriggerCounts {
                matched,
                dead_lettered,
            })
        })
    }

    fn delete<'a>(&'a self, namespace: &'a str, trigger: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let name = queue_stream(namespace, trigger);
            match self.js.delete_stream(&name).await {
                Ok(_) => Ok(true),
                Err(e) if not_found(&e.kind()) => Ok(false),
                Err(e) => Err(Error::Queue(format!("deleting stream {name}: {e}"))),
            }
        })
    }
}
