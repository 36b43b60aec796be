//! Trigger queues: routing, leases, acks with their replies, retries and dead letters, and
//! the ordering a key's commits must keep.

use sluice_event::Extension;
use tokio::sync::oneshot;

use super::*;
use crate::{BusError, Depth, QueueConfig, embedded::writer::Op, now_ms};

#[tokio::test]
async fn route_lease_ack_retry_and_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    bus.configure_queue(
        "shop/t",
        &QueueConfig {
            bus: "b".into(),
            ordered: false,
            max_inflight: 10,
            lease: Duration::from_secs(5),
            prefetch: 1,
            gate: Default::default(),
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
    bus.retry(&leased[1], crate::sched_ms() + 300, "boom")
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

    // The first delivery's lease ended with its retry: its outcomes are refused from now on.
    let stale = bus.retry(&leased[1], 0, "not leased").await;
    assert!(
        matches!(stale, Err(BusError::LeaseLost { attempt: 1, .. })),
        "{stale:?}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = bus.lease("shop/t", 10);
    assert_eq!((second.len(), second[0].attempt), (1, 2));
    let dead = |attempts| DeadLetter {
        trigger: "shop/t".into(),
        seq: leased[1].seq,
        reason: "exhausted".into(),
        attempts,
        last_error: "boom".into(),
        at_ms: now_ms(),
        event: (*leased[1].event).clone(),
    };
    let stale = bus.dead_letter(dead(1), Some("dead-letter")).await;
    assert!(
        matches!(stale, Err(BusError::LeaseLost { .. })),
        "{stale:?}"
    );
    let stale = bus.ack(&leased[1], Vec::new()).await;
    assert!(
        matches!(stale, Err(BusError::LeaseLost { .. })),
        "{stale:?}"
    );
    assert_eq!(
        bus.depth("shop/t").inflight,
        1,
        "the second delivery keeps its lease"
    );
    bus.dead_letter(dead(2), Some("dead-letter")).await.unwrap();
    assert_eq!(bus.depth("shop/t"), Depth::default());
    let dl = bus.read("dead-letter", 0, 10).unwrap();
    assert_eq!(dl.len(), 1);
    let e = &dl[0].2;
    assert_eq!(e.id, "2");
    assert_eq!(
        e.extensions["sluicereason"],
        Extension::String("exhausted".into())
    );
    assert_eq!(e.extensions["sluiceattempts"], Extension::Integer(2));
    assert_eq!(
        e.extensions["sluicelasterror"],
        Extension::String("boom".into())
    );
    assert_eq!(
        e.extensions["sluicetrigger"],
        Extension::String("shop/t".into())
    );
    assert_eq!(bus.dead_letters("shop/t", 0, 100).unwrap().items.len(), 1);

    assert_eq!(bus.redrive("shop/t").await.unwrap(), 1);
    assert!(bus.dead_letters("shop/t", 0, 100).unwrap().items.is_empty());
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
    assert!(bus.dead_letters("shop/t", 0, 100).unwrap().items.is_empty());
}

/// Routed entries are leasable before their commit is confirmed; whatever a worker then does
/// is ordered after that commit, so an entry acked early never comes back after a restart,
/// and positions stay unique across the restart.
#[tokio::test]
async fn routed_entries_are_leasable_before_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QueueConfig {
        bus: "b".into(),
        ordered: false,
        max_inflight: 100,
        lease: Duration::from_secs(5),
        prefetch: 1,
        gate: Default::default(),
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
                    bus: "b".into(),
                    trigger: "ns/t".into(),
                    key: None,
                    replay: None,
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

/// A successful delivery's replies and its ack are one commit: afterwards the replies are on
/// their bus (with new positions, not deduplicated) and the entry is gone, across a restart.
#[tokio::test]
async fn ack_appends_the_replies_and_removes_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QueueConfig {
        bus: "b".into(),
        ordered: false,
        max_inflight: 10,
        lease: Duration::from_secs(5),
        prefetch: 1,
        gate: Default::default(),
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

/// The next event of an ordering key may be leased only once its predecessor's outcome is in
/// the writer's channel, so the next one's ack (and replies) always commit after it. Checked
/// with the writer held (a write transaction open here) and its channel full, the moment the
/// predecessor's ack waits to be queued.
#[tokio::test]
async fn the_next_event_of_a_key_waits_until_the_outcome_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let cfg = QueueConfig {
        bus: "b".into(),
        ordered: true,
        max_inflight: 10,
        lease: Duration::from_secs(5),
        prefetch: 1,
        gate: Default::default(),
    };
    bus.configure_queue("ns/t", &cfg);
    let keyed = |id: &str| Enqueue {
        bus: "b".into(),
        trigger: "ns/t".into(),
        key: Some("k".into()),
        replay: None,
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
        let held = bus.store.get().unwrap().begin_write().unwrap();
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

/// A gated Trigger's leases: the rate limit's burst goes at once and the rest at its rate, the
/// next due time is the next token's; an open breaker leases nothing, a half-open one a single
/// trial, and what was held back is leased with its first attempt.
#[tokio::test]
async fn the_gate_holds_events_back_without_attempts() {
    use crate::gate::{BreakerConfig, Gate, RateLimit};
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let cfg = QueueConfig {
        bus: "b".into(),
        ordered: false,
        max_inflight: 100,
        lease: Duration::from_secs(5),
        prefetch: 1,
        gate: Gate {
            rate: Some(RateLimit {
                per_second: 20,
                burst: 3,
            }),
            breaker: Some(BreakerConfig {
                failures: 2,
                cool_off_ms: 300,
            }),
        },
    };
    bus.configure_queue("ns/t", &cfg);
    let item = |id: &str| Enqueue {
        bus: "b".into(),
        trigger: "ns/t".into(),
        key: None,
        replay: None,
        accepted_ms: now_ms(),
        event: Arc::new(event(id)),
    };
    bus.enqueue((0..10).map(|i| item(&format!("e{i}"))).collect())
        .await
        .unwrap();
    let first = bus.lease("ns/t", 10);
    assert_eq!(first.len(), 3, "the burst");
    assert!(bus.lease("ns/t", 10).is_empty(), "the bucket is empty");
    let due = bus.next_due("ns/t").unwrap();
    let wait = due.saturating_sub(crate::sched_ms());
    assert!((1..=50).contains(&wait), "the next token in {wait} ms");

    // Two failures in a row open the breaker: nothing is leased, even with tokens.
    bus.record_outcome("ns/t", false);
    bus.record_outcome("ns/t", false);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(bus.lease("ns/t", 10).is_empty(), "open");
    let due = bus.next_due("ns/t").unwrap();
    assert!(due > crate::sched_ms() + 100, "due when the cool-off ends");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trial = bus.lease("ns/t", 10);
    assert_eq!(trial.len(), 1, "half-open: one trial");
    assert_eq!(trial[0].attempt, 1, "held back, not attempted");
    assert!(bus.lease("ns/t", 10).is_empty(), "one trial at a time");
    bus.record_outcome("ns/t", true);
    let after = bus.lease("ns/t", 10);
    assert_eq!(after.len(), 2, "closed again, at the rate: {after:?}");
    assert!(after.iter().all(|d| d.attempt == 1));
    let b = bus.breaker("ns/t").unwrap();
    assert_eq!((b.failures, b.open_until, b.opened), (0, 0, 1));
}
