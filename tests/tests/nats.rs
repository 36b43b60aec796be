//! Distributed mode under faults, each test on a nats-server of its own (free port, own store):
//! the server restarting mid-load, a router crashing mid-load, depth as JetStream counts it,
//! and graceful worker shutdown.

use std::{collections::HashMap, time::Duration};

use futures::TryStreamExt;
use serde_json::{Value, json};
use sluice_tests::{
    done_counts,
    sluice::{Backend, System, Tester},
    tester_trigger, wait_for,
};

/// Failures wait a minute for their retry.
fn triggers() -> String {
    tester_trigger(
        "work",
        "com.example.work",
        &["retry: { maxAttempts: 5, initialDelay: 60s, maxDelay: 60s }"],
    )
}

fn start() -> Tester {
    Tester::start(Backend::Nats, &triggers())
}

fn work(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/e2e", "type": "com.example.work", "data": data})
}

/// POSTs a batch, retrying while the bus is unavailable (the producer's side of at-least-once).
fn publish_until_accepted(sys: &System, events: &[Value]) {
    let body = serde_json::to_vec(events).unwrap();
    let ok = wait_for(60, || {
        let r = sys.request(
            "POST",
            "/buses/default/events",
            &[("content-type", "application/cloudevents-batch+json")],
            &body,
        );
        matches!(r, Ok((202, _, _))).then_some(())
    });
    assert!(ok.is_some(), "batch never accepted\n{}", sys.logs());
}

fn done(sys: &System) -> HashMap<String, usize> {
    done_counts(&sys.events("default"))
}

/// Publishes `total` events in batches of 100, running `midway` once at half. Returns the ids
/// accepted before `midway` ran and those accepted after.
fn load(
    sys: &mut System,
    total: usize,
    midway: impl FnOnce(&mut System),
) -> (Vec<String>, Vec<String>) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut midway = Some(midway);
    for start in (0..total).step_by(100) {
        let batch: Vec<Value> = (start..(start + 100).min(total))
            .map(|i| work(&format!("w{i}"), json!({"n": i})))
            .collect();
        publish_until_accepted(sys, &batch);
        let ids = batch.iter().map(|e| e["id"].as_str().unwrap().to_owned());
        if midway.is_some() {
            before.extend(ids);
        } else {
            after.extend(ids);
        }
        if start >= total / 2
            && let Some(f) = midway.take()
        {
            f(sys);
        }
    }
    (before, after)
}

fn all_handled(sys: &System, ids: &[String]) -> HashMap<String, usize> {
    wait_for(180, || {
        let d = done(sys);
        ids.iter().all(|id| d.contains_key(id)).then_some(d)
    })
    .unwrap_or_else(|| {
        let d = done(sys);
        let missing = ids.iter().filter(|id| !d.contains_key(*id)).count();
        panic!("{missing} accepted events never handled\n{}", sys.logs())
    })
}

#[test]
fn restarting_nats_server_mid_load_loses_nothing() {
    let Tester { sys, .. } = &mut start();
    let (before, after) = load(sys, 3_000, |sys| {
        let nats = sys.nats.as_mut().unwrap();
        nats.kill9();
        std::thread::sleep(Duration::from_millis(500));
        nats.restart();
    });
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    let handled = all_handled(sys, &all);
    // JetStream persists consumer acks lazily, so a crashed server forgets acks it had
    // received, and a work-queue stream forgets the message ids of what it had already
    // handed out: events routed or handled shortly before the crash may run again. That
    // redelivery is confined to work the crash interrupted; everything accepted after the
    // restart runs exactly once.
    let twice_after: Vec<_> = after.iter().filter(|id| handled[*id] > 1).collect();
    assert!(
        twice_after.is_empty(),
        "accepted after the restart, handled more than once: {twice_after:?}"
    );
    let duplicates: usize = handled.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= before.len(),
        "{duplicates} duplicates: more than the {} events accepted before the crash",
        before.len()
    );
}

#[test]
fn a_crashed_router_routes_each_event_once() {
    let Tester { sys, .. } = &mut start();
    let (mut ids, after) = load(sys, 3_000, |sys| {
        let router = sys.router.as_mut().unwrap();
        router.kill9();
        router.restart();
    });
    ids.extend(after);
    let handled = all_handled(sys, &ids);
    // Events the dead router had pulled are routed again by its successor, and the queue
    // drops the second copy by message id: no trigger sees an event twice.
    let twice: Vec<_> = handled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "routed twice: {twice:?}");
}

/// Consumer numbers straight from JetStream: (num_pending, num_ack_pending) summed.
fn jetstream_numbers(url: &str, ns: &str, trigger: &str) -> (u64, u64) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_stream(sluice_api::jetstream::queue_stream(ns, trigger))
            .await
            .unwrap();
        let infos: Vec<_> = stream.consumers().try_collect().await.unwrap();
        infos.iter().fold((0, 0), |(p, a), i| {
            (p + i.num_pending, a + i.num_ack_pending as u64)
        })
    })
}

#[test]
fn depth_equals_jetstream_consumer_numbers_and_a_worker_stops_gracefully() {
    let Tester { sys, .. } = &mut start();
    let depth = |sys: &System| -> Value {
        let (status, _, body) = sys
            .request("GET", "/admin/triggers/e2e/work/depth", &[], b"")
            .unwrap();
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    };
    // Ten failures wait a minute for their retry: in flight (acked later) on JetStream.
    let failing: Vec<Value> = (0..10)
        .map(|i| work(&format!("f{i}"), json!({"fail": true})))
        .collect();
    publish_until_accepted(sys, &failing);
    wait_for(30, || (depth(sys)["inflight"] == 10).then_some(()))
        .unwrap_or_else(|| panic!("failures not pending retry: {}\n{}", depth(sys), sys.logs()));
    let worker = sys.worker.as_mut().unwrap();
    let status = worker.terminate().expect("worker was running");
    assert!(
        status.success(),
        "SIGTERM ends the worker cleanly: {status:?}"
    );
    // Twenty more with no worker: queued.
    let queued: Vec<Value> = (0..20).map(|i| work(&format!("q{i}"), json!({}))).collect();
    publish_until_accepted(sys, &queued);
    let url = sys.nats.as_ref().unwrap().url();
    let d = wait_for(30, || {
        let d = depth(sys);
        (d["queued"] == 20).then_some(d)
    })
    .unwrap_or_else(|| panic!("not queued: {}", depth(sys)));
    let (pending, ack_pending) = jetstream_numbers(&url, "e2e", "work");
    assert_eq!(d["queued"], pending, "{d}");
    assert_eq!(d["inflight"], ack_pending, "{d}");
    assert_eq!(d["pending"], 30, "{d}");
}
