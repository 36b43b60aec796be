//! Delivery semantics (DESIGN §5), one suite run against both buses: `sluice dev` on the
//! embedded bus, and `sluice ingress` + `router` + `worker` on a nats-server of its own. Each
//! case is a function of the backend; `both!` makes one test per backend.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sluice_tests::{
    done_counts,
    nats::MACHINE_URL,
    sluice,
    sluice::{Backend, System, Tester},
    stdout, tester_trigger, wait_for,
};

/// Work retried then dead-lettered; pings dead-lettered (the hop limit); ordered events in
/// order per `data.k`.
fn triggers() -> String {
    [
        tester_trigger(
            "work",
            "com.example.work",
            &[
                "retry: { maxAttempts: 3, backoff: exponential, initialDelay: 300ms, maxDelay: 600ms }",
                "deadLetter: { bus: dead }",
            ],
        ),
        tester_trigger("ping", "com.example.ping", &["deadLetter: { bus: dead }"]),
        tester_trigger("ordered", "com.example.ordered", &["ordering: { key: data.k }"]),
    ]
    .join("---\n")
}

sluice_tests::both!(
    retries_then_dead_letters_with_reasons_and_redrive,
    producer_duplicates_are_dropped_within_the_window,
    events_sharing_an_ordering_key_are_handled_in_bus_order,
    a_self_triggering_handler_is_stopped_by_the_hop_limit,
    a_worker_killed_mid_flight_loses_nothing,
    mqtt_and_nats_messages_become_cloudevents_for_their_triggers,
    a_replay_redelivers_exactly_its_time_range_marked_and_in_key_order,
);

fn start(backend: Backend) -> Tester {
    Tester::start(backend, &triggers())
}

fn event(ty: &str, id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/e2e", "type": ty, "data": data})
}

fn work(id: &str, data: Value) -> Value {
    event("com.example.work", id, data)
}

fn done(sys: &System) -> HashMap<String, usize> {
    done_counts(&sys.events("default"))
}

