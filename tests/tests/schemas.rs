//! Event contracts (EventSchema) on both buses: `sluice dev` on the embedded bus, and
//! `sluice ingress` + `router` + `worker` on a nats-server of its own. Each publisher checks
//! what it stores: the HTTP ingress (400 naming the path and rule), a bridge (dead letter
//! with the reason), a worker's replies (the attempt fails fatally) and its declared
//! `spec.emits`. Triggers select on the version an event was stamped with.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::{
    nats::MACHINE_URL,
    sluice::{Backend, System, Tester},
    wait_for,
};

sluice_tests::both!(
    the_ingress_refuses_what_the_schema_refuses_and_stamps_what_passes,
    replies_bridged_messages_and_undeclared_types_are_held_to_the_contract,
);

/// Orders (two versions, backward compatible), the tester's replies (n an integer), and the
/// messages bridged from NATS subject `SUBJECT` (an object with a string `id`).
const SCHEMAS: &str = "apiVersion: sluice.dev/v1alpha1
kind: EventSchema
metadata: { name: order, namespace: e2e }
spec:
  type: com.example.order
  versions:
    - version: 1
      schema: { type: object, required: [id], properties: { id: { type: string } } }
    - version: 2
      schema:
        type: object
        required: [id]
        properties:
          id: { type: string }
          total: { type: number, minimum: 0 }
          items: { type: array, items: { type: object, required: [sku], properties: { sku: { type: string } } } }
---
apiVersion: sluice.dev/v1alpha1
kind: EventSchema
metadata: { name: done, namespace: e2e }
spec:
  type: com.example.done
  versions:
    - version: 1
      schema: { type: object, properties: { n: { type: [integer, 'null'] } } }
---
apiVersion: sluice.dev/v1alpha1
kind: EventSchema
metadata: { name: bridged, namespace: e2e }
spec:
  type: dev.sluice.nats.message
  versions:
    - version: 1
      schema: { type: object, required: [id], properties: { id: { type: string } } }
";

/// Orders stamped v1 go to `orders-v1`, v2 to `orders-v2`; both dead-letter on bus `dead`.
fn triggers(subject: &str) -> String {
    format!(
        "{SCHEMAS}---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{ name: orders-v1, namespace: e2e }}
spec:
  source: {{ bus: default }}
  pattern: {{ type: [com.example.order] }}
  schemaVersion: {{ max: 1 }}
  function: tester
  delivery: {{ deadLetter: {{ bus: dead }} }}
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{ name: orders-v2, namespace: e2e }}
spec:
  source: {{ bus: default }}
  pattern: {{ type: [com.example.order] }}
  schemaVersion: {{ min: 2 }}
  function: tester
  delivery: {{ deadLetter: {{ bus: dead }} }}
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{ name: bridged, namespace: e2e }}
spec:
  source: {{ nats: {{ subject: '{subject}' }} }}
  function: tester
  delivery: {{ deadLetter: {{ bus: dead }} }}
"
    )
}

fn order(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/shop", "type": "com.example.order", "data": data})
}

