//! Retention: the oldest events go by age or size, whole sealed segments are deleted, and a
//! quiet bus's few events are copied forward rather than pin a segment.

use super::*;
use crate::Published;

/// Retention is per bus: the one with a 1,000-byte budget loses its oldest events, the other
/// (default retention) keeps all of its own.
#[tokio::test]
async fn retention_trims_oldest_beyond_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.retention.buses.insert(
        "default".into(),
        crate::Retention {
            max_bytes: 1_000,
            ..Default::default()
        },
    );
    let bus = EmbeddedBus::open(cfg).unwrap();
    bus.publish(
        (0..50)
            .flat_map(|i| {
                [
                    publish("default", &i.to_string()),
                    publish("other", &i.to_string()),
                ]
            })
            .collect(),
    )
    .await
    .unwrap();
    let removed = bus.trim().await.unwrap();
    assert_eq!(
        bus.read("other", 0, 1000).unwrap().len(),
        50,
        "bus other keeps all"
    );
    let left = bus.read("default", 0, 1000).unwrap();
    assert!(
        removed > 0 && removed + left.len() == 50,
        "removed {removed}, left {}",
        left.len()
    );
    assert_eq!(left.last().unwrap().0, 50, "the newest stay");
    assert!(
        left.iter()
            .map(|(_, _, e)| e.to_json().len() + 8)
            .sum::<usize>()
            <= 1_000
    );
}

/// Heads are not stored with every publish; a bus that retention empties still keeps its
/// head across a restart, so its positions are never handed out twice.
#[tokio::test]
async fn a_bus_trimmed_empty_keeps_its_head_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.retention.default.max_age = Duration::ZERO;
    {
        let bus = EmbeddedBus::open(cfg.clone()).unwrap();
        let ids = ["1", "2", "3"].map(|id| publish("default", id));
        bus.publish(ids.into()).await.unwrap();
        bus.publish(vec![publish("other", "1")]).await.unwrap();
        assert_eq!(bus.trim().await.unwrap(), 4);
        assert!(bus.read("default", 0, 10).unwrap().is_empty());
        bus.flush().await.unwrap();
    }
    let bus = open(dir.path());
    assert_eq!((bus.head("default"), bus.head("other")), (3, 1));
    let out = bus.publish(vec![publish("default", "4")]).await.unwrap();
    assert_eq!(out, vec![Published::Appended(4)]);
}

fn small_segments(
    dir: &std::path::Path,
    segment_bytes: u64,
    retention_bytes: u64,
) -> EmbeddedConfig {
    let mut cfg = EmbeddedConfig {
        segment_bytes,
        ..EmbeddedConfig::new(dir)
    };
    cfg.retention.default.max_bytes = retention_bytes;
    cfg
}

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("journal")).unwrap().count()
}

/// Ten events on the default bus, ids `{round}-0` … `{round}-9`.
async fn publish_round(bus: &EmbeddedBus, round: usize) {
    let items = (0..10)
        .map(|i| publish("default", &format!("{round}-{i}")))
        .collect();
    bus.publish(items).await.unwrap();
}

/// The journal is the bus log: events are read from its segments, a full segment is sealed
/// at a checkpoint, and a sealed segment is deleted once retention has removed every event
/// in it; what is left reads back the same after a restart.
#[tokio::test]
async fn retention_deletes_sealed_segments_and_the_rest_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments(dir.path(), 2048, 3_000);
    let segments = || segment_count(dir.path());
    let bus = EmbeddedBus::open(cfg.clone()).unwrap();
    for round in 0..10 {
        publish_round(&bus, round).await;
        bus.flush().await.unwrap();
    }
    assert!(segments() >= 4, "{} segments", segments());
    let all = bus.read("default", 0, 1000).unwrap();
    assert_eq!(all.len(), 100);
    assert_eq!(all[42].2.id, "4-2");
    let removed = bus.trim().await.unwrap();
    bus.flush().await.unwrap();
    let left = bus.read("default", 0, 1000).unwrap();
    assert_eq!(removed + left.len(), 100);
    assert!(left.len() < 50, "{} left", left.len());
    assert!(segments() <= 3, "{} segments after retention", segments());
    assert_eq!(left.last().unwrap().2.id, "9-9");
    drop(bus);
    let bus = open(dir.path());
    assert_eq!(bus.read("default", 0, 1000).unwrap(), left);
    assert_eq!(bus.head("default"), 100);
    let out = bus.publish(vec![publish("default", "x")]).await.unwrap();
    assert_eq!(out, vec![Published::Appended(101)]);
}

/// Segments are shared by all buses: one old event of a quiet bus must not keep every
/// segment after it. It is copied forward (more than once here) and the rest goes; it reads
/// back the same, before and after a restart.
#[tokio::test]
async fn a_quiet_bus_does_not_pin_the_segments_of_a_busy_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments(dir.path(), 4096, 6_000);
    let segments = || segment_count(dir.path());
    let bus = EmbeddedBus::open(cfg.clone()).unwrap();
    bus.publish(vec![publish("quiet", "q1"), publish("quiet", "q2")])
        .await
        .unwrap();
    let quiet = bus.read("quiet", 0, 10).unwrap();
    assert_eq!(quiet.len(), 2);
    for round in 0..30 {
        publish_round(&bus, round).await;
        bus.flush().await.unwrap();
        bus.trim().await.unwrap();
        bus.flush().await.unwrap();
    }
    assert!(segments() <= 4, "{} segments kept", segments());
    assert!(
        !dir.path().join("journal/0000000000.log").exists(),
        "the quiet bus's first segment is gone"
    );
    assert_eq!(bus.read("quiet", 0, 10).unwrap(), quiet);
    let busy = bus.read("default", 0, 1000).unwrap();
    assert_eq!(busy.last().unwrap().2.id, "29-9");
    drop(bus);
    let bus = open_with(cfg);
    assert_eq!(bus.read("quiet", 0, 10).unwrap(), quiet);
    assert_eq!(bus.read("default", 0, 1000).unwrap(), busy);
    assert_eq!((bus.head("quiet"), bus.head("default")), (2, 300));
}
