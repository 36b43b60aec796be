//! Component rung: the embedded bus on a real, small tmpfs that fills up. Publishing stops at
//! the reserve while deliveries finish; a store that failed a write anyway (no reserve) is
//! reopened in place; both recover by themselves once space is freed, and lose nothing.
//! Mounting needs root, as `make test` runs.

use std::{
    collections::HashSet,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_bus::{
    Bus, BusError, Enqueue, Publish, QueueConfig,
    embedded::{EmbeddedBus, EmbeddedConfig},
};
use sluice_event::CloudEvent;
use sluice_tests::disk::Tmpfs;

const TRIGGER: &str = "t/all";

fn open(data: &Path, reserve: u64) -> EmbeddedBus {
    open_with(EmbeddedConfig {
        disk_reserve: reserve,
        ..EmbeddedConfig::new(data)
    })
}

fn open_with(cfg: EmbeddedConfig) -> EmbeddedBus {
    // A previous instance's writer thread may hold the store for a moment after its drop.
    let started = Instant::now();
    loop {
        match EmbeddedBus::open(cfg.clone()) {
            Ok(b) => break configured(b),
            Err(e) if started.elapsed() > Duration::from_secs(5) => panic!("reopening: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn configured(bus: EmbeddedBus) -> EmbeddedBus {
    bus.configure_queue(
        TRIGGER,
        &QueueConfig {
            bus: "b".into(),
            max_inflight: 10_000,
            ordered: false,
            // Short, so an outcome the full disk refused comes back soon.
            lease: Duration::from_millis(300),
            prefetch: 1,
            gate: Default::default(),
        },
    );
    bus
}

/// A 20 KB event.
fn event(id: &str) -> Publish {
    Publish {
        bus: "b".into(),
        event: CloudEvent::new(id, "/disk", "com.example.fill")
            .with_json_data(&serde_json::json!({ "pad": "x".repeat(20_000) })),
        dedupe: true,
    }
}

/// What the test saw: accepted by publish, and handled (leased, then acked).
#[derive(Default)]
struct Seen {
    accepted: HashSet<String>,
    handled: HashSet<String>,
    errors: Vec<String>,
}

impl Seen {
    /// Routes what is new on the bus, then leases and acks what is due. Errors are kept.
    async fn deliver(&mut self, bus: &EmbeddedBus) {
        self.deliver_some(bus, 1000).await
    }

    /// [`Seen::deliver`], leasing at most `max`.
    async fn deliver_some(&mut self, bus: &EmbeddedBus, max: usize) {
        match bus.read("b", bus.route_cursor("b"), 1000) {
            Ok(events) if !events.is_empty() => {
                let through = events.last().unwrap().0;
                let items = events
                    .into_iter()
                    .map(|(_, at, e)| {
                        let e = Enqueue {
                            trigger: TRIGGER.into(),
                            bus: "b".into(),
                            event: Arc::new(e),
                            accepted_ms: at,
                            key: None,
                            replay: None,
                        };
                        (e, None)
                    })
                    .collect();
                if let Err(e) = bus.route("b", through, items).await {
                    self.errors.push(format!("route: {e}"));
                }
            }
            Ok(_) => {}
            Err(e) => self.errors.push(format!("read: {e}")),
        }
        for d in bus.lease(TRIGGER, max) {
            match Bus::ack(bus, &d, Vec::new()).await {
                Ok(()) => {
                    self.handled.insert(d.event.id.clone());
                }
                Err(e) => self.errors.push(format!("ack: {e}")),
            }
        }
    }

    /// Delivers until everything accepted was handled, or `within` passes.
    async fn drain(&mut self, bus: &EmbeddedBus, within: Duration) {
        let started = Instant::now();
        while !self.accepted.is_subset(&self.handled) && started.elapsed() < within {
            self.deliver(bus).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lost: Vec<_> = self.accepted.difference(&self.handled).collect();
        assert!(
            lost.is_empty(),
            "{} accepted events never handled, e.g. {:?} (queue {:?}, routed through {} of {}); errors: {:?}",
            lost.len(),
            lost.iter().take(3).collect::<Vec<_>>(),
            bus.depth(TRIGGER),
            bus.route_cursor("b"),
            Bus::head(bus, "b").await.unwrap(),
            self.errors.iter().rev().take(3).collect::<Vec<_>>()
        );
    }
}

async fn wait_healthy(bus: &EmbeddedBus, within: Duration) {
    let started = Instant::now();
    while let Err(why) = bus.health() {
        assert!(
            started.elapsed() < within,
            "the bus did not recover within {within:?}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn publishing_stops_at_the_reserve_while_deliveries_finish_and_resumes_by_itself() {
    let fs = Tmpfs::mount("24m");
    let data = fs.path().join("data");
    let bus = open(&data, 4 << 20);
    let filler = fs.fill(12 << 20);
    let mut seen = Seen::default();
    let mut refused = None;
    for i in 0..1000 {
        let id = format!("e{i}");
        match bus.publish(vec![event(&id)]).await {
            Ok(_) => {
                seen.accepted.insert(id);
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        if i % 4 == 0 {
            seen.deliver(&bus).await;
        }
    }
    let refused = refused.expect("publishing was never refused on a full disk");
    assert!(
        matches!(&refused, BusError::Storage(m) if m.starts_with("disk full:") && m.contains("--disk-reserve")),
        "{refused}"
    );
    assert!(
        seen.accepted.len() > 100,
        "only {} accepted",
        seen.accepted.len()
    );
    let why = bus.health().expect_err("a full bus reports it");
    assert!(why.starts_with("disk full:"), "{why}");
    // Deliveries go on into the reserve: every accepted event is handled with no error.
    seen.drain(&bus, Duration::from_secs(10)).await;
    assert_eq!(seen.errors, Vec::<String>::new());
    assert!(bus.publish(vec![event("still-full")]).await.is_err());

    std::fs::remove_file(&filler).unwrap();
    // No publish needed to notice: /readyz comes back by itself.
    wait_healthy(&bus, Duration::from_secs(3)).await;
    bus.publish(vec![event("after")]).await.unwrap();
    seen.accepted.insert("after".into());
    seen.drain(&bus, Duration::from_secs(10)).await;
    let head = Bus::head(&bus, "b").await.unwrap();
    drop(bus);

    let bus = open(&data, 4 << 20);
    assert_eq!(Bus::head(&bus, "b").await.unwrap(), head);
    let kept = bus.read("b", 0, 10_000).unwrap();
    assert_eq!(
        kept.len(),
        seen.accepted.len(),
        "exactly the accepted events are kept"
    );
}

#[tokio::test]
async fn a_store_that_failed_a_write_is_reopened_in_place_and_loses_nothing() {
    let fs = Tmpfs::mount("24m");
    let data = fs.path().join("data");
    // No reserve, and checkpoints only when asked: the queue entries routed below (each
    // carries its event) wait in the store's cache until the checkpoint writes them out. The
    // disk is filled to the last byte first, as when another process took the reserve.
    let bus = open_with(EmbeddedConfig {
        disk_reserve: 0,
        checkpoint_interval: Duration::from_secs(3600),
        ..EmbeddedConfig::new(&data)
    });
    let mut seen = Seen::default();
    for i in 0..200 {
        let id = format!("e{i}");
        bus.publish(vec![event(&id)]).await.unwrap();
        seen.accepted.insert(id);
    }
    // All routed, half handled.
    seen.deliver_some(&bus, 100).await;
    let filler = fs.fill(0);
    assert!(bus.flush().await.is_err(), "the checkpoint cannot write");
    let why = bus
        .health()
        .expect_err("the store should have failed its checkpoint on a full disk");
    assert!(why.contains("being reopened"), "{why}");
    // Outcomes refused meanwhile come back to be delivered again.
    seen.deliver(&bus).await;
    assert!(!seen.errors.is_empty(), "nothing was refused while broken");

    std::fs::remove_file(&filler).unwrap();
    wait_healthy(&bus, Duration::from_secs(5)).await;
    bus.publish(vec![event("after")]).await.unwrap();
    seen.accepted.insert("after".into());
    seen.drain(&bus, Duration::from_secs(15)).await;
    drop(bus);

    // What the reopened store holds agrees with what was seen: the accepted events are all
    // in the log, and what is still queued is only what was handled already (an outcome the
    // full disk refused is delivered again: at least once).
    let bus = open(&data, 0);
    let kept: HashSet<String> = bus
        .read("b", 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|(_, _, e)| e.id)
        .collect();
    assert!(seen.accepted.is_subset(&kept));
    let mut again = Seen::default();
    again.deliver(&bus).await;
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert!(again.handled.is_subset(&kept));
}
