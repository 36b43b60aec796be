//! Distributed mode under faults, each test on a nats-server of its own (free port, own store):
//! the server restarting mid-load, a publisher killed between storing and answering, a Trigger
//! added and removed under load, depth as JetStream counts it, graceful worker shutdown, and
//! retention settings reaching the bus streams.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use sluice_api::jetstream::{bus_stream, is_trigger_consumer, trigger_subjects};
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
    let accepted: std::collections::HashSet<String> = all.iter().cloned().collect();
    sluice_tests::FaultCounts::of(all.len(), &accepted, &handled).report("nats_server_killed");
    // JetStream persists consumer acks lazily, so a crashed server forgets acks it had
    // received: events handled shortly before the crash may run again. That redelivery is
    // confined to work the crash interrupted; everything accepted after the restart runs
    // exactly once.
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

/// Stored copies per event id under `filter` of the default bus's stream.
fn stored_ids(url: &str, filter: &str) -> HashMap<String, usize> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(bus_stream("default")).await.unwrap();
        let c = stream
            .create_consumer(pull::Config {
                filter_subject: filter.to_owned(),
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let pending = c.cached_info().num_pending as usize;
        let mut out = HashMap::new();
        let mut msgs = c
            .fetch()
            .max_messages(pending.max(1))
            .messages()
            .await
            .unwrap();
        let mut seen = 0;
        while seen < pending {
            let Some(Ok(m)) = msgs.next().await else {
                break;
            };
            seen += 1;
            let e: Value = serde_json::from_slice(&m.payload).unwrap();
            *out.entry(e["id"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        out
    })
}

#[test]
fn a_publisher_killed_between_storing_and_answering_is_retried_without_duplicates() {
    let Tester { sys, .. } = &mut start();
    let url = sys.nats.as_ref().unwrap().url();
    let work_subjects = trigger_subjects("default", "e2e", "work");
    let mut ids = Vec::new();
    let mut partial = 0;
    // How many messages the bus stream holds, read from the server as the test goes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stream_messages = {
        let js = rt.block_on(async {
            async_nats::jetstream::new(async_nats::connect(&url).await.unwrap())
        });
        move |rt: &tokio::runtime::Runtime| {
            rt.block_on(async {
                let mut s = js.get_stream(bus_stream("default")).await.ok()?;
                s.info().await.ok().map(|i| i.state.messages)
            })
        }
    };
    // Each round posts a large batch and kills the ingress as soon as the stream holds the
    // first events of it (a little later in later rounds), so the ingress dies after storing
    // part of the batch but before answering, however loaded the machine is; the producer
    // then retries the same batch at the restarted ingress.
    for round in 0..24u64 {
        if partial >= 2 {
            break;
        }
        let batch: Vec<Value> = (0..1500)
            .map(|i| work(&format!("r{round}-{i}"), json!({"n": i})))
            .collect();
        let body = serde_json::to_vec(&batch).unwrap();
        let addr = sys.addr.clone();
        let before = stream_messages(&rt).unwrap_or(0);
        let post = std::thread::spawn(move || {
            sluice_tests::http(
                &addr,
                "POST",
                "/buses/default/events",
                &[("content-type", "application/cloudevents-batch+json")],
                &body,
            )
        });
        let started = std::time::Instant::now();
        while !post.is_finished()
            && stream_messages(&rt).unwrap_or(0) <= before
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(round % 4));
        sys.crash_and_restart_front();
        let answered = matches!(post.join().unwrap(), Ok((202, _, _)));
        let stored = stored_ids(&url, &work_subjects);
        let of_round = batch
            .iter()
            .filter(|e| stored.contains_key(e["id"].as_str().unwrap()))
            .count();
        eprintln!("round {round}: answered {answered}, {of_round} of the batch stored");
        if !answered && of_round > 0 && of_round < batch.len() {
            partial += 1;
        }
        publish_until_accepted(sys, &batch);
        ids.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    assert!(
        partial > 0,
        "no round killed the ingress between storing and answering; the test proved nothing"
    );
    let handled = all_handled(sys, &ids);
    let twice: Vec<_> = handled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    let stored = stored_ids(&url, &work_subjects);
    let copies: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(copies.is_empty(), "stored twice: {copies:?}");
}

#[test]
fn a_trigger_added_and_removed_under_load_changes_nothing_for_the_others() {
    let tester = &mut start();
    let manifests = tester.manifests();
    let sys = &mut tester.sys;
    let url = sys.nats.as_ref().unwrap().url();
    let extra = tester_trigger("extra", "com.example.work", &[]);
    let mut ids = Vec::new();
    let mut after_removal = Vec::new();
    for step in 0..30 {
        if step == 8 {
            std::fs::write(manifests.join("extra.yaml"), format!("---\n{extra}")).unwrap();
        }
        if step == 18 {
            std::fs::remove_file(manifests.join("extra.yaml")).unwrap();
        }
        if step >= 18 {
            // The ingress re-reads its manifests every second: events published well after
            // that window are routed without the removed Trigger.
            std::thread::sleep(Duration::from_millis(if step == 18 { 5_000 } else { 100 }));
        } else {
            std::thread::sleep(Duration::from_millis(150));
        }
        let batch: Vec<Value> = (0..100)
            .map(|i| work(&format!("s{step}-{i}"), json!({"n": i})))
            .collect();
        publish_until_accepted(sys, &batch);
        let batch_ids = batch.iter().map(|e| e["id"].as_str().unwrap().to_owned());
        if step >= 18 {
            after_removal.extend(batch_ids.clone());
        }
        ids.extend(batch_ids);
    }
    let handled = all_handled(sys, &ids);
    let work = stored_ids(&url, &trigger_subjects("default", "e2e", "work"));
    let extra = stored_ids(&url, &trigger_subjects("default", "e2e", "extra"));
    for id in &ids {
        // The Trigger that existed throughout got every event once.
        assert_eq!(work.get(id), Some(&1), "event {id} routed to work");
        // The added one got an event at most once, and its handled copies show in the count.
        let to_extra = extra.get(id).copied().unwrap_or(0);
        assert!(to_extra <= 1, "event {id} routed to extra {to_extra} times");
        assert!(
            handled[id] >= 1 && handled[id] <= 1 + to_extra,
            "event {id} handled {} times with {to_extra} copies for extra",
            handled[id]
        );
    }
    assert!(
        !extra.is_empty(),
        "the added Trigger never got an event: the route table was not reloaded"
    );
    let late: Vec<_> = after_removal
        .iter()
        .filter(|id| extra.contains_key(*id))
        .collect();
    assert!(late.is_empty(), "routed to the removed Trigger: {late:?}");
}

/// Consumer numbers straight from JetStream: (num_pending, num_ack_pending) summed.
fn jetstream_numbers(url: &str, ns: &str, trigger: &str) -> (u64, u64) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(bus_stream("default")).await.unwrap();
        let infos: Vec<_> = stream.consumers().try_collect().await.unwrap();
        infos
            .iter()
            .filter(|i| is_trigger_consumer(&i.name, ns, trigger))
            .fold((0, 0), |(p, a), i| {
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

/// The bus stream's (max_age, max_bytes).
fn stream_limits(url: &str, bus: &str) -> (Duration, i64) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(bus_stream(bus)).await.unwrap();
        let c = &s.info().await.unwrap().config;
        (c.max_age, c.max_bytes)
    })
}

