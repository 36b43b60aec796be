//! Reliability of `sluice dev`, driven through the real binary over HTTP: crash safety under
//! load, retries into the dead-letter bus and redrive, the hop limit, malformed input, and a
//! real CloudEvents SDK as the client.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sluice_tests::{Dev, free_port, sluice, stdout, tester_manifests, wait_for};

const TRIGGER: &str = "apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: work, namespace: e2e }
spec:
  source: { bus: default }
  pattern: { type: [com.example.work] }
  function: tester
  delivery:
    retry: { maxAttempts: 3, backoff: exponential, initialDelay: 10ms, maxDelay: 50ms }
    deadLetter: { bus: dead }
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: ping, namespace: e2e }
spec:
  source: { bus: default }
  pattern: { type: [com.example.ping] }
  function: tester
  delivery:
    deadLetter: { bus: dead }
";

fn work(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/e2e", "type": "com.example.work", "data": data})
}

fn post_batch(dev: &Dev, events: &[Value]) -> std::io::Result<u16> {
    let body = serde_json::to_vec(events).unwrap();
    dev.request(
        "POST",
        "/buses/default/events",
        &[("content-type", "application/cloudevents-batch+json")],
        &body,
    )
    .map(|r| r.0)
}

/// POSTs one event in structured mode to the default bus; returns the status.
fn post_event(dev: &Dev, event: &Value) -> u16 {
    let ct = [("content-type", "application/cloudevents+json")];
    dev.request("POST", "/", &ct, event.to_string().as_bytes())
        .unwrap()
        .0
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    tester_manifests(&dir, TRIGGER);
    (tmp, dir, data)
}

