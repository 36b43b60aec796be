use std::sync::Arc;

use sluice_event::{CloudEvent, Extension};

use super::*;

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
                trigger: trigger.into(),
                key: None,
                accepted_ms: at,
                event: Arc::new(e),
            };
            (e, None)
        })
        .collect();
    bus.route(name, last, items).await.unwrap();
    n
}

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

#[tokio::test]
async fn route_lease_ack_retry_and_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.configure_queue(
        "shop/t",
        &QueueConfig {
            ordered: false,
            max_inflight: 10,
            lease: Duration::from_secs(5),
        },
    );
    bus.publish(vec![publish("default", "1"), publish("default", "2")])
        .await
        .unwrap();
    assert_eq!(route_all(&bus, "default", "shop/t").await, 2);
    assert_eq!(bus.route_cursor("default"), 2);
    assert_eq!(
        bus.depth("shop/t"),
        Depth {
            queued: 2,
            inflight: 0
        }
    );

    let leased = bus.lease("shop/t", 10);
    assert_eq!(leased.len(), 2);
    assert_eq!(
        bus.depth("shop/t"),
        Depth {
            queued: 0,
            inflight: 2
        }
    );
    bus.ack(&leased[0], Vec::new()).await.unwrap();
    bus.retry(&leased[1], now_ms() + 60_000, "boom")
        .await
        .unwrap();
    assert!(bus.lease("shop/t", 10).is_empty(), "retry is not due yet");
    assert_eq!(
        bus.depth("shop/t"),
        Depth {
            queued: 1,
            inflight: 0
        }
    );

    bus.retry(&leased[1], 0, "ignored: not leased")
        .await
        .unwrap();
    let dead = DeadLetter {
        trigger: "shop/t".into(),
        seq: leased[1].seq,
        reason: "exhausted".into(),
        attempts: 8,
        last_error: "boom".into(),
        at_ms: now_ms(),
        event: (*leased[1].event).clone(),
    };
    bus.dead_letter(dead, Some("dead-letter")).await.unwrap();
    assert_eq!(bus.depth("shop/t"), Depth::default());
    let dl = bus.read("dead-letter", 0, 10).unwrap();
    assert_eq!(dl.len(), 1);
    let e = &dl[0].2;
    assert_eq!(e.id, "2");
    assert_eq!(
        e.extensions["sluicereason"],
        Extension::String("exhausted".into())
    );
    assert_eq!(e.extensions["sluiceattempts"], Extension::Integer(8));
    assert_eq!(
        e.extensions["sluicelasterror"],
        Extension::String("boom".into())
    );
    assert_eq!(
        e.extensions["sluicetrigger"],
        Extension::String("shop/t".into())
    );
    assert_eq!(bus.dead_letters("shop/t").unwrap().len(), 1);

    assert_eq!(bus.redrive("shop/t").await.unwrap(), 1);
    assert!(bus.dead_letters("shop/t").unwrap().is_empty());
    let again = bus.lease("shop/t", 10);
    assert_eq!(
        (again.len(), again[0].attempt, again[0].event.id.as_str()),
        (1, 1, "2")
    );
    bus.dead_letter(
        DeadLetter {
            seq: again[0].seq,
            ..bus_dead(&again[0])
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(bus.purge("shop/t").await.unwrap(), 1);
    assert!(bus.dead_letters("shop/t").unwrap().is_empty());
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

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = open(dir.path());
        bus.configure_queue(
            "ns/t",
            &QueueConfig {
                ordered: false,
                max_inflight: 10,
                lease: Duration::from_secs(5),
            },
        );
        bus.publish((0..5).map(|i| publish("default", &i.to_string())).collect())
            .await
            .unwrap();
        route_all(&bus, "default", "ns/t").await;
        let leased = bus.lease("ns/t", 2);
        bus.ack(&leased[0], Vec::new()).await.unwrap();
        bus.retry(&leased[1], 0, "flaky").await.unwrap();
        // leased[1] retried, 3 never leased; an in-flight lease would also come back.
        let _inflight = bus.lease("ns/t", 1);
        bus.flush().await.unwrap();
    }
    let bus = open(dir.path());
    assert_eq!(bus.head("default"), 5);
    assert_eq!(bus.route_cursor("default"), 5);
    assert_eq!(
        bus.depth("ns/t"),
        Depth {
            queued: 4,
            inflight: 0
        },
        "acked one is gone, the rest is due"
    );
    let leased = bus.lease("ns/t", 10);
    let retried = leased.iter().find(|d| d.event.id == "1").unwrap();
    assert_eq!(retried.attempt, 2, "attempt count survives restart");
    let dup = bus.publish(vec![publish("default", "3")]).await.unwrap();
    assert_eq!(dup, vec![Published::Duplicate], "dedupe survives restart");
}

