//! Restarts and crashes: what a clean reopen keeps, what the journal brings back after a
//! crash, how an older data dir is migrated, and the writer's phase times.

use super::*;
use crate::{Depth, Published, QueueConfig};

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = open(dir.path());
        bus.configure_queue(
            "ns/t",
            &QueueConfig {
                bus: "b".into(),
                ordered: false,
                max_inflight: 10,
                lease: Duration::from_secs(5),
                prefetch: 1,
                gate: Default::default(),
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
        bus: "b".into(),
        ordered: false,
        max_inflight: 10,
        lease: Duration::from_secs(5),
        prefetch: 1,
        gate: Default::default(),
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
    assert_eq!(bus.dead_letters("ns/t", 0, 100).unwrap().items.len(), 1);
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
    let db = bus.store.get().unwrap();
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
