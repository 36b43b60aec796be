//! Trigger transforms on both buses: the handler gets exactly the JSON the template builds
//! (the tester's `echo` replies with its input), the stored event and its dead letter keep the
//! original, a transform that fails on an event dead-letters it as fatal with the template
//! position, and an HTTP-source Trigger transforms the request too (422 when it cannot).

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::{
    sluice::{Backend, Tester},
    wait_for,
};

sluice_tests::both!(the_handler_gets_exactly_what_the_template_builds);

const TRIGGERS: &str = r#"apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: paid, namespace: e2e }
spec:
  source: { bus: default }
  pattern: { type: [com.example.order] }
  function: tester
  delivery: { deadLetter: { bus: dead }, retry: { maxAttempts: 3, initialDelay: 100ms } }
  transform:
    inputPaths:
      order: $.data.id
      total: $.data.total
      last: '$.data.items[-1]'
      missing: $.data.no.such.field
    template: |
      {
        "echo": true,
        "order": <order>,
        "gross": ${round(total * 1.21, 2)},
        "last": <last>,
        "missing": <missing>,
        "note": "order <order> from ${upper($.source)} via <trigger>",
        "tier": ${total >= 100 ? 'gold' : 'standard'},
        "coupon": ${$.data.coupon ?? 'none'},
        "skus": ${join([$.data.items[0].sku, last.sku], '+')}
      }
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: { name: hook, namespace: e2e }
spec:
  source: { http: { path: /hook } }
  function: tester
  transform:
    inputPaths: { who: $.data.user }
    template: '{"echo": true, "greeting": "hello ${upper(who)}"}'
"#;

fn order(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/shop", "type": "com.example.order",
        "dataschema": "https://example.com/order.json", "data": data})
}

fn the_handler_gets_exactly_what_the_template_builds(backend: Backend) {
    let t = Tester::start(backend, TRIGGERS);
    let sys = &t.sys;
    let items = json!([{"sku": "TEA", "qty": 2}, {"sku": "MUG", "qty": 1}]);
    let (status, answer) = sys.post_batch(&[
        order("t-1", json!({"id": "t-1", "total": 120, "items": items})),
        // total is text: `total * 1.21` cannot be computed for this event.
        order("t-2", json!({"id": "t-2", "total": "lots", "items": items})),
    ]);
    assert_eq!(status, 202, "{answer}");

    let reply = wait_for(30, || {
        sys.events("default")
            .into_iter()
            .find(|e| e["type"] == "com.example.done" && e["data"]["of"] == "t-1")
    })
    .unwrap_or_else(|| panic!("t-1 was not handled\n{}", sys.logs()));
    assert_eq!(
        reply["data"]["input"],
        json!({
            "echo": true, "order": "t-1", "gross": 145.2, "last": {"sku": "MUG", "qty": 1},
            "missing": null, "note": "order t-1 from /SHOP via e2e/paid", "tier": "gold",
            "coupon": "none", "skus": "TEA+MUG"
        }),
        "{reply}"
    );
    assert_eq!(reply["data"]["contenttype"], "application/json", "{reply}");
    assert_eq!(
        reply["data"]["dataschema"],
        Value::Null,
        "the transformed data no longer follows the producer's dataschema: {reply}"
    );
    // The bus keeps what the producer sent.
    let stored = sys.events("default");
    let t1 = stored.iter().find(|e| e["id"] == "t-1").unwrap();
    assert_eq!(t1["data"]["total"], 120, "{t1}");
    assert_eq!(t1["dataschema"], "https://example.com/order.json", "{t1}");

    // The failing transform: dead-lettered at once (fatal, one attempt), the original event
    // in the dead letter and the template position in the error.
    let dead = wait_for(30, || {
        sys.events("dead").into_iter().find(|e| e["id"] == "t-2")
    })
    .unwrap_or_else(|| panic!("t-2 was not dead-lettered\n{}", sys.logs()));
    assert_eq!(dead["sluicereason"], "fatal", "{dead}");
    assert_eq!(dead["sluiceattempts"], 1, "{dead}");
    assert_eq!(dead["data"]["total"], "lots", "{dead}");
    let why = dead["sluicelasterror"].as_str().unwrap();
    assert_eq!(
        why,
        "Trigger e2e/paid spec.transform.template line 4, column 26: * needs a number, got string",
        "{dead}"
    );

    // An HTTP-source Trigger: the request's JSON body is the event's data.
    let addr = sys.worker_addr.clone().unwrap_or_else(|| sys.addr.clone());
    let call = |body: &[u8]| {
        sluice_tests::http(
            &addr,
            "POST",
            "/fn/e2e/hook",
            &[("content-type", "application/json")],
            body,
        )
        .expect("the worker answers")
    };
    let answered = wait_for(30, || {
        let (status, _, body) = call(br#"{"user": "ada"}"#);
        (status == 200).then_some(body)
    })
    .unwrap_or_else(|| panic!("/fn/e2e/hook never answered 200\n{}", sys.logs()));
    let body: Value = serde_json::from_slice(&answered).unwrap();
    assert_eq!(
        body["input"],
        json!({"echo": true, "greeting": "hello ADA"}),
        "{body}"
    );
    // `upper` of a number is a type error: the caller is told where, and nothing runs.
    let (status, _, body) = call(br#"{"user": 7}"#);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("Trigger e2e/hook spec.transform.template line 1, column 37: upper: argument 1 must be a string, got number"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(200));
}