/// A stream made with the default retention gets the limits an ingress started with
/// `--retention` configures, per bus; a worker (no flag) leaves them as they are.
#[test]
fn retention_flags_set_the_bus_streams_limits() {
    let Tester { sys, .. } = &mut start();
    let url = sys.nats.as_ref().unwrap().url();
    publish_until_accepted(sys, &[work("r-1", json!({}))]);
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(stream_limits(&url, "default"), (day, 1 << 30));
    sys.front
        .add_args(&["--retention", "2h:64Mi", "--retention", "default=30m:8Mi"]);
    sys.crash_and_restart_front();
    publish_until_accepted(sys, &[work("r-2", json!({}))]);
    assert_eq!(
        stream_limits(&url, "default"),
        (Duration::from_secs(1800), 8 << 20),
        "the bus named gets its own limits"
    );
    let handled = all_handled(sys, &["r-1".into(), "r-2".into()]);
    assert_eq!(handled.len(), 2, "{handled:?}");
    // The worker published the replies on the same bus without touching the limits.
    assert_eq!(
        stream_limits(&url, "default"),
        (Duration::from_secs(1800), 8 << 20)
    );
}

/// A worker's port serves its HTTP Triggers (behind the token when started with one) and
/// health, never publishing or admin calls; health stays open (the readiness wait passes
/// without a token).
#[test]
fn a_workers_port_serves_its_http_triggers_behind_the_token_and_nothing_else() {
    let Tester { sys, .. } = &mut start();
    sys.worker
        .as_mut()
        .unwrap()
        .add_args(&["--token", "w-s3cret"]);
    sys.crash_and_restart_worker();
    let addr = sys.worker_addr.clone().unwrap();
    let body = serde_json::to_vec(&[work("t-1", json!({}))]).unwrap();
    let batch = ("content-type", "application/cloudevents-batch+json");
    let post = |auth: Option<&str>| {
        let mut headers = vec![batch];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        sluice_tests::http(&addr, "POST", "/buses/default/events", &headers, &body)
            .unwrap()
            .0
    };
    // A worker's port is not a front door: no publishing and no admin calls, token or not.
    assert_eq!(post(None), 404);
    assert_eq!(post(Some("Bearer w-s3cret")), 404);
    let depth =
        sluice_tests::http(&addr, "GET", "/admin/triggers/e2e/work/depth", &[], b"").unwrap();
    assert_eq!(depth.0, 404, "no admin calls either");
    // Its HTTP Triggers take the token.
    let call = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        sluice_tests::http(&addr, "POST", "/fn/e2e/nothing-here", &headers, b"{}")
            .unwrap()
            .0
    };
    assert_eq!(call(None), 401);
    assert_eq!(call(Some("Bearer wrong")), 401);
    assert_eq!(
        call(Some("Bearer w-s3cret")),
        404,
        "past the token: no such Trigger"
    );
    // Events go in through the ingress.
    publish_until_accepted(sys, &[work("t-1", json!({}))]);
    all_handled(sys, &["t-1".into()]);
}