/// Routed entries are leasable before their commit is confirmed; whatever a worker then does
/// is ordered after that commit, so an entry acked early never comes back after a restart,
/// and positions stay unique across the restart.
#[tokio::test]
async fn routed_entries_are_leasable_before_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QueueConfig {
        ordered: false,
        max_inflight: 100,
        lease: Duration::from_secs(5),
    };
    let first_seqs: Vec<u64> = {
        let bus = open(dir.path());
        bus.configure_queue("ns/t", &cfg);
        bus.publish((0..3).map(|i| publish("default", &i.to_string())).collect())
            .await
            .unwrap();
        let items = bus
            .read("default", 0, 10)
            .unwrap()
            .into_iter()
            .map(|(_, at, e)| {
                let e = Enqueue {
                    trigger: "ns/t".into(),
                    key: None,
                    accepted_ms: at,
                    event: Arc::new(e),
                };
                (e, None)
            })
            .collect();
        let committed = bus.route_now("default", 3, items).await.unwrap();
        assert_eq!(bus.route_cursor("default"), 3, "the cursor moved at once");
        let leased = bus.lease("ns/t", 10);
        assert_eq!(leased.len(), 3, "leasable without waiting for the commit");
        let acks = leased[..2].iter().map(|d| bus.ack(d, Vec::new()));
        futures::future::try_join_all(acks).await.unwrap();
        committed.await.unwrap().unwrap();
        bus.flush().await.unwrap();
        leased.iter().map(|d| d.seq).collect()
    };
    let bus = open(dir.path());
    bus.configure_queue("ns/t", &cfg);
    assert_eq!(bus.route_cursor("default"), 3);
    let again = bus.lease("ns/t", 10);
    assert_eq!(again.len(), 1, "the two acked entries stay gone");
    assert_eq!(again[0].seq, first_seqs[2]);
    bus.publish(vec![publish("default", "9")]).await.unwrap();
    route_all(&bus, "default", "ns/t").await;
    let fresh = bus.lease("ns/t", 10);
    assert_eq!(fresh.len(), 1);
    assert!(
        first_seqs.iter().all(|s| *s < fresh[0].seq),
        "positions after a restart are new: {first_seqs:?} vs {}",
        fresh[0].seq
    );
}

#[tokio::test]
async fn retention_trims_oldest_beyond_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.retention_bytes = 1_000;
    let bus = EmbeddedBus::open(cfg).unwrap();
    bus.publish(
        (0..50)
            .map(|i| publish("default", &i.to_string()))
            .collect(),
    )
    .await
    .unwrap();
    let removed = bus.trim().await.unwrap();
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
        let w = bus.db.begin_write().unwrap();
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
    let r = bus.db.begin_read().unwrap();
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

