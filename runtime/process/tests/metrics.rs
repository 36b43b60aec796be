//! Component rung: `sluice dev`'s wiring (`Local`) over an embedded bus on disk, seen through
//! the Prometheus text it serves.

use sluice_bus::{
    Publish,
    embedded::{EmbeddedBus, EmbeddedConfig},
};
use sluice_delivery::metrics::Metrics;
use sluice_process::local::Local;

fn count(text: &str, phase: &str) -> u64 {
    let key = format!("sluice_bus_writer_seconds_count{{phase=\"{phase}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The embedded bus's writer phases reach `/metrics` once the bus runs under `Local`.
#[tokio::test]
async fn the_bus_writer_phases_are_exposed() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(EmbeddedConfig::new(dir.path())).unwrap();
    let metrics = Metrics::new();
    let _local = Local::new(bus.clone(), metrics.clone());
    for i in 0..3 {
        let event = sluice_event::CloudEvent::new(format!("m{i}"), "/test", "com.example.t");
        let items = vec![Publish {
            bus: "default".into(),
            event,
            dedupe: true,
        }];
        bus.publish(items).await.unwrap();
    }
    bus.flush().await.unwrap();
    let text = metrics.encode();
    assert!(count(&text, "commit") >= 4, "{text}");
    assert!(count(&text, "journal") >= 3, "{text}");
    assert!(count(&text, "checkpoint") >= 1, "{text}");
}
