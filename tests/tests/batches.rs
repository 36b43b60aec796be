//! Batch delivery (`delivery.batch`) on both buses: the handler gets several events in one
//! invocation (the tester replies once per batch, listing the ids it got), a batch never holds
//! more than `maxEvents`, the items the handler names as failed are retried or dead-lettered on
//! their own attempt counts while the others are never delivered again, a retried event goes
//! alone (so an event that fails its whole batch costs the others one attempt, not all), and
//! an ordered Trigger's batches keep each key's order without waiting out `maxWait`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice_tests::{
    sluice::{Backend, Tester},
    wait_for,
};

sluice_tests::both!(
    failed_items_alone_are_retried,
    a_poisoned_batch_costs_its_other_events_one_attempt,
    ordered_batches_keep_each_key_in_order
);

const BATCHED: &str = r#"apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: items, namespace: e2e }
spec:
  source: { bus: default }
  pattern: { type: [com.example.item] }
  function: tester
  delivery:
    batch: { maxEvents: 4, maxWait: 500ms }
    deadLetter: { bus: dead }
    retry: { maxAttempts: 3, backoff: constant, initialDelay: 100ms, maxDelay: 100ms }
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: steps, namespace: e2e }
spec:
  source: { bus: default }
  pattern: { type: [com.example.step] }
  function: tester
  delivery:
    ordering: { key: data.key }
    # Longer than the test waits: an ordered batch must not wait for events its own keys hold back.
    batch: { maxEvents: 10, maxWait: 60s }
"#;

fn event(id: &str, ty: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/shop", "type": ty, "data": data})
}

