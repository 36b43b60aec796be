//! Queue depth and queue removal, read from JetStream under the names in
//! `sluice_api::jetstream`. Behind a trait so the autoscaler is tested on scripted depths.

use std::{path::Path, time::Duration};

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};
use futures::{StreamExt, future::BoxFuture};
use sluice_api::jetstream::queue_stream;

use crate::{Error, Result};

/// The delivery queues of Triggers.
pub trait Queues: Send + Sync {
    /// Queued plus in-flight events of Trigger `namespace/trigger`; 0 when it has no queue.
    fn pending<'a>(&'a self, namespace: &'a str, trigger: &'a str) -> BoxFuture<'a, Result<u64>>;
    /// Deletes the queue of a deleted Trigger; `false` when there was none.
    fn delete<'a>(&'a self, namespace: &'a str, trigger: &'a str) -> BoxFuture<'a, Result<bool>>;
}

/// Queues in a JetStream server.
pub struct JetStream {
    js: jetstream::Context,
}

impl JetStream {
    /// Connects lazily: the client keeps retrying in the background, so a NATS outage delays
    /// depth readings (and so scaling) without stopping the reconcilers.
    pub async fn connect(url: &str, creds: Option<&Path>) -> anyhow::Result<Self> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("sluice-operator")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect();
        if let Some(creds) = creds {
            opts = opts.credentials_file(creds).await?;
        }
        let client = opts.connect(url).await?;
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(2));
        Ok(Self { js })
    }

    pub fn from_context(js: jetstream::Context) -> Self {
        Self { js }
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