/// ids of the events `com.example.done` replies were made for, with multiplicity.
fn done(dev: &Dev) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in dev.events("default") {
        if e["type"] == "com.example.done" {
            *m.entry(e["data"]["of"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    m
}

#[test]
fn kill_9_mid_load_loses_nothing_accepted() {
    let (_tmp, dir, data) = setup();
    let port = free_port();
    let mut dev = Dev::start(&dir, &data, port, &[]);
    const TOTAL: usize = 20_000;
    let events: Vec<Value> = (0..TOTAL)
        .map(|i| work(&format!("w{i}"), json!({"n": i})))
        .collect();
    let mut accepted: HashSet<String> = HashSet::new();
    let mut next = 0;
    let mut killed = false;
    while next < TOTAL {
        let batch = &events[next..(next + 100).min(TOTAL)];
        match post_batch(&dev, batch) {
            Ok(202) => {
                accepted.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
                next += batch.len();
            }
            other => panic!("batch at {next} refused: {other:?}\n{}", dev.log_text()),
        }
        if !killed && next >= TOTAL / 2 {
            // Crash in the middle: deliveries are in flight, retries and routing half done.
            dev.kill9();
            killed = true;
            dev = Dev::start(&dir, &data, port, &[]);
        }
    }
    assert_eq!(accepted.len(), TOTAL);
    let handled = wait_for(600, || {
        let d = done(&dev);
        (accepted.iter().all(|id| d.contains_key(id))).then_some(d)
    });
    let handled = handled.unwrap_or_else(|| {
        let d = done(&dev);
        let missing = accepted.iter().filter(|id| !d.contains_key(*id)).count();
        panic!(
            "{missing} accepted events never handled\n{}",
            dev.log_text()
        );
    });
    let duplicates: usize = handled.values().map(|n| n - 1).sum();
    // At most what was in flight at the crash: 2 workers × concurrency 32.
    assert!(duplicates <= 64, "{duplicates} duplicate deliveries");
    let dead = dev.events("dead");
    assert!(dead.is_empty(), "nothing should be dead-lettered: {dead:?}");
}

#[test]
fn failures_reach_the_dead_letter_bus_after_max_attempts_and_redrive_replays_them() {
    let (_tmp, dir, data) = setup();
    let dev = Dev::start(&dir, &data, free_port(), &[]);
    let batch = vec![
        work("ok-1", json!({})),
        work("bad-1", json!({"fail": true})),
        work("ok-2", json!({})),
        work("bad-2", json!({"fail": true})),
        work("fatal-1", json!({"fatal": true})),
    ];
    assert_eq!(post_batch(&dev, &batch).unwrap(), 202);
    let dead = wait_for(60, || {
        let d = dev.events("dead");
        (d.len() >= 3).then_some(d)
    })
    .unwrap_or_else(|| panic!("dead letters did not arrive\n{}", dev.log_text()));
    assert_eq!(dead.len(), 3, "{dead:?}");
    let by_id: HashMap<&str, &Value> = dead
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    for id in ["bad-1", "bad-2"] {
        let e = by_id[id];
        assert_eq!(e["sluicereason"], "exhausted", "{e}");
        assert_eq!(e["sluiceattempts"], 3, "{e}");
        assert_eq!(e["sluicetrigger"], "e2e/work", "{e}");
        assert!(
            e["sluicelasterror"].as_str().unwrap().contains("exit"),
            "{e}"
        );
        assert_eq!(
            e["type"], "com.example.work",
            "the original event is kept: {e}"
        );
    }
    assert_eq!(by_id["fatal-1"]["sluicereason"], "fatal");
    assert_eq!(
        by_id["fatal-1"]["sluiceattempts"], 1,
        "fatal skips the remaining attempts"
    );
    let handled = done(&dev);
    assert!(
        handled.contains_key("ok-1") && handled.contains_key("ok-2"),
        "{handled:?}"
    );

    let url = format!("http://{}", dev.addr);
    let list = sluice(&["dlq", "list", "--trigger", "e2e/work", "--url", &url]);
    assert_eq!(list.status.code(), Some(0));
    assert_eq!(stdout(&list).lines().count(), 3, "{}", stdout(&list));
    let redrive = sluice(&["dlq", "redrive", "--trigger", "e2e/work", "--url", &url]);
    assert_eq!(stdout(&redrive).trim(), "redriven 3");
    // Redriven events are delivered again: they fail again, all attempts anew.
    let again = wait_for(60, || {
        let d = dev.events("dead");
        (d.len() >= 6).then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "redriven events were not delivered again\n{}",
            dev.log_text()
        )
    });
    let retried: Vec<&Value> = again[3..]
        .iter()
        .filter(|e| e["sluicereason"] == "exhausted")
        .collect();
    assert_eq!(retried.len(), 2);
    assert!(retried.iter().all(|e| e["sluiceattempts"] == 3));
    let purge = sluice(&["dlq", "purge", "--trigger", "e2e/work", "--url", &url]);
    assert_eq!(stdout(&purge).trim(), "purged 3");
}

#[test]
fn a_self_triggering_handler_is_stopped_by_the_hop_limit() {
    let (_tmp, dir, data) = setup();
    let dev = Dev::start(&dir, &data, free_port(), &[]);
    let ping = json!({"specversion": "1.0", "id": "p-1", "source": "/e2e", "type": "com.example.ping", "data": {"loop": true}});
    assert_eq!(post_event(&dev, &ping), 202);
    let dead = wait_for(60, || {
        let d = dev.events("dead");
        (!d.is_empty()).then_some(d)
    })
    .unwrap_or_else(|| panic!("the loop was not stopped\n{}", dev.log_text()));
    assert_eq!(dead[0]["sluicereason"], "loop", "{}", dead[0]);
    assert_eq!(dead[0]["sluicehops"], 17, "{}", dead[0]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pings: Vec<Value> = dev
        .events("default")
        .into_iter()
        .filter(|e| e["type"] == "com.example.ping")
        .collect();
    assert_eq!(pings.len(), 17, "the original plus 16 hops");
    assert_eq!(pings.last().unwrap()["sluicehops"], 16);
    assert_eq!(dev.events("dead").len(), 1, "nothing after the stop");
}

#[test]
fn malformed_requests_get_4xx_and_write_nothing() {
    let (_tmp, dir, data) = setup();
    let dev = Dev::start(&dir, &data, free_port(), &["--max-event-bytes", "2048"]);
    let structured = [("content-type", "application/cloudevents+json")];
    // (what, path, headers, body, expected status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("bad JSON", "/", structured.to_vec(), b"{\"specversion\": \"1.0\", ".to_vec(), 400),
        ("no id", "/", structured.to_vec(), br#"{"specversion":"1.0","source":"/s","type":"t"}"#.to_vec(), 400),
        ("no source", "/", structured.to_vec(), br#"{"specversion":"1.0","id":"1","type":"t"}"#.to_vec(), 400),
        ("no type", "/", structured.to_vec(), br#"{"specversion":"1.0","id":"1","source":"/s"}"#.to_vec(), 400),
        ("old specversion", "/", structured.to_vec(), br#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#.to_vec(), 400),
        ("binary without id", "/", vec![("ce-specversion", "1.0"), ("ce-source", "/s"), ("ce-type", "t")], b"{}".to_vec(), 400),
        ("not a CloudEvent", "/", vec![("content-type", "application/json")], b"{\"hello\": 1}".to_vec(), 400),
        (
            "batch with one bad event",
            "/buses/default/events",
            vec![("content-type", "application/cloudevents-batch+json")],
            br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","type":"t"}]"#.to_vec(),
            400,
        ),
        ("bad bus name", "/buses/Not_A_Bus/events", structured.to_vec(), br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#.to_vec(), 400),
        (
            "oversized event",
            "/",
            structured.to_vec(),
            format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"{}"}}"#, "x".repeat(4096)).into_bytes(),
            413,
        ),
        ("oversized body", "/", structured.to_vec(), vec![b' '; 5 << 20], 413),
    ];
    for (name, path, headers, body, want) in cases {
        let (status, _, answer) = dev.request("POST", path, &headers, &body).unwrap();
        assert_eq!(status, want, "{name}: {}", String::from_utf8_lossy(&answer));
        if status == 400 {
            let v: Value = serde_json::from_slice(&answer).unwrap_or_default();
            assert!(
                v["error"].as_str().is_some_and(|m| !m.is_empty()),
                "{name}: no reason given"
            );
        }
    }
    assert!(
        dev.events("default").is_empty(),
        "a refused request wrote something"
    );
}

#[test]
fn the_official_python_sdk_is_a_working_client() {
    let python = std::path::Path::new(sluice_tests::CLOUDEVENTS_PYTHON);
    assert!(
        python.exists(),
        "{} is missing: run `make setup` (scripts/setup.sh installs the CloudEvents SDK)",
        python.display()
    );
    let (_tmp, dir, data) = setup();
    let dev = Dev::start(&dir, &data, free_port(), &[]);
    let script = r#"
import sys, json, urllib.request
from cloudevents.http import CloudEvent
from cloudevents.conversion import to_binary, to_structured
url = sys.argv[1]
for i, conv in enumerate([to_binary, to_structured]):
    attrs = {"type": "com.example.work", "source": "/python-sdk", "id": f"py-{i}", "datacontenttype": "application/json"}
    ev = CloudEvent(attrs, {"mode": conv.__name__})
    headers, body = conv(ev)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req) as r:
        print(r.status, json.loads(r.read())["accepted"])
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(format!("http://{}/", dev.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().collect::<Vec<_>>(), vec!["202 1", "202 1"]);
    let handled = wait_for(60, || {
        let d = done(&dev);
        (d.contains_key("py-0") && d.contains_key("py-1")).then_some(d)
    });
    assert!(
        handled.is_some(),
        "SDK events were not delivered\n{}",
        dev.log_text()
    );
    let received: Vec<Value> = dev
        .events("default")
        .into_iter()
        .filter(|e| e["source"] == "/python-sdk")
        .collect();
    assert_eq!(received[0]["data"], json!({"mode": "to_binary"}));
    assert_eq!(received[1]["data"], json!({"mode": "to_structured"}));
}

#[test]
fn manifest_changes_apply_without_restart_and_a_broken_edit_keeps_the_last_good_version() {
    let (_tmp, dir, data) = setup();
    let dev = Dev::start(&dir, &data, free_port(), &[]);
    let publish = |id: &str, ty: &str| {
        let e = json!({"specversion": "1.0", "id": id, "source": "/e2e", "type": ty, "data": {}});
        assert_eq!(post_event(&dev, &e), 202);
    };
    // Retarget the work trigger to a new event type; the change applies on the fly.
    std::fs::write(
        dir.join("triggers.yaml"),
        TRIGGER.replace("com.example.work]", "com.example.work2]"),
    )
    .unwrap();
    let log_has =
        |needle: &str| wait_for(30, || dev.log_text().contains(needle).then_some(())).is_some();
    assert!(
        log_has("manifests changed; reloading"),
        "{}",
        dev.log_text()
    );
    publish("new-type", "com.example.work2");
    assert!(
        wait_for(30, || done(&dev).contains_key("new-type").then_some(())).is_some(),
        "{}",
        dev.log_text()
    );

    // A broken edit is reported with its field, and the running version stays.
    let before = dev.log_text().len();
    std::fs::write(
        dir.join("triggers.yaml"),
        TRIGGER
            .replace("com.example.work]", "com.example.work2]")
            .replace("maxAttempts: 3", "maxAttempts: 0"),
    )
    .unwrap();
    assert!(
        wait_for(30, || dev.log_text()[before..]
            .contains("spec.delivery.retry.maxAttempts: must be between 1 and 185")
            .then_some(()))
        .is_some(),
        "{}",
        dev.log_text()
    );
    assert!(
        dev.log_text()[before..].contains("Trigger e2e/work: keeping the last good version"),
        "{}",
        dev.log_text()
    );
    publish("still-works", "com.example.work2");
    assert!(
        wait_for(30, || done(&dev).contains_key("still-works").then_some(())).is_some(),
        "{}",
        dev.log_text()
    );
}
