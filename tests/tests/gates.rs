//! A Trigger's gates on both buses: `delivery.rateLimit` holds the events handed to the
//! handler to its rate over every worker (three worker processes on NATS sharing one bucket;
//! on the embedded bus, the one `sluice dev`), and `delivery.circuitBreaker` pauses delivery
//! after consecutive failures, tries one event after the cool-off and resumes. Events held back
//! are not attempts: the Function's timeout is 1s, so its NATS lease (6s) runs out several
//! times while they wait, and none of them is delivered twice or traced with a second attempt.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sluice_tests::{
    sluice::{Backend, System},
    tester_wasm, wait_for,
};

sluice_tests::both!(
    rate_limit_holds_across_workers,
    breaker_opens_pauses_and_closes
);

fn trigger(name: &str, ty: &str, delivery: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{ name: {name}, namespace: e2e }}\n\
         spec:\n  source: {{ bus: default }}\n  pattern: {{ type: [{ty}] }}\n  function: tester\n  \
         delivery: {delivery}\n"
    )
}

/// The tester Function (timeout 1s) with `triggers`, on `backend`.
fn start(backend: Backend, dir: &Path, data: &Path, triggers: &str) -> System {
    std::fs::create_dir_all(dir).unwrap();
    let function = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {{name: tester, namespace: e2e}}\n\
         spec:\n  module: {{path: {}}}\n  abi: command\n  concurrency: 32\n  limits: {{timeout: 1s}}\n",
        tester_wasm().display()
    );
    std::fs::write(dir.join("function.yaml"), function).unwrap();
    std::fs::write(dir.join("triggers.yaml"), triggers).unwrap();
    System::start(backend, dir, data, "e2e/tester")
}

fn event(id: &str, ty: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/shop", "type": ty, "data": data})
}

/// How many times the handler replied to each event (the tester replies once per delivery).
fn done(sys: &System) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in sys.events("default") {
        if e["type"] == "com.example.done" {
            *out.entry(e["data"]["of"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    out
}

/// The value of the first `/metrics` line of `addr` starting with `series`.
fn metric(addr: &str, series: &str) -> Option<f64> {
    let (status, _, body) = sluice_tests::http(addr, "GET", "/metrics", &[], b"").ok()?;
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

const RATE: usize = 10;
const WINDOW: Duration = Duration::from_secs(30);

fn rate_limit_holds_across_workers(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, data) = (tmp.path().join("manifests"), tmp.path().join("data"));
    let triggers = trigger(
        "paced",
        "com.example.paced",
        &format!("{{ rateLimit: {{ perSecond: {RATE}, burst: 5 }} }}"),
    );
    let sys = start(backend, &dir, &data, &triggers);
    let mut workers = Vec::new();
    if backend == Backend::Nats {
        for name in ["w2", "w3"] {
            workers.push(sys.add_worker(&[], &dir, &data, "e2e/tester", "127.0.0.1:0", name));
        }
    }
    // More than the window can take, so the workers are never short of events.
    let n = RATE * WINDOW.as_secs() as usize * 2;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| event(&format!("p-{i}"), "com.example.paced", json!({"n": i})))
            .collect();
        let (status, answer) = sys.post_batch(&events);
        assert_eq!(status, 202, "{answer}");
    }
    // The window opens once the burst has gone, so it measures the rate alone.
    let before = wait_for(30, || {
        let d = done(&sys);
        (d.len() >= 10).then_some(d.len())
    })
    .unwrap_or_else(|| panic!("nothing delivered\n{}", sys.logs()));
    let t0 = Instant::now();
    std::thread::sleep(WINDOW);
    let after = done(&sys);
    let took = t0.elapsed();
    let delivered = after.len() - before;
    let expected = RATE as f64 * took.as_secs_f64();
    let off = 100.0 * (delivered as f64 - expected) / expected;
    println!("rate limit {RATE}/s on {backend:?}: {delivered} events in {took:.1?} ({off:+.1}%)");
    assert!(
        off.abs() <= 10.0,
        "{delivered} events in {took:.1?}: {off:+.1}% off {RATE}/s\n{}",
        sys.logs()
    );
    let twice: Vec<_> = after.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "events held back were delivered again: {twice:?}"
    );
    assert_eq!(sys.attempts("p-0"), [(1, "ok".into())]);
    if backend == Backend::Nats {
        // Every replica took its share of the one bucket.
        let series = "sluice_deliveries_succeeded_total{trigger=\"e2e/paced\"}";
        let addrs = [sys.worker_addr.clone().unwrap()]
            .into_iter()
            .chain(workers.iter().map(|(_, a)| a.clone()));
        for addr in addrs {
            let got = metric(&addr, series).unwrap_or(0.0);
            assert!(got > 0.0, "worker {addr} delivered none");
        }
    }
}

fn breaker_opens_pauses_and_closes(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, data) = (tmp.path().join("manifests"), tmp.path().join("data"));
    let triggers = trigger(
        "fragile",
        "com.example.fragile",
        "{ circuitBreaker: { consecutiveFailures: 3, coolOff: 8s }, retry: { maxAttempts: 1 }, deadLetter: { bus: dead } }",
    );
    let sys = start(backend, &dir, &data, &triggers);
    let worker = sys.worker_addr.clone().unwrap_or_else(|| sys.addr.clone());
    let state = "sluice_circuit_state{trigger=\"e2e/fragile\"}";
    let opened = "sluice_circuit_opened{trigger=\"e2e/fragile\"}";

    // A fatal failure says only that its event is bad: it does not count.
    let (status, answer) =
        sys.post_batch(&[event("bad", "com.example.fragile", json!({"fatal": true}))]);
    assert_eq!(status, 202, "{answer}");
    let failing: Vec<Value> = (0..3)
        .map(|i| {
            event(
                &format!("f-{i}"),
                "com.example.fragile",
                json!({"fail": true}),
            )
        })
        .collect();
    let (status, answer) = sys.post_batch(&failing);
    assert_eq!(status, 202, "{answer}");
    wait_for(30, || (sys.events("dead").len() >= 4).then_some(()))
        .unwrap_or_else(|| panic!("the failing events were not dead-lettered\n{}", sys.logs()));
    let t_open = Instant::now();
    assert_eq!(metric(&worker, state), Some(1.0), "open after 3 failures");
    assert_eq!(metric(&worker, opened), Some(1.0));

    let good: Vec<Value> = (0..5)
        .map(|i| event(&format!("g-{i}"), "com.example.fragile", json!({"n": i})))
        .collect();
    let (status, answer) = sys.post_batch(&good);
    assert_eq!(status, 202, "{answer}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        done(&sys).is_empty(),
        "delivered while open: {:?}",
        done(&sys)
    );

    let got = wait_for(30, || {
        let d = done(&sys);
        (d.len() >= 5).then_some(d)
    })
    .unwrap_or_else(|| panic!("not resumed after the cool-off\n{}", sys.logs()));
    let paused = t_open.elapsed();
    assert!(
        paused >= Duration::from_secs(6),
        "resumed {paused:?} after opening, before the 8s cool-off"
    );
    assert!(got.values().all(|n| *n == 1), "delivered twice: {got:?}");
    for i in 0..5 {
        assert_eq!(
            sys.attempts(&format!("g-{i}")),
            [(1, "ok".into())],
            "g-{i} waited without its wait counting as attempts"
        );
    }
    let closed = wait_for(5, || (metric(&worker, state) == Some(0.0)).then_some(()));
    assert!(closed.is_some(), "the trial's success closes it");
    assert_eq!(metric(&worker, opened), Some(1.0), "opened once");
}