/// A successful delivery's replies and its ack are one commit: afterwards the replies are on
/// their bus (with new positions, not deduplicated) and the entry is gone, across a restart.
#[tokio::test]
async fn ack_appends_the_replies_and_removes_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QueueConfig {
        ordered: false,
        max_inflight: 10,
        lease: Duration::from_secs(5),
    };
    {
        let bus = open(dir.path());
        bus.configure_queue("ns/t", &cfg);
        bus.publish(vec![publish("default", "in")]).await.unwrap();
        route_all(&bus, "default", "ns/t").await;
        let d = bus.lease("ns/t", 1).pop().unwrap();
        let reply = |id: &str| Publish {
            bus: "replies".into(),
            dedupe: false,
            ..publish("replies", id)
        };
        bus.ack(&d, vec![reply("r1"), reply("r1")]).await.unwrap();
        bus.flush().await.unwrap();
    }
    let bus = open(dir.path());
    bus.configure_queue("ns/t", &cfg);
    let ids: Vec<(u64, String)> = bus
        .read("replies", 0, 10)
        .unwrap()
        .into_iter()
        .map(|(pos, _, e)| (pos, e.id))
        .collect();
    assert_eq!(ids, vec![(1, "r1".into()), (2, "r1".into())]);
    assert_eq!(bus.depth("ns/t"), Depth::default(), "acked entry is gone");
    assert_eq!(bus.head("replies"), 2);
}

/// Heads are not stored with every publish; a bus that retention empties still keeps its
/// head across a restart, so its positions are never handed out twice.
#[tokio::test]
async fn a_bus_trimmed_empty_keeps_its_head_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.retention_age = Duration::ZERO;
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

