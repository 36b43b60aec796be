//! The router of one bus on JetStream. Every router process of a bus pulls from one shared
//! durable consumer, so each event is routed by one of them; matches are published to the
//! trigger queues with a message id derived from the event's bus position, and only then is
//! the event acked. A router that dies in between leaves its events to be redelivered to
//! another router, whose enqueues the queue streams then drop as duplicates.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use sluice_api::jetstream as names;
use sluice_event::CloudEvent;
use tokio::sync::watch;

use super::NatsBus;
use crate::{
    bus::{BusError, Enqueue},
    metrics::Metrics,
    router::SharedTable,
};

/// Events pulled per routing round.
const BATCH: usize = 512;

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
        .map_err(super::nats_err)?;
    let mut doorbell = bus
        .client()
        .subscribe(names::bus_subject(bus_name))
        .await
        .map_err(super::nats_err)?;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let batch = super::pull(&consumer, BATCH).await?;
        if batch.is_empty() {
            // Drain rings that arrived meanwhile, then wait for the next one (or look again
            // in a while: a redelivery after a peer router died rings no bell).
            while futures::FutureExt::now_or_never(doorbell.next())
                .flatten()
                .is_some()
            {}
            tokio::select! {
                _ = doorbell.next() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return Ok(()),
            }
            continue;
        }
        let table = table
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let mut items = Vec::new();
        let mut ids = Vec::new();
        for m in &batch {
            let Ok(info) = m.info() else { continue };
            let pos = info.stream_sequence;
            let accepted_ms = u64::try_from(info.published.timestamp_millis()).unwrap_or(0);
            let event = match CloudEvent::from_json(&m.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(bus = %bus_name, pos, error = %e, "unreadable event skipped");
                    continue;
                }
            };
            let json = event.to_json_value();
            let hits = table.route(&json);
            if hits.is_empty() {
                continue;
            }
            let event = Arc::new(event);
            for (trigger, key) in hits {
                metrics.matched(trigger);
                ids.push(format!("{bus_name}:{pos}"));
                items.push(Enqueue {
                    trigger: trigger.clone(),
                    event: event.clone(),
                    accepted_ms,
                    key,
                });
            }
        }
        bus.enqueue_with_ids(items, Some(ids)).await?;
        for m in &batch {
            m.ack().await.map_err(super::nats_err)?;
        }
    }
}
