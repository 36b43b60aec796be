//! The embedded bus tested on a real temporary data dir, since what counts is what survives a
//! reopen or a crash; one file per role, with the helpers they share here.

mod publish;
mod queue;
mod recovery;
mod retention;

use std::sync::Arc;

use sluice_event::CloudEvent;

use super::*;
use crate::{DeadLetter, Delivery, Enqueue, Publish};

fn event(id: &str) -> CloudEvent {
    CloudEvent::new(id, "/test", "com.example.t").with_json_data(&serde_json::json!({"id": id}))
}

fn publish(bus: &str, id: &str) -> Publish {
    Publish {
        bus: bus.into(),
        event: event(id),
        dedupe: true,
    }
}

fn open(dir: &std::path::Path) -> EmbeddedBus {
    open_with(EmbeddedConfig::new(dir))
}

fn open_with(cfg: EmbeddedConfig) -> EmbeddedBus {
    // The previous instance's writer thread may still hold the file for a moment.
    for _ in 0..200 {
        if let Ok(b) = EmbeddedBus::open(cfg.clone()) {
            return b;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("could not reopen the bus");
}

async fn route_all(bus: &EmbeddedBus, name: &str, trigger: &str) -> usize {
    let events = bus.read(name, bus.route_cursor(name), 10_000).unwrap();
    let Some(last) = events.last().map(|e| e.0) else {
        return 0;
    };
    let n = events.len();
    let items = events
        .into_iter()
        .map(|(_, at, e)| {
            let e = Enqueue {
                bus: "b".into(),
                trigger: trigger.into(),
                key: None,
                replay: None,
                accepted_ms: at,
                event: Arc::new(e),
            };
            (e, None)
        })
        .collect();
    bus.route(name, last, items).await.unwrap();
    n
}

fn bus_dead(d: &Delivery) -> DeadLetter {
    DeadLetter {
        trigger: d.trigger.clone(),
        seq: d.seq,
        reason: "fatal".into(),
        attempts: d.attempt,
        last_error: "no".into(),
        at_ms: 0,
        event: (*d.event).clone(),
    }
}