/// The Triggers the event `id` was routed to, from its trace.
fn routed_to(sys: &System, id: &str) -> Vec<String> {
    sys.trace_steps(id)
        .iter()
        .filter(|s| s["step"] == "routed")
        .flat_map(|s| s["triggers"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

fn the_ingress_refuses_what_the_schema_refuses_and_stamps_what_passes(backend: Backend) {
    let run = format!("s{}-{backend:?}", std::process::id());
    let t = Tester::start(backend, &triggers(&format!("schemas.{run}")));
    let sys = &t.sys;

    // One invalid event refuses its whole batch: nothing of it is stored.
    let (status, answer) = sys.post_batch(&[
        order("good-0", json!({"id": "o-0"})),
        order(
            "bad-1",
            json!({"id": 7, "total": -1, "items": [{"sku": "a"}, {"qty": 1}]}),
        ),
    ]);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["index"], 1, "{answer}");
    assert_eq!(answer["schema"], "e2e/order", "{answer}");
    assert_eq!(answer["version"], 2, "{answer}");
    let failures: Vec<(String, String)> = answer["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("$.data.id", "type"),
        ("$.data.total", "minimum"),
        ("$.data.items[1]", "required"),
    ] {
        assert!(
            failures.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} not in {failures:?}"
        );
    }
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("event 1 (bad-1): EventSchema e2e/order v2: "),
        "{error}"
    );

    // Valid events are stored stamped: the newest version, or the one `dataschema` names.
    let (status, answer) = sys.post_batch(&[order("o-2", json!({"id": "o-2", "total": 3})), {
        let mut e = order("o-1", json!({"id": "o-1"}));
        e["dataschema"] = json!("sluice:eventschema/e2e/order/v1");
        e
    }]);
    assert_eq!(status, 202, "{answer}");
    // A producer may not stamp itself.
    let mut forged = order("o-3", json!({"id": "o-3"}));
    forged["sluiceschemaversion"] = json!(1);
    assert_eq!(sys.post_batch(&[forged]).0, 400);
    // A dataschema naming a version that does not exist.
    let mut unknown = order("o-4", json!({"id": "o-4"}));
    unknown["dataschema"] = json!("sluice:eventschema/e2e/order/v7");
    let (status, answer) = sys.post_batch(&[unknown]);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["failures"][0]["path"], "$.dataschema", "{answer}");

    let stored = sys.events("default");
    let stamp = |id: &str| {
        stored
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["sluiceschemaversion"].clone())
    };
    assert_eq!(stamp("o-2"), Some(json!(2)));
    assert_eq!(stamp("o-1"), Some(json!(1)));
    for refused in ["good-0", "bad-1", "o-3", "o-4"] {
        assert_eq!(stamp(refused), None, "{refused} must not be stored");
    }
    // Each Trigger got the versions its range selects, and the tester replied to both.
    let replies = wait_for(30, || {
        let done: Vec<Value> = sys
            .events("default")
            .into_iter()
            .filter(|e| e["type"] == "com.example.done")
            .collect();
        (done.len() >= 2).then_some(done)
    })
    .unwrap_or_else(|| panic!("the orders were not handled\n{}", sys.logs()));
    assert!(
        replies.iter().all(|r| r["sluiceschemaversion"] == 1),
        "replies are checked (and stamped) against e2e/done: {replies:?}"
    );
    assert_eq!(routed_to(sys, "o-1"), ["e2e/orders-v1"]);
    assert_eq!(routed_to(sys, "o-2"), ["e2e/orders-v2"]);

    // An incompatible new version is refused and the accepted versions stay in force.
    let manifests = t.manifests().join("triggers.yaml");
    let text = std::fs::read_to_string(&manifests).unwrap();
    std::fs::write(&manifests, with_version_3(&text)).unwrap();
    let refused = wait_for(30, || {
        let logs = sys.logs();
        logs.contains("version 3 is not backward compatible with version 2")
            .then_some(logs)
    });
    assert!(
        refused.is_some(),
        "the incompatible update is reported\n{}",
        sys.logs()
    );
    let (status, answer) = sys.post_batch(&[order("o-5", json!({"id": 5}))]);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["version"], 2, "still v2: {answer}");
    let (status, answer) = sys.post_batch(&[order("o-6", json!({"id": "o-6"}))]);
    assert_eq!(status, 202, "no currency needed: v3 was refused: {answer}");
    // good-0 and bad-1 (refused as one batch), o-4 and o-5; the forged stamp is refused
    // before any schema is consulted.
    let (_, _, metrics) = sys.request("GET", "/metrics", &[], b"").unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("sluice_events_refused_total{bus=\"default\"} 4"),
        "{metrics}"
    );
}

/// The manifests with a version 3 of the order schema after version 2 that requires a new
/// field: not backward compatible.
fn with_version_3(text: &str) -> String {
    let v3 = "    - version: 3\n      schema: { type: object, required: [id, currency] }\n";
    let anchor = "          items: { type: array, items: { type: object, required: [sku], properties: { sku: { type: string } } } }\n";
    assert!(text.contains(anchor), "the order schema's last line");
    text.replacen(anchor, &format!("{anchor}{v3}"), 1)
}

