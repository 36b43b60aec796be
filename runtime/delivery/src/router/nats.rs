//! The router of one bus on JetStream. Every router process of a bus pulls from one shared
//! durable consumer, so each event is routed by one of them; matches are published to the
//! trigger queues with a message id derived from the event's bus position, and only then is
//! the event acked. A router that dies in between leaves its events to be redelivered to
//! another router, whose enqueues the queue streams then drop as duplicates.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use sluice_api::jetstream as names;
use tokio::sync::watch;

use sluice_bus::{
    BusError,
    nats::{self, NatsBus, RawEnqueue},
};

use crate::{metrics::Metrics, router::SharedTable};

/// Events pulled per routing round.
const BATCH: usize = 512;
/// Routed batches whose enqueues may await confirmation at once.
const IN_FLIGHT_BATCHES: usize = 4;

/// Routes `bus_name` until `stop` turns true. Errors (the server restarting, say) are logged
/// and retried; nothing is acked that was not enqueued.
pub async fn run(
    bus: NatsBus,
    bus_name: String,
    table: SharedTable,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        match route_until_error(&bus, &bus_name, &table, &metrics, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(bus = %bus_name, error = %e, "routing interrupted; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn route_until_error(
    bus: &NatsBus,
    bus_name: &str,
    table: &SharedTable,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), BusError> {
    let stream = bus.ensure_bus(bus_name).await?;
    let consumer = stream
        .get_or_create_consumer(
            names::ROUTER_CONSUMER,
            pull::Config {
                durable_name: Some(names::ROUTER_CONSUMER.into()),
                ack_policy: AckPolicy::Explicit,
                // A router that dies holding events hands them to its peers after this.
                ack_wait: Duration::from_secs(10),
                max_ack_pending: 20_000,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .map_err(nats::nats_err)?;
    let inflight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_BATCHES));
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let mut batch = nats::pull(&consumer, BATCH).await?;
        if batch.is_empty() {
            // Idle: one long-poll pull answers as soon as an event arrives (or a peer's
            // redelivery falls due), without a subscription copying every event to us.
            let wait = nats::pull_wait(&consumer, Duration::from_secs(1));
            tokio::select! {
                got = wait => batch = got?,
                _ = stop.changed() => return Ok(()),
            }
            if batch.is_empty() {
                continue;
            }
        }
        let table = table
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let mut items = Vec::new();
        for m in &batch {
            let Ok(info) = m.info() else { continue };
            let pos = info.stream_sequence;
            let accepted_ms = u64::try_from(info.published.timestamp_millis()).unwrap_or(0);
            // The stored form is the event's structured JSON, which is what patterns are
            // applied to: match on it as is and forward the same bytes, no re-encoding.
            let hits = match table.route_json(&m.payload) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(bus = %bus_name, pos, error = %e, "unreadable event skipped");
                    continue;
                }
            };
            if hits.is_empty() {
                // Said, not silent: an event no Trigger wanted is counted and traced.
                metrics.unmatched(bus_name);
                tracing::debug!(bus = %bus_name, pos, "event matched no trigger");
            }
            for (trigger, key) in hits {
                metrics.matched(trigger);
                items.push(RawEnqueue {
                    trigger: trigger.clone(),
                    key,
                    accepted_ms,
                    payload: m.payload.clone(),
                    id: Some(format!("{bus_name}:{pos}")),
                });
            }
        }
        let acks = match bus.enqueue_raw(items).await {
            Ok(acks) => acks,
            Err(e) => {
                bus.forget_queue_streams();
                return Err(e);
            }
        };
        // Confirmation of this batch's enqueues overlaps with routing the next ones; its
        // events are acked only once every enqueue is confirmed (else they come back after
        // AckWait and the queues drop the copies by message id).
        let permit = inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BusError::Closed)?;
        let bus_name = bus_name.to_owned();
        let owner = bus.clone();
        tokio::spawn(async move {
            for a in acks {
                if let Err(e) = a.await {
                    // A queue stream deleted since this process created it (its Trigger was
                    // deleted and applied again) answers nothing: create it again next time.
                    owner.forget_queue_streams();
                    tracing::warn!(bus = %bus_name, error = %e, "enqueue unconfirmed; the batch will be routed again");
                    return;
                }
            }
            for m in &batch {
                if let Err(e) = m.ack().await {
                    tracing::warn!(bus = %bus_name, error = %e, "ack failed; the event will be routed again");
                }
            }
            drop(permit);
        });
    }
}