fn retries_then_dead_letters_with_reasons_and_redrive(backend: Backend) {
    let Tester { sys, .. } = &start(backend);
    let batch = vec![
        work("ok-1", json!({})),
        work("bad-1", json!({"fail": true})),
        work("ok-2", json!({})),
        work("bad-2", json!({"fail": true})),
        work("fatal-1", json!({"fatal": true})),
    ];
    let published = Instant::now();
    assert_eq!(sys.post_batch(&batch).0, 202);
    let dead = wait_for(60, || {
        let d = sys.events("dead");
        (d.len() >= 3).then_some(d)
    })
    .unwrap_or_else(|| panic!("dead letters did not arrive\n{}", sys.logs()));
    // Two retries, each after at least initialDelay (300 ms): exhaustion cannot come sooner.
    assert!(
        published.elapsed() >= Duration::from_millis(600),
        "retries came faster than initialDelay allows: {:?}",
        published.elapsed()
    );
    assert_eq!(dead.len(), 3, "{dead:?}");
    let by_id: HashMap<&str, &Value> = dead
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    for id in ["bad-1", "bad-2"] {
        let e = by_id[id];
        assert_eq!(e["sluicereason"], "exhausted", "{e}");
        assert_eq!(e["sluiceattempts"], 3, "exactly maxAttempts: {e}");
        assert_eq!(e["sluicetrigger"], "e2e/work", "{e}");
        assert!(
            e["sluicelasterror"].as_str().unwrap().contains("exit"),
            "{e}"
        );
        assert_eq!(e["type"], "com.example.work", "the original is kept: {e}");
        assert_eq!(e["data"], json!({"fail": true}), "{e}");
    }
    assert_eq!(by_id["fatal-1"]["sluicereason"], "fatal");
    assert_eq!(
        by_id["fatal-1"]["sluiceattempts"], 1,
        "fatal skips the remaining attempts"
    );
    let handled = done(sys);
    assert!(
        handled.contains_key("ok-1") && handled.contains_key("ok-2"),
        "{handled:?}"
    );

    let url = format!("http://{}", sys.addr);
    let list = sluice(&["dlq", "list", "--trigger", "e2e/work", "--url", &url]);
    assert_eq!(list.status.code(), Some(0));
    assert_eq!(stdout(&list).lines().count(), 3, "{}", stdout(&list));

    // `sluice trace`: the retried event's four steps, from what the bus recorded. Steps are
    // recorded beside the delivery (on NATS without waiting for the server), so they may
    // trail the dead letter by a moment.
    let trace = wait_for(10, || {
        let out = sluice(&["trace", "bad-1", "--url", &url]);
        let text = stdout(&out);
        (out.status.code() == Some(0) && text.contains("attempt 3")).then_some(text)
    })
    .unwrap_or_else(|| panic!("sluice trace bad-1 never showed 3 attempts\n{}", sys.logs()));
    let lines: Vec<&str> = trace.lines().collect();
    assert_eq!(lines.len(), 5, "a heading and four steps:\n{trace}");
    assert!(
        lines[0].starts_with("event bad-1 (com.example.work from /e2e)"),
        "{trace}"
    );
    assert!(
        lines[1].ends_with("accepted on bus default, routed to e2e/work"),
        "{trace}"
    );
    for (line, n) in [(lines[2], 1), (lines[3], 2)] {
        assert!(
            line.contains(&format!("e2e/work: attempt {n} on ")),
            "{trace}"
        );
        assert!(
            line.contains("failed: retryable: exit status 1; retry in"),
            "{trace}"
        );
    }
    assert!(lines[4].contains("e2e/work: attempt 3 on "), "{trace}");
    assert!(
        lines[4]
            .ends_with("failed: retryable: exit status 1; dead-lettered (exhausted) to bus dead"),
        "{trace}"
    );
    let unknown = sluice(&["trace", "never-published", "--url", &url]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no recorded steps"));
    // Pages come from the bus (only the page is decoded), oldest first.
    let page = |query: &str| -> Value {
        let (status, _, body) = sys
            .request(
                "GET",
                &format!("/admin/triggers/e2e/work/dlq{query}"),
                &[],
                b"",
            )
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let oldest: Vec<String> = stdout(&list).lines().map(str::to_owned).collect();
    let middle = page("?offset=1&limit=1");
    assert_eq!(
        (&middle["total"], &middle["next"]),
        (&json!(3), &json!(2)),
        "{middle}"
    );
    assert_eq!(
        middle["deadLetters"].as_array().map(Vec::len),
        Some(1),
        "{middle}"
    );
    assert!(
        oldest[1].contains(middle["deadLetters"][0]["id"].as_str().unwrap()),
        "the second oldest: {middle} vs {oldest:?}"
    );
    let past = page("?offset=5&limit=2");
    assert_eq!(
        (&past["total"], &past["next"]),
        (&json!(3), &Value::Null),
        "{past}"
    );
    assert_eq!(past["deadLetters"], json!([]), "{past}");
    let redrive = sluice(&["dlq", "redrive", "--trigger", "e2e/work", "--url", &url]);
    assert_eq!(stdout(&redrive).trim(), "redriven 3");
    // Redriven events are delivered again: they fail again, all attempts anew.
    let again = wait_for(60, || {
        let d = sys.events("dead");
        (d.len() >= 6).then_some(d)
    })
    .unwrap_or_else(|| panic!("redriven events were not delivered again\n{}", sys.logs()));
    let retried: Vec<&Value> = again[3..]
        .iter()
        .filter(|e| e["sluicereason"] == "exhausted")
        .collect();
    assert_eq!(retried.len(), 2, "{again:?}");
    assert!(retried.iter().all(|e| e["sluiceattempts"] == 3));
    let purge = sluice(&["dlq", "purge", "--trigger", "e2e/work", "--url", &url]);
    assert_eq!(stdout(&purge).trim(), "purged 3");
    let list = sluice(&["dlq", "list", "--trigger", "e2e/work", "--url", &url]);
    assert_eq!(stdout(&list).trim(), "", "purge leaves nothing");
}

fn producer_duplicates_are_dropped_within_the_window(backend: Backend) {
    let Tester { sys, .. } = &start(backend);
    let e = work("dup-1", json!({"n": 1}));
    let (status, first) = sys.post_batch(std::slice::from_ref(&e));
    assert_eq!(status, 202);
    assert_eq!(first["accepted"], 1, "{first}");
    // The same (source, id) again, alone and inside a batch with a new event.
    let (_, again) = sys.post_batch(std::slice::from_ref(&e));
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["events"][0]["duplicate"], true, "{again}");
    let (_, mixed) = sys.post_batch(&[e.clone(), work("dup-2", json!({}))]);
    assert_eq!(mixed["accepted"], 1, "{mixed}");
    // Same id from another source is another event.
    let mut other = e.clone();
    other["source"] = json!("/elsewhere");
    assert_eq!(sys.post_batch(&[other]).1["accepted"], 1);
    let handled = wait_for(30, || {
        let d = done(sys);
        (d.contains_key("dup-2") && d.get("dup-1") == Some(&2)).then_some(d)
    })
    .unwrap_or_else(|| panic!("not handled: {:?}\n{}", done(sys), sys.logs()));
    std::thread::sleep(Duration::from_millis(500));
    let works: Vec<Value> = sys
        .events("default")
        .into_iter()
        .filter(|e| e["type"] == "com.example.work")
        .collect();
    assert_eq!(works.len(), 3, "one copy per (source, id): {works:?}");
    assert_eq!(done(sys), handled, "no late duplicates");
}

fn events_sharing_an_ordering_key_are_handled_in_bus_order(backend: Backend) {
    let Tester { sys, .. } = &start(backend);
    const KEYS: usize = 4;
    const PER_KEY: usize = 40;
    let events: Vec<Value> = (0..KEYS * PER_KEY)
        .map(|i| {
            event(
                "com.example.ordered",
                &format!("o{i}"),
                json!({"k": format!("key-{}", i % KEYS), "n": i}),
            )
        })
        .collect();
    for chunk in events.chunks(20) {
        assert_eq!(sys.post_batch(chunk).0, 202);
    }
    let replies = wait_for(60, || {
        let r: Vec<Value> = sys
            .events("default")
            .into_iter()
            .filter(|e| e["type"] == "com.example.done")
            .collect();
        (r.len() >= KEYS * PER_KEY).then_some(r)
    })
    .unwrap_or_else(|| panic!("not all handled\n{}", sys.logs()));
    // Replies are published in handling order; per key, n must rise.
    let mut last: HashMap<usize, i64> = HashMap::new();
    for r in &replies {
        let n = r["data"]["n"].as_i64().unwrap();
        let key = n as usize % KEYS;
        if let Some(prev) = last.insert(key, n) {
            assert!(prev < n, "key-{key}: {n} handled after {prev}");
        }
    }
    assert_eq!(last.len(), KEYS);
}

fn a_self_triggering_handler_is_stopped_by_the_hop_limit(backend: Backend) {
    let Tester { sys, .. } = &start(backend);
    let ping = event("com.example.ping", "p-1", json!({"loop": true}));
    assert_eq!(sys.post_batch(&[ping]).0, 202);
    let dead = wait_for(60, || {
        let d = sys.events("dead");
        (!d.is_empty()).then_some(d)
    })
    .unwrap_or_else(|| panic!("the loop was not stopped\n{}", sys.logs()));
    assert_eq!(dead[0]["sluicereason"], "loop", "{}", dead[0]);
    assert_eq!(dead[0]["sluicehops"], 17, "{}", dead[0]);
    std::thread::sleep(Duration::from_millis(500));
    let pings: Vec<Value> = sys
        .events("default")
        .into_iter()
        .filter(|e| e["type"] == "com.example.ping")
        .collect();
    assert_eq!(pings.len(), 17, "the original plus 16 hops");
    assert_eq!(pings.last().unwrap()["sluicehops"], 16);
    assert_eq!(sys.events("dead").len(), 1, "nothing after the stop");
}

fn a_worker_killed_mid_flight_loses_nothing(backend: Backend) {
    let Tester { sys, .. } = &mut start(backend);
    const TOTAL: usize = 4_000;
    let mut accepted: HashSet<String> = HashSet::new();
    let mut next = 0;
    let mut killed = false;
    while next < TOTAL {
        let batch: Vec<Value> = (next..(next + 100).min(TOTAL))
            .map(|i| work(&format!("w{i}"), json!({"n": i})))
            .collect();
        let (status, answer) = sys.post_batch(&batch);
        assert_eq!(status, 202, "batch at {next}: {answer}\n{}", sys.logs());
        accepted.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        next += batch.len();
        if !killed && next >= TOTAL / 2 {
            // Deliveries are in flight, retries and routing half done.
            sys.crash_and_restart_worker();
            killed = true;
        }
    }
    let handled = wait_for(300, || {
        let d = done(sys);
        accepted.iter().all(|id| d.contains_key(id)).then_some(d)
    })
    .unwrap_or_else(|| {
        let d = done(sys);
        let missing = accepted.iter().filter(|id| !d.contains_key(*id)).count();
        panic!("{missing} accepted events never handled\n{}", sys.logs());
    });
    sluice_tests::FaultCounts::of(TOTAL, &accepted, &handled).report(&format!(
        "killed_mid_flight_{}",
        format!("{backend:?}").to_lowercase()
    ));
    let duplicates: usize = handled.values().map(|n| n - 1).sum();
    // At most what was in flight at the crash: two worker tasks × concurrency 32 (the NATS
    // worker runs one task; its consumer holds at most maxInflight 100).
    assert!(duplicates <= 100, "{duplicates} duplicate deliveries");
    assert!(sys.events("dead").is_empty(), "nothing dead-lettered");
}

const BRIDGES: &str = "apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: from-mqtt, namespace: e2e }
spec:
  source: { mqtt: { url: 'mqtt://127.0.0.1:1883', topic: 'sluice-e2e/+/readings', qos: 1 } }
  pattern: { data: { celsius: [ { numeric: ['>', 30] } ] } }
  function: tester
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: from-nats, namespace: e2e }
spec:
  source: { nats: { subject: 'sensors.>' } }
  function: tester