fn replies_bridged_messages_and_undeclared_types_are_held_to_the_contract(backend: Backend) {
    let run = format!("s{}-{backend:?}", std::process::id());
    let subject = format!("schemas.{run}");
    let t = Tester::start_with_function(
        backend,
        "  emits: [com.example.done]\n",
        &triggers(&subject),
    );
    let sys = &t.sys;

    // A reply its schema refuses (n must be an integer): the attempt fails fatally and the
    // order is dead-lettered with the reason; so is a reply of a type the Function does not
    // declare (`loop` makes the tester reply with the order's own type).
    let (status, answer) = sys.post_batch(&[
        order("r-1", json!({"id": "r-1", "n": "many"})),
        order("r-2", json!({"id": "r-2", "loop": true})),
        order("r-3", json!({"id": "r-3", "n": 3})),
    ]);
    assert_eq!(status, 202, "{answer}");

    // Bridged messages: a valid one is handled, an invalid one dead-lettered with the reason.
    let url = sys
        .nats
        .as_ref()
        .map_or_else(|| MACHINE_URL.to_owned(), |n| n.url());
    std::thread::sleep(Duration::from_secs(1));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        for body in [r#"{"id": "b-1"}"#, r#"{"id": 2}"#] {
            client.publish(subject.clone(), body.into()).await.unwrap();
        }
        client.flush().await.unwrap();
    });

    let dead = wait_for(30, || {
        let d = sys.events("dead");
        (d.len() >= 3).then_some(d)
    })
    .unwrap_or_else(|| panic!("three dead letters expected\n{}", sys.logs()));
    let by_id = |id: &str| dead.iter().find(|e| e["id"] == id).cloned();
    let r1 = by_id("r-1").unwrap_or_else(|| panic!("r-1 dead-lettered: {dead:?}"));
    assert_eq!(r1["sluicereason"], "fatal", "{r1}");
    let why = r1["sluicelasterror"].as_str().unwrap();
    assert!(
        why.contains("reply 0 (com.example.done): EventSchema e2e/done v1: $.data.n:")
            && why.contains("(rule type)"),
        "{why}"
    );
    let r2 = by_id("r-2").unwrap_or_else(|| panic!("r-2 dead-lettered: {dead:?}"));
    let why = r2["sluicelasterror"].as_str().unwrap();
    assert!(
        why.contains(
            "type \"com.example.order\", which Function e2e/tester does not list in spec.emits"
        ),
        "{why}"
    );
    let bridged = dead
        .iter()
        .find(|e| e["type"] == "dev.sluice.nats.message")
        .unwrap_or_else(|| panic!("the invalid bridged message dead-lettered: {dead:?}"));
    assert_eq!(bridged["sluicereason"], "schema", "{bridged}");
    assert_eq!(bridged["data"]["id"], 2, "{bridged}");
    assert!(
        bridged["sluicelasterror"]
            .as_str()
            .unwrap()
            .starts_with("EventSchema e2e/bridged v1: $.data.id: "),
        "{bridged}"
    );

    // What kept the contract was handled: r-3 and the valid bridged message.
    let done = wait_for(30, || {
        let d: Vec<Value> = sys
            .events("default")
            .into_iter()
            .filter(|e| e["type"] == "com.example.done")
            .collect();
        (d.len() >= 2).then_some(d)
    })
    .unwrap_or_else(|| panic!("r-3 and b-1 handled\n{}", sys.logs()));
    std::thread::sleep(Duration::from_millis(500));
    let of: Vec<String> = sys
        .events("default")
        .iter()
        .filter(|e| e["type"] == "com.example.done")
        .map(|e| e["data"]["of"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        of.len(),
        2,
        "only r-3 and the valid bridged message: {done:?}"
    );
    assert!(of.contains(&"r-3".to_owned()), "{of:?}");
    assert_eq!(sys.events("dead").len(), 3, "nothing else dead-lettered");
}