/// The ids each batch the handler got held, in the order the replies were stored.
fn batches(events: &[Value]) -> Vec<Vec<String>> {
    events
        .iter()
        .filter(|e| e["type"] == "com.example.batch")
        .map(|e| {
            e["data"]["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

fn failed_items_alone_are_retried(backend: Backend) {
    let t = Tester::start(backend, BATCHED);
    let sys = &t.sys;
    let items: Vec<Value> = (0..10)
        .map(|i| {
            let data = match i {
                3 => json!({"n": i, "fail": true}),
                6 => json!({"n": i, "fatal": true}),
                _ => json!({"n": i}),
            };
            event(&format!("i-{i}"), "com.example.item", data)
        })
        .collect();
    let (status, answer) = sys.post_batch(&items);
    assert_eq!(status, 202, "{answer}");

    let dead = wait_for(30, || {
        let dead = sys.events("dead");
        (dead.len() >= 2).then_some(dead)
    })
    .unwrap_or_else(|| panic!("i-3 and i-6 were not dead-lettered\n{}", sys.logs()));
    let dead: BTreeMap<String, Value> = dead
        .into_iter()
        .map(|d| (d["id"].as_str().unwrap().to_owned(), d))
        .collect();
    assert_eq!(dead.keys().collect::<Vec<_>>(), ["i-3", "i-6"], "{dead:?}");
    assert_eq!(dead["i-3"]["sluicereason"], "exhausted");
    assert_eq!(dead["i-3"]["sluiceattempts"], 3);
    assert_eq!(
        dead["i-3"]["sluicelasterror"],
        "retryable: failing on purpose"
    );
    assert_eq!(dead["i-6"]["sluicereason"], "fatal");
    assert_eq!(dead["i-6"]["sluiceattempts"], 1);
    assert_eq!(
        dead["i-6"]["sluicelasterror"],
        "fatal: cannot ever handle this"
    );

    let got = wait_for(30, || {
        let got = batches(&sys.events("default"));
        let seen = got.iter().flatten().filter(|id| *id != "i-3").count();
        (seen >= 9).then_some(got)
    })
    .unwrap_or_else(|| panic!("not every item reached the handler\n{}", sys.logs()));
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for id in got.iter().flatten() {
        *times.entry(id.as_str()).or_default() += 1;
    }
    for i in (0..10).filter(|i| *i != 3) {
        let id = format!("i-{i}");
        assert_eq!(
            times.get(id.as_str()),
            Some(&1),
            "{id} was delivered once and never again: {got:?}"
        );
    }
    // A retried event goes alone: i-3's retries were batches of their own that failed whole,
    // so their replies were dropped; its trace has all three attempts.
    assert_eq!(times.get("i-3"), Some(&1), "i-3 retried alone: {got:?}");
    let tried = wait_for(10, || {
        let a = sys.attempts("i-3");
        (a.len() >= 3).then_some(a)
    })
    .unwrap_or_else(|| panic!("i-3's trace lacks attempts: {:?}", sys.attempts("i-3")));
    assert_eq!(
        tried,
        [
            (1, "retry".into()),
            (2, "retry".into()),
            (3, "deadLetter".into())
        ]
    );
    assert_eq!(sys.attempts("i-0"), [(1, "ok".into())]);
    // The worker's batch-size histogram counted every event handed over: ten, and i-3 twice more.
    let addr = sys.worker_addr.clone().unwrap_or_else(|| sys.addr.clone());
    let (status, _, body) =
        sluice_tests::http(&addr, "GET", "/metrics", &[], b"").expect("metrics answer");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    let sum = text
        .lines()
        .find_map(|l| l.strip_prefix("sluice_batch_events_sum{trigger=\"e2e/items\"} "))
        .unwrap_or_else(|| panic!("no batch histogram in\n{text}"));
    assert_eq!(sum.parse::<f64>().ok(), Some(12.0), "{sum}");
    let largest = got.iter().map(Vec::len).max().unwrap_or(0);
    assert_eq!(
        largest, 4,
        "ten events published at once fill batches of maxEvents: {got:?}"
    );
}

fn a_poisoned_batch_costs_its_other_events_one_attempt(backend: Backend) {
    let t = Tester::start(backend, BATCHED);
    let sys = &t.sys;
    // k-0 makes the handler exit 1: every batch holding it fails whole.
    let events: Vec<Value> = (0..3)
        .map(|i| {
            let data = if i == 0 {
                json!({"crash": true})
            } else {
                json!({"n": i})
            };
            event(&format!("k-{i}"), "com.example.item", data)
        })
        .collect();
    let (status, answer) = sys.post_batch(&events);
    assert_eq!(status, 202, "{answer}");
    let dead = wait_for(30, || {
        sys.events("dead").into_iter().find(|e| e["id"] == "k-0")
    })
    .unwrap_or_else(|| panic!("k-0 was not dead-lettered\n{}", sys.logs()));
    assert_eq!(dead["sluicereason"], "exhausted", "{dead}");
    assert_eq!(dead["sluiceattempts"], 3, "{dead}");
    for id in ["k-1", "k-2"] {
        let tried = wait_for(10, || {
            let a = sys.attempts(id);
            a.last().is_some_and(|(_, o)| o == "ok").then_some(a)
        })
        .unwrap_or_else(|| {
            panic!(
                "{id} never succeeded: {:?}\n{}",
                sys.attempts(id),
                sys.logs()
            )
        });
        // In k-0's first batch it failed with it once; its retry went alone and succeeded.
        assert!(
            tried == [(1, "ok".to_owned())]
                || tried == [(1, "retry".to_owned()), (2, "ok".to_owned())],
            "{id}: {tried:?}"
        );
    }
    let k0 = wait_for(10, || Some(sys.attempts("k-0")).filter(|a| a.len() >= 3));
    assert_eq!(
        k0,
        Some(vec![
            (1, "retry".into()),
            (2, "retry".into()),
            (3, "deadLetter".into())
        ])
    );
    assert!(
        dead["sluicelasterror"]
            .as_str()
            .unwrap()
            .contains("exit status 1"),
        "{dead}"
    );
}

fn ordered_batches_keep_each_key_in_order(backend: Backend) {
    let t = Tester::start(backend, BATCHED);
    let sys = &t.sys;
    let steps: Vec<Value> = (1..=3)
        .flat_map(|n| {
            ["a", "b"].map(|key| {
                event(
                    &format!("{key}{n}"),
                    "com.example.step",
                    json!({"key": key, "n": n}),
                )
            })
        })
        .collect();
    let (status, answer) = sys.post_batch(&steps);
    assert_eq!(status, 202, "{answer}");
    let got = wait_for(20, || {
        let got = batches(&sys.events("default"));
        (got.iter().flatten().count() >= 6).then_some(got)
    })
    .unwrap_or_else(|| {
        panic!(
            "the steps were not all handled within 20 s (maxWait is 60 s)\n{}",
            sys.logs()
        )
    });
    for batch in &got {
        for key in ["a", "b"] {
            assert!(
                batch.iter().filter(|id| id.starts_with(key)).count() <= 1,
                "a batch holds one event per key at most: {got:?}"
            );
        }
    }
    for key in ["a", "b"] {
        let order: Vec<&String> = got
            .iter()
            .flatten()
            .filter(|id| id.starts_with(key))
            .collect();
        assert_eq!(
            order,
            [1, 2, 3]
                .map(|n| format!("{key}{n}"))
                .iter()
                .collect::<Vec<_>>(),
            "key {key} in order: {got:?}"
        );
    }
}