/// The next event of an ordering key may be leased only once its predecessor's outcome is in
/// the writer's channel, so the next one's ack (and replies) always commit after it. Checked
/// with the writer held (a write transaction open here) and its channel full, the moment the
/// predecessor's ack waits to be queued.
#[tokio::test]
async fn the_next_event_of_a_key_waits_until_the_outcome_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let cfg = QueueConfig {
        ordered: true,
        max_inflight: 10,
        lease: Duration::from_secs(5),
    };
    bus.configure_queue("ns/t", &cfg);
    let keyed = |id: &str| Enqueue {
        trigger: "ns/t".into(),
        key: Some("k".into()),
        accepted_ms: now_ms(),
        event: Arc::new(event(id)),
    };
    bus.enqueue(vec![keyed("a"), keyed("b"), keyed("c")])
        .await
        .unwrap();
    // One step per outcome that releases the key: an ack, then a retry due at once.
    for (step, outcome) in ["ack", "retry"].into_iter().enumerate() {
        let first = bus.lease("ns/t", 10);
        assert_eq!(first.len(), 1, "step {step}: one at a time per key");
        let held = bus.db.begin_write().unwrap();
        // Filled twice: the writer takes a batch from the first fill and then blocks on the
        // transaction held here, so the second leaves the channel full.
        for _ in 0..2 {
            let flush = || Op::Flush {
                reply: oneshot::channel().0,
            };
            while bus.ops.try_send(flush()).is_ok() {}
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let settling = {
            let (bus, d) = (bus.clone(), first[0].clone());
            tokio::spawn(async move {
                match outcome {
                    "ack" => bus.ack(&d, Vec::new()).await,
                    _ => bus.retry(&d, 0, "boom").await,
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            bus.lease("ns/t", 10).is_empty(),
            "{outcome}: nothing of the key is leasable before the outcome is queued"
        );
        drop(held);
        settling.await.unwrap().unwrap();
        let next = bus.lease("ns/t", 10);
        assert_eq!(
            next.len(),
            1,
            "{outcome}: the key is leasable again once it is"
        );
        bus.retry(&next[0], 0, "put back").await.unwrap();
    }
}

/// Copies the store's files as they are now, as a crash would leave them (no checkpoint, no
/// clean close), into a fresh directory.
fn crash_copy(from: &std::path::Path, files: &[&str]) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for f in files {
        let (src, dst) = (from.join(f), to.path().join(f));
        if src.is_dir() {
            std::fs::create_dir(&dst).unwrap();
            for e in std::fs::read_dir(&src).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
            }
        } else {
            std::fs::copy(src, dst).unwrap();
        }
    }
    to
}

/// Bytes in the journal's segments.
fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Between checkpoints the store's own file holds none of the recent commits; the journal
/// does, and opening after a crash applies it: published events, routing, acks with their
/// replies, retries, dead letters and dedupe keys all come back.
#[tokio::test]
async fn a_crash_between_checkpoints_is_recovered_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QueueConfig {
        ordered: false,
        max_inflight: 10,
        lease: Duration::from_secs(5),
    };
    // No checkpoint by the clock during the test, however slow the machine.
    let bus = EmbeddedBus::open(EmbeddedConfig {
        checkpoint_interval: Duration::from_secs(3600),
        ..EmbeddedConfig::new(dir.path())
    })
    .unwrap();
    bus.configure_queue("ns/t", &cfg);
    bus.publish((0..5).map(|i| publish("default", &i.to_string())).collect())
        .await
        .unwrap();
    route_all(&bus, "default", "ns/t").await;
    let leased = bus.lease("ns/t", 3);
    let reply = Publish {
        bus: "replies".into(),
        event: event("r0"),
        dedupe: false,
    };
    bus.ack(&leased[0], vec![reply]).await.unwrap();
    bus.retry(&leased[1], 0, "flaky").await.unwrap();
    bus.dead_letter(bus_dead(&leased[2]), None).await.unwrap();
    // The last commits were bookkeeping, appended without fsync; a durable publish after
    // them syncs them too (one more event, 5 events in all on "default" after it).
    bus.publish(vec![publish("default", "5")]).await.unwrap();
    assert!(
        journal_bytes(dir.path()) > 0,
        "no checkpoint yet, so the journal holds the commits"
    );

    let crashed = crash_copy(dir.path(), &["bus.redb", "journal"]);
    // The store alone, with the journal as it was at the last checkpoint (empty, at open).
    let bare = crash_copy(dir.path(), &["bus.redb"]);
    std::fs::create_dir(bare.path().join("journal")).unwrap();
    drop(bus);

    let bare = open(bare.path());
    assert_eq!(
        bare.head("default"),
        0,
        "the store alone is at its last checkpoint (the empty store at open)"
    );
    drop(bare);

    let bus = open(crashed.path());
    bus.configure_queue("ns/t", &cfg);
    assert_eq!(bus.head("default"), 6);
    assert_eq!(bus.head("replies"), 1, "the ack's reply came back with it");
    assert_eq!(bus.route_cursor("default"), 5);
    assert_eq!(
        bus.depth("ns/t"),
        Depth {
            queued: 3,
            inflight: 0
        },
        "acked and dead-lettered entries stay gone; the retried one and two unleased remain"
    );
    let again = bus.lease("ns/t", 10);
    let retried = again.iter().find(|d| d.seq == leased[1].seq).unwrap();
    assert_eq!(retried.attempt, 2, "the retry's attempt count came back");
    assert_eq!(bus.dead_letters("ns/t").unwrap().len(), 1);
    let dup = bus.publish(vec![publish("default", "2")]).await.unwrap();
    assert_eq!(dup, vec![Published::Duplicate], "dedupe keys came back");
    // The queue counter came back from the journal too: positions after the crash are new.
    route_all(&bus, "default", "ns/t").await;
    let fresh = bus.lease("ns/t", 10);
    let before = again.iter().chain(&leased).map(|d| d.seq).max().unwrap();
    assert_eq!(
        fresh.len(),
        1,
        "the last event, routed only after the crash"
    );
    assert!(fresh[0].seq > before, "{} after {before}", fresh[0].seq);
    assert_eq!(
        bus.read("default", 0, 10).unwrap().len(),
        6,
        "the events themselves are read from the journal"
    );
}

