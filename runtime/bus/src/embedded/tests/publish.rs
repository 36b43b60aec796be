//! Publishing: order, positions and (source, id) deduplication, including how dedupe keys
//! expire and are indexed for an older store.

use super::*;
use crate::{
    Published,
    embedded::tables::{DEDUPE, DEDUPE_AGE},
};

#[tokio::test]
async fn publish_is_ordered_deduplicated_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let out = bus
        .publish(vec![
            publish("default", "a"),
            publish("default", "b"),
            publish("default", "a"),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            Published::Appended(1),
            Published::Appended(2),
            Published::Duplicate
        ]
    );
    let again = bus
        .publish(vec![publish("default", "a"), publish("other", "a")])
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![Published::Duplicate, Published::Appended(1)],
        "dedupe is per bus"
    );
    let read = bus.read("default", 0, 10).unwrap();
    assert_eq!(
        read.iter()
            .map(|(s, _, e)| (*s, e.id.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "a"), (2, "b")]
    );
    assert_eq!(bus.read("default", 1, 10).unwrap().len(), 1);
    assert_eq!(bus.head("default"), 2);
    assert_eq!(
        bus.buses(),
        vec!["default".to_string(), "other".to_string()]
    );
}

/// Dedupe keys older than the window are forgotten by the commits that follow (no full scan),
/// except a key published again since, whose newer record keeps deduplicating.
#[tokio::test]
async fn dedupe_keys_expire_with_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.dedupe_window = Duration::from_millis(100);
    let bus = EmbeddedBus::open(cfg).unwrap();
    bus.publish(vec![publish("default", "a"), publish("default", "b")])
        .await
        .unwrap();
    assert_eq!(dedupe_ids(&bus), (ids(&["a", "b"]), ids(&["a", "b"])));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // "b" again, a window later: accepted, and its new record outlives the expiry of the old.
    let out = bus
        .publish(vec![publish("default", "b"), publish("default", "c")])
        .await
        .unwrap();
    assert_eq!(out, vec![Published::Appended(3), Published::Appended(4)]);
    assert_eq!(dedupe_ids(&bus), (ids(&["b", "c"]), ids(&["b", "c"])));
    let out = bus.publish(vec![publish("default", "b")]).await.unwrap();
    assert_eq!(
        out,
        vec![Published::Duplicate],
        "the newer record still counts"
    );
}

/// A store written before the time index existed gets one on open, so its keys expire too.
#[tokio::test]
async fn dedupe_keys_of_an_older_store_are_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = open(dir.path());
        bus.publish(vec![publish("default", "a")]).await.unwrap();
        bus.flush().await.unwrap();
        let w = bus.store.get().unwrap().begin_write().unwrap();
        w.delete_table(DEDUPE_AGE).unwrap();
        w.commit().unwrap();
    }
    let bus = open(dir.path());
    assert_eq!(dedupe_ids(&bus), (ids(&["a"]), ids(&["a"])));
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// The event ids in the dedupe table (key order) and in its time index (time order).
fn dedupe_ids(bus: &EmbeddedBus) -> (Vec<String>, Vec<String>) {
    let id = |key: &str| key.rsplit('\0').next().unwrap_or_default().to_owned();
    let r = bus.store.get().unwrap().begin_read().unwrap();
    let (keys, by_age) = (
        r.open_table(DEDUPE).unwrap(),
        r.open_table(DEDUPE_AGE).unwrap(),
    );
    let keys = keys.iter().unwrap().map(|row| id(row.unwrap().0.value()));
    let by_age = by_age
        .iter()
        .unwrap()
        .map(|row| id(row.unwrap().0.value().1));
    (keys.collect(), by_age.collect())
}