/// A batch JetStream stores only in part (its second event is over the server's max_payload)
/// is answered 503 naming which events are stored; the retry without the bad event stores the
/// rest and finds the first a duplicate.
#[test]
fn a_partly_stored_batch_says_which_events_are_stored() {
    let Tester { sys, .. } = &mut start();
    sys.front.add_args(&["--max-event-bytes", "3000000"]);
    sys.crash_and_restart_front();
    let big = work("p-big", json!({"blob": "x".repeat(1_500_000)}));
    let batch = [work("p-1", json!({})), big, work("p-2", json!({}))];
    let post = |events: &[Value]| sys.post_batch(events);
    let (status, answer) = post(&batch);
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("1 of 3 events stored"),
        "{answer}"
    );
    let events = answer["events"].as_array().unwrap();
    assert!(events[0]["position"].as_u64().is_some(), "{answer}");
    assert_eq!(events[1], json!({"id": "p-big", "stored": false}));
    assert_eq!(events[2], json!({"id": "p-2", "stored": false}));
    let (status, retry) = post(&[batch[0].clone(), batch[2].clone()]);
    assert_eq!(status, 202, "{retry}");
    assert_eq!(retry["events"][0]["duplicate"], true, "{retry}");
    assert_eq!(retry["accepted"], 1, "{retry}");
    let handled = all_handled(sys, &["p-1".into(), "p-2".into()]);
    assert_eq!((handled["p-1"], handled["p-2"]), (1, 1), "{handled:?}");
}