fn small_segments(
    dir: &std::path::Path,
    segment_bytes: u64,
    retention_bytes: u64,
) -> EmbeddedConfig {
    EmbeddedConfig {
        segment_bytes,
        retention_bytes,
        ..EmbeddedConfig::new(dir)
    }
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

/// A data dir from before the journal was the bus log (events in the store, a single
/// `bus.journal` file with commits after the last checkpoint) opens with nothing lost: the
/// store's events move into the first segment, the old journal becomes the second and is
/// replayed, and the store keeps no event bodies.
#[tokio::test]
async fn an_older_data_dir_moves_its_events_into_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join("bus.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut events = w.open_table(tables::LEGACY_EVENTS).unwrap();
            let mut heads = w.open_table(HEADS).unwrap();
            for pos in 1..=3u64 {
                let rec = codec::encode_logged(pos, &event(&format!("old{pos}")).to_json());
                events.insert(("default", pos), rec.as_slice()).unwrap();
            }
            heads.insert("default", 3).unwrap();
            let mut meta = w.open_table(tables::META).unwrap();
            meta.insert(JOURNAL_COMMIT, 7).unwrap();
        }
        w.commit().unwrap();
        // The old journal: one commit after the checkpoint, appending the fourth event.
        let mut changes = Vec::new();
        let rec = codec::encode_logged(4, &event("old4").to_json());
        tables::note_event(&mut changes, "default", 4, &rec);
        journal::write_segment(&dir.path().join("bus.journal"), 8, 1, &changes).unwrap();
    }
    let bus = open(dir.path());
    let got: Vec<(u64, u64, String)> = bus
        .read("default", 0, 10)
        .unwrap()
        .into_iter()
        .map(|(pos, at, e)| (pos, at, e.id))
        .collect();
    let want: Vec<(u64, u64, String)> = (1..=4).map(|p| (p, p, format!("old{p}"))).collect();
    assert_eq!(got, want);
    assert_eq!(
        bus.head("default"),
        4,
        "the old journal's commit was replayed"
    );
    assert!(!dir.path().join("bus.journal").exists());
    let out = bus.publish(vec![publish("default", "new")]).await.unwrap();
    assert_eq!(out, vec![Published::Appended(5)]);
    drop(bus);
    let bus = open(dir.path());
    assert_eq!(bus.read("default", 0, 10).unwrap().len(), 5);
    let db = bus.db.clone();
    let r = db.begin_read().unwrap();
    assert!(
        matches!(
            r.open_table(tables::LEGACY_EVENTS),
            Err(redb::TableError::TableDoesNotExist(_))
        ),
        "no event bodies left in the store"
    );
}

/// The writer's phase times count what it did and start afresh when taken.
#[tokio::test]
async fn writer_times_count_commits_journal_appends_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.take_writer_times();
    for i in 0..3 {
        bus.publish(vec![publish("default", &i.to_string())])
            .await
            .unwrap();
    }
    bus.flush().await.unwrap();
    let t = bus.take_writer_times();
    // Three publishes, one after the other, and the flush: four commits, three journalled.
    assert_eq!((t.commit.count, t.journal.count), (4, 3), "{t:?}");
    // The flush checkpoints (a slow machine may have reached the interval before it too).
    assert!(t.checkpoint.count >= 1, "{t:?}");
    assert!(
        t.commit.max <= t.commit.total && t.commit.max > Duration::ZERO,
        "{t:?}"
    );
    assert_eq!(bus.take_writer_times(), WriterTimes::default());
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

#[test]
fn copying_forward_is_for_a_segment_nearly_empty_but_not_empty() {
    assert!(
        !worth_copying_forward(0, 4096),
        "an empty one is simply deleted"
    );
    assert!(worth_copying_forward(1, 4096));
    assert!(worth_copying_forward(512, 4096));
    assert!(!worth_copying_forward(513, 4096));
    assert!(!worth_copying_forward(u64::MAX, 64 << 20));
}