";

fn mqtt_and_nats_messages_become_cloudevents_for_their_triggers(backend: Backend) {
    // The MQTT topic is unique per run: Mosquitto on 127.0.0.1:1883 is shared.
    let run = format!("r{}", std::process::id());
    let triggers = BRIDGES
        .replace("sluice-e2e/", &format!("sluice-e2e-{run}-{backend:?}/"))
        .replace("sensors.", &format!("sensors-{run}-{backend:?}."));
    let Tester { sys, .. } = &Tester::start(backend, &triggers);
    // `sluice dev` bridges a NATS source without a url from the machine's server.
    let url = sys
        .nats
        .as_ref()
        .map_or_else(|| MACHINE_URL.to_owned(), |n| n.url());
    // Bridges subscribe once the manifests are applied (the processes are ready); give the
    // subscriptions a moment to reach the brokers.
    std::thread::sleep(Duration::from_secs(1));
    // Over the bridges' 256 KiB limit: dropped (and logged), and what follows still flows.
    let oversized = format!(r#"{{"celsius": 40, "pad": "{}"}}"#, "x".repeat(300 * 1024));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        client
            .publish(
                format!("sensors-{run}-{backend:?}.attic"),
                oversized.clone().into(),
            )
            .await
            .unwrap();
        client
            .publish(
                format!("sensors-{run}-{backend:?}.kitchen"),
                r#"{"celsius": 21}"#.into(),
            )
            .await
            .unwrap();
        client.flush().await.unwrap();
        let opts = rumqttc_options(&format!("{run}-{backend:?}"));
        let (mqtt, mut events) = rumqttc::AsyncClient::new(opts, 10);
        let topic = |room: &str| format!("sluice-e2e-{run}-{backend:?}/{room}/readings");
        let readings = [
            ("attic", oversized.clone()),
            ("hall", r#"{"celsius": 35}"#.to_owned()),
            ("cellar", r#"{"celsius": 12}"#.to_owned()),
        ];
        for (room, body) in readings {
            mqtt.publish(topic(room), rumqttc::QoS::AtLeastOnce, false, body)
                .await
                .unwrap();
        }
        // Drive the MQTT connection until every publish is acknowledged.
        let mut acked = 0;
        while acked < 3 {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) =
                tokio::time::timeout(Duration::from_secs(10), events.poll())
                    .await
                    .expect("MQTT broker answers")
            {
                acked += 1;
            }
        }
    });
    let replies = wait_for(30, || {
        let r: Vec<Value> = sys
            .events("default")
            .into_iter()
            .filter(|e| e["type"] == "com.example.done")
            .collect();
        (r.len() >= 2).then_some(r)
    })
    .unwrap_or_else(|| panic!("bridged messages not handled\n{}", sys.logs()));
    std::thread::sleep(Duration::from_millis(500));
    let handled = sys
        .events("default")
        .into_iter()
        .filter(|e| e["type"] == "com.example.done")
        .count();
    assert_eq!(
        handled, 2,
        "the kitchen (NATS) and the hall (MQTT, > 30 °C); not the cellar, not the oversized attic \
         readings: {replies:?}"
    );
    let logs = sys.logs();
    for attic in [
        format!("sensors-{run}-{backend:?}.attic"),
        format!("sluice-e2e-{run}-{backend:?}/attic/readings"),
    ] {
        assert!(
            logs.lines().any(
                |l| l.contains("bridged message over the size limit dropped") && l.contains(&attic)
            ),
            "the drop from {attic} is logged\n{logs}"
        );
    }
}

