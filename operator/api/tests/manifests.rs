//! Manifest parsing never panics and always names the object and field at fault.

use proptest::prelude::*;
use sluice_api::{Outcome, manifest};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = manifest::parse(&text);
    }

    #[test]
    fn arbitrary_json_specs_never_panic(spec in arb_json(3)) {
        for kind in ["Function", "Trigger"] {
            let obj = serde_json::json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": kind,
                "metadata": {"name": "x"}, "spec": spec,
            });
            let (_, outcome) = manifest::check(obj);
            if let Outcome::Invalid(errors) = outcome {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(!e.path.is_empty() && !e.message.is_empty());
                }
            }
        }
    }
}

fn arb_json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let key = prop::sample::select(vec![
        "module",
        "path",
        "url",
        "sha256",
        "limits",
        "timeout",
        "memory",
        "source",
        "bus",
        "schedule",
        "pattern",
        "function",
        "delivery",
        "retry",
        "maxAttempts",
        "env",
        "name",
        "value",
        "scaling",
        "ordering",
        "key",
        "http",
        "numeric",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-z0-9 */.:-]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

#[test]
fn a_valid_function_round_trips_with_typed_values() {
    let docs = manifest::parse(
        "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: f, namespace: shop}\n\
         spec: {module: {path: f.wasm}, limits: {memory: 128Mi, timeout: 1m30s}}\n",
    );
    let Outcome::Valid(sluice_api::Resource::Function(f)) = &docs[0].outcome else {
        panic!("{:?}", docs[0].outcome)
    };
    assert_eq!(f.spec.limits.memory.bytes(), 128 << 20);
    assert_eq!(f.spec.limits.timeout.as_millis(), 90_000);
    assert_eq!(f.spec.concurrency, 64, "defaults apply");
    assert_eq!(docs[0].object.to_string(), "Function shop/f");
}

/// A Trigger dead-lettering onto its own source bus would handle its own dead letters again:
/// refused, unless its pattern refuses events carrying `sluicereason`.
#[test]
fn a_dead_letter_loop_onto_the_source_bus_is_refused() {
    let trigger = |pattern: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: t, namespace: shop}}\n\
             spec: {{source: {{bus: orders}}, function: f, pattern: {pattern}, delivery: {{deadLetter: {{bus: orders}}}}}}\n"
        )
    };
    let docs = manifest::parse(&trigger("{type: [paid]}"));
    let Outcome::Invalid(problems) = &docs[0].outcome else {
        panic!("accepted: {:?}", docs[0].outcome)
    };
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter()
            .any(|p| p.starts_with("spec.delivery.deadLetter.bus:") && p.contains("loop")),
        "{text:?}"
    );
    let docs = manifest::parse(&trigger("{type: [paid], sluicereason: [{exists: false}]}"));
    assert!(
        matches!(docs[0].outcome, Outcome::Valid(_)),
        "{:?}",
        docs[0].outcome
    );
}
