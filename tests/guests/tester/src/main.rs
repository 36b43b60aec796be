//! A WASI command handler whose behaviour the event chooses, for the end-to-end tests:
//! `data.fail: true` fails retryably, `data.fatal: true` fails fatally, `data.spin: true`
//! computes forever (until the Function's timeout stops it), `data.loop: true`
//! replies with an event of its own type (so it re-triggers itself), anything else replies
//! `com.example.done` carrying the input's id (and its `sluicereplay`, when replayed, and the
//! value of the environment variable `data.env` names, when it names one); `data.echo: true`
//! replies with the whole `data` it was given (what a Trigger's transform built).
//!
//! Given a batch (a JSON array), it replies once, `com.example.batch` listing the items' ids and
//! `data`, and names the items with `data.fail: true` (retryable) and `data.fatal: true` as
//! failed; an item with `data.crash: true` fails the whole batch (exit status 1).

use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    if std::io::stdin().read_to_string(&mut input).is_err() {
        eprintln!("error: stdin unreadable");
        std::process::exit(65);
    }
    let event: serde_json::Value = match serde_json::from_str(&input) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: not JSON: {e}");
            std::process::exit(65);
        }
    };
    if let Some(items) = event.as_array() {
        batch(items);
        return;
    }
    let data = &event["data"];
    let flag = |k: &str| data[k].as_bool() == Some(true);
    if flag("fail") {
        eprintln!("warn: failing on purpose");
        std::process::exit(1);
    }
    if flag("spin") {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    if flag("fatal") {
        eprintln!("error: cannot ever handle this");
        std::process::exit(65);
    }
    let reply = if flag("echo") {
        serde_json::json!({"type": "com.example.done", "datacontenttype": "application/json",
            "data": {"of": event["id"], "input": data, "contenttype": event["datacontenttype"],
                "dataschema": event["dataschema"]}})
    } else if flag("loop") {
        serde_json::json!({"type": event["type"], "datacontenttype": "application/json", "data": {"loop": true}})
    } else {
        serde_json::json!({"type": "com.example.done", "datacontenttype": "application/json",
            "data": {"of": event["id"], "n": data["n"], "replay": event["sluicereplay"],
                "env": data["env"].as_str().and_then(|name| std::env::var(name).ok())}})
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{reply}");
}

fn batch(items: &[serde_json::Value]) {
    let flag = |item: &serde_json::Value, k: &str| item["data"][k].as_bool() == Some(true);
    if items.iter().any(|i| flag(i, "crash")) {
        eprintln!("warn: failing the whole batch on purpose");
        std::process::exit(1);
    }
    let failures: Vec<serde_json::Value> = items
        .iter()
        .filter_map(|i| {
            if flag(i, "fail") {
                Some(serde_json::json!({"itemIdentifier": i["id"], "reason": "failing on purpose"}))
            } else if flag(i, "fatal") {
                Some(serde_json::json!({"itemIdentifier": i["id"], "retryable": false,
                    "reason": "cannot ever handle this"}))
            } else {
                None
            }
        })
        .collect();
    let ids: Vec<&serde_json::Value> = items.iter().map(|i| &i["id"]).collect();
    let data: Vec<&serde_json::Value> = items.iter().map(|i| &i["data"]).collect();
    let reply = serde_json::json!({"type": "com.example.batch", "datacontenttype": "application/json",
        "data": {"ids": ids, "data": data}});
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{reply}");
    let _ = writeln!(out, "{}", serde_json::json!({"batchItemFailures": failures}));
}