fn rumqttc_options(run: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(format!("sluice-test-{run}"), "127.0.0.1", 1883);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Ordered events in three batches; the middle batch's time range is replayed into the
/// ordered Trigger: exactly its events arrive again, marked with the replay's name, in order
/// per key, and the archive does not grow. Bad requests are refused naming the field.
fn a_replay_redelivers_exactly_its_time_range_marked_and_in_key_order(backend: Backend) {
    let Tester { sys, .. } = &start(backend);
    const KEYS: usize = 3;
    let batch = |from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| {
                event(
                    "com.example.ordered",
                    &format!("r{i}"),
                    json!({"k": format!("key-{}", i % KEYS), "n": i}),
                )
            })
            .chain([work(&format!("w{from}"), json!({}))])
            .collect()
    };
    let send_and_wait = |events: Vec<Value>| {
        assert_eq!(sys.post_batch(&events).0, 202);
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        wait_for(60, || {
            let d = done(sys);
            ids.iter().all(|id| d.contains_key(id)).then_some(())
        })
        .unwrap_or_else(|| panic!("not handled\n{}", sys.logs()));
    };
    // A boundary between batches, clear of both: the range is inclusive at millisecond
    // precision, so an event accepted in the boundary's own millisecond would be inside it.
    let boundary = || {
        std::thread::sleep(Duration::from_millis(30));
        let t = rfc3339(std::time::SystemTime::now());
        std::thread::sleep(Duration::from_millis(30));
        t
    };
    send_and_wait(batch(0, 12));
    let from = boundary();
    send_and_wait(batch(100, 30));
    let to = boundary();
    send_and_wait(batch(200, 9));
    let archived = sys.events("default").len();
    let url = format!("http://{}", sys.addr);
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--bus", "default", "--url", &url];
        args.extend_from_slice(extra);
        sluice(&args)
    };

    // Refused, naming the field, before anything is sent.
    for (args, says) in [
        (
            vec!["--from", &from, "--trigger", "e2e/nope"],
            "trigger: no Trigger e2e/nope reads bus default",
        ),
        (
            vec!["--from", &from, "--pattern", r#"{"type": "x"}"#],
            "pattern:",
        ),
        (
            vec!["--from", "2999-01-01T00:00:00Z"],
            "from: is in the future",
        ),
        (vec!["--from", &to, "--to", &from], "to: is before from"),
        (vec!["--from", &from, "--name", "a b"], "name:"),
    ] {
        let out = replay(&args);
        assert!(
            !out.status.success(),
            "{args:?}: {}",
            sluice_tests::output_text(&out)
        );
        let text = sluice_tests::output_text(&out);
        assert!(text.contains(says), "{args:?} should say {says:?}: {text}");
    }

    // The middle range into the ordered Trigger: counted first, then re-delivered.
    let replay_middle = |last: &[&str]| {
        let mut args = vec!["--from", &from, "--to", &to, "--trigger", "e2e/ordered"];
        args.extend_from_slice(last);
        let out = replay(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            sluice_tests::output_text(&out)
        );
        stdout(&out)
    };
    let dry = replay_middle(&["--dry-run"]);
    assert!(
        dry.contains("30 matched, 30 would be delivered (e2e/ordered: 30)"),
        "{dry}"
    );
    let run = replay_middle(&["--name", "r1"]);
    assert!(
        run.contains("replay r1 Completed 100%") && run.contains("30 delivered"),
        "{run}"
    );
    let replayed = wait_for(60, || {
        let r: Vec<Value> = sys
            .events("default")
            .into_iter()
            .filter(|e| e["type"] == "com.example.done" && e["data"]["replay"] == "r1")
            .collect();
        (r.len() >= 30).then_some(r)
    })
    .unwrap_or_else(|| panic!("the replay was not delivered\n{}", sys.logs()));
    std::thread::sleep(Duration::from_millis(500));
    let replayed_again: usize = sys
        .events("default")
        .iter()
        .filter(|e| e["data"]["replay"] == "r1")
        .count();
    assert_eq!(replayed_again, 30, "each event of the range once");
    let ids: HashSet<&str> = replayed
        .iter()
        .map(|e| e["data"]["of"].as_str().unwrap())
        .collect();
    let expected: HashSet<String> = (100..130).map(|i| format!("r{i}")).collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect(),
        "exactly the range, only the ordered Trigger"
    );
    let mut last: HashMap<usize, i64> = HashMap::new();
    for r in &replayed {
        let n = r["data"]["n"].as_i64().unwrap();
        if let Some(prev) = last.insert(n as usize % KEYS, n) {
            assert!(prev < n, "replayed {n} after {prev} of the same key");
        }
    }
    // The archive holds what was published (and the replies), not the re-deliveries.
    let grown: Vec<Value> = sys.events("default").into_iter().skip(archived).collect();
    assert!(
        grown.iter().all(|e| e["type"] == "com.example.done"),
        "only replies were appended: {grown:?}"
    );

    let list = sluice(&["replay", "list", "--url", &url]);
    let listed: Vec<Value> = stdout(&list)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let r1 = listed
        .iter()
        .find(|r| r["name"] == "r1")
        .expect("r1 listed");
    assert_eq!(
        (r1["state"].as_str(), r1["delivered"].as_u64()),
        (Some("Completed"), Some(30))
    );
    let again = replay(&["--from", &from, "--to", &to, "--name", "r1"]);
    assert!(
        sluice_tests::output_text(&again).contains("already exists"),
        "{}",
        sluice_tests::output_text(&again)
    );
    // The archive read by time starts where the range does.
    let tail = sluice(&[
        "tail", "default", "--since", &from, "--count", "1", "--url", &url,
    ]);
    let first: Value = serde_json::from_str(stdout(&tail).trim()).unwrap();
    assert_eq!(first["id"], "r100", "{first}");
}
