//! `sluice dev` specifics, driven through the real binary over HTTP: malformed input, a real
//! CloudEvents SDK as the client, and reloading manifests. Delivery semantics shared with the
//! NATS bus (crashes, retries, dead letters, hop limit, ordering) are in `conformance.rs`.

use std::collections::HashMap;

use serde_json::{Value, json};
use sluice_tests::{Dev, done_counts, free_port, tester_trigger, wait_for};

/// Work retried fast then dead-lettered; pings dead-lettered (the hop limit).
fn triggers() -> String {
    [
        tester_trigger(
            "work",
            "com.example.work",
            &[
                "retry: { maxAttempts: 3, backoff: exponential, initialDelay: 10ms, maxDelay: 50ms }",
                "deadLetter: { bus: dead }",
            ],
        ),
        tester_trigger("ping", "com.example.ping", &["deadLetter: { bus: dead }"]),
    ]
    .join("---\n")
}

/// POSTs one event in structured mode to the default bus; returns the status.
fn post_event(dev: &Dev, event: &Value) -> u16 {
    let ct = [("content-type", "application/cloudevents+json")];
    dev.request("POST", "/", &ct, event.to_string().as_bytes())
        .unwrap()
        .0
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    sluice_tests::tester_setup(&triggers())
}

/// ids of the events `com.example.done` replies were made for, with multiplicity.
fn done(dev: &Dev) -> HashMap<String, usize> {
    done_counts(&dev.events("default"))
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
        triggers().replace("com.example.work]", "com.example.work2]"),
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
        triggers()
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

/// A flipped byte inside an early journal record, with valid records after it: `sluice dev`
/// refuses to start and names the file and bytes, cutting nothing; with
/// `--journal-skip-damaged` it starts and keeps every event outside the damaged record.
#[test]
fn a_damaged_journal_is_refused_by_name_then_read_past_on_request() {
    let (_tmp, dir, data) = setup();
    let ids = ["kept-before", "damaged-middle", "kept-after"];
    {
        let mut dev = Dev::start(&dir, &data, free_port(), &[]);
        for id in ids {
            let e = json!({"specversion": "1.0", "id": id, "source": "/j", "type": "com.example.other"});
            assert_eq!(post_event(&dev, &e), 202);
        }
        dev.proc.terminate();
    }
    let segment = data.join("journal").join("0000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(ids[1].len())
        .position(|w| w == ids[1].as_bytes())
        .expect("the event is in the first segment");
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let s = |p: &std::path::Path| p.display().to_string();
    let refused = sluice_tests::sluice(&[
        "dev",
        &s(&dir),
        "--data-dir",
        &s(&data),
        "--addr",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let text = sluice_tests::output_text(&refused);
    assert!(!refused.status.success(), "started on a damaged journal");
    assert!(
        text.contains(&s(&segment)) && text.contains("--journal-skip-damaged"),
        "the error names the segment and the way on: {text}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "nothing was cut");

    let dev = Dev::start(&dir, &data, free_port(), &["--journal-skip-damaged"]);
    let kept: Vec<String> = dev
        .events("default")
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        kept.contains(&ids[0].to_owned()) && kept.contains(&ids[2].to_owned()),
        "events outside the damage are kept: {kept:?}"
    );
    assert!(!kept.contains(&ids[1].to_owned()), "{kept:?}");
    assert!(
        dev.log_text().contains("journal damage skipped"),
        "the skip is logged"
    );
}
