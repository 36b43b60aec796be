//! Property test: on random patterns and events drawn from a small vocabulary (so that matches
//! are frequent), the compiled matcher, fed a `Value` or raw bytes (read whole, or only until
//! every key a pattern names is read), reports exactly the patterns the reference interpreter
//! accepts, also after some patterns are removed.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sluice_pattern::{Matcher, Pattern, reference};

const KEYS: &[&str] = &["a", "b", "c"];
const STRS: &[&str] = &[
    "",
    "x",
    "xy",
    "Xy",
    "yx",
    "x*y",
    "10.0.0.7",
    "10.1.0.1",
    "2001:db8::1",
    "ab.c",
];
const NUMS: &[f64] = &[-1.0, 0.0, 1.0, 1.5, 2.0, 100.0];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(STRS).prop_map(|s| json!(s)),
        prop::sample::select(NUMS).prop_map(|n| json!(n)),
        prop::sample::select(&[-1i64, 0, 1, 2][..]).prop_map(|n| json!(n)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
    ]
}

fn event() -> impl Strategy<Value = Value> {
    let leaf = scalar();
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..4).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn text() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["", "x", "X", "y", "ab", "10."][..])
}

fn glob() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "*", "x*", "*y", "*x*", "x*y", r"x\*y", "*b.c", "10.*.7", "a*.*", "xy",
        ][..],
    )
}

fn strs() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|s| json!(s)),
        prop::collection::vec(text(), 1..3).prop_map(|v| json!(v)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(&[">", ">=", "<", "<=", "="][..]);
    prop_oneof![
        scalar(),
        text().prop_map(|s| json!({"prefix": s})),
        text().prop_map(|s| json!({"prefix": {"equals-ignore-case": s}})),
        text().prop_map(|s| json!({"suffix": s})),
        text().prop_map(|s| json!({"suffix": {"equals-ignore-case": s}})),
        prop::sample::select(STRS).prop_map(|s| json!({"equals-ignore-case": s})),
        glob().prop_map(|s| json!({"wildcard": s})),
        prop::collection::vec(prop::sample::select(STRS), 1..3)
            .prop_map(|v| json!({"anything-but": v})),
        prop::collection::vec(prop::sample::select(NUMS), 1..3)
            .prop_map(|v| json!({"anything-but": v})),
        strs().prop_map(|v| json!({"anything-but": {"prefix": v}})),
        strs().prop_map(|v| json!({"anything-but": {"suffix": v}})),
        strs().prop_map(|v| json!({"anything-but": {"equals-ignore-case": v}})),
        glob().prop_map(|g| json!({"anything-but": {"wildcard": g}})),
        (op.clone(), prop::sample::select(NUMS)).prop_map(|(o, n)| json!({"numeric": [o, n]})),
        (
            prop::sample::select(NUMS),
            prop::sample::select(NUMS),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(a, b, i, j)| {
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                json!({"numeric": [if i { ">=" } else { ">" }, lo, if j { "<=" } else { "<" }, hi]})
            }),
        any::<bool>().prop_map(|b| json!({"exists": b})),
        prop::sample::select(&["10.0.0.0/24", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::/32"][..])
            .prop_map(|c| json!({"cidr": c})),
    ]
}

fn pattern_obj(depth: u32) -> BoxedStrategy<Value> {
    let field: BoxedStrategy<Value> = if depth == 0 {
        prop::collection::vec(leaf(), 1..3)
            .prop_map(Value::Array)
            .boxed()
    } else {
        prop_oneof![
            3 => prop::collection::vec(leaf(), 1..3).prop_map(Value::Array),
            1 => pattern_obj(depth - 1),
        ]
        .boxed()
    };
    let fields = prop::collection::btree_map(prop::sample::select(KEYS), field, 1..3);
    let or = if depth == 0 {
        Just(None).boxed()
    } else {
        prop_oneof![
            3 => Just(None),
            1 => prop::collection::vec(pattern_obj(depth - 1), 2..3).prop_map(Some),
        ]
        .boxed()
    };
    (fields, or)
        .prop_map(|(fields, or)| {
            let mut m: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if let Some(branches) = or {
                m.insert("$or".into(), Value::Array(branches));
            }
            Value::Object(m)
        })
        .boxed()
}

fn check(
    patterns: &[Pattern],
    event: &Value,
    m: &Matcher<usize>,
    live: &BTreeSet<usize>,
) -> Result<(), TestCaseError> {
    let want: BTreeSet<usize> = live
        .iter()
        .copied()
        .filter(|&i| reference::matches(&patterns[i], event))
        .collect();
    let got: BTreeSet<usize> = m.matches(event).into_iter().collect();
    prop_assert_eq!(&got, &want, "Value path, event {}", event);
    let bytes = serde_json::to_vec(event).unwrap();
    let raw = m.matches_json(&bytes).unwrap();
    prop_assert_eq!(raw.len(), want.len(), "duplicate ids");
    let raw: BTreeSet<usize> = raw.into_iter().collect();
    prop_assert_eq!(&raw, &want, "bytes path, event {}", event);
    let mut early = Vec::new();
    m.matches_valid_json_into(&bytes, &mut early).unwrap();
    prop_assert_eq!(early.len(), want.len(), "duplicate ids, early stop");
    let early: BTreeSet<usize> = early.into_iter().collect();
    prop_assert_eq!(&early, &want, "bytes path with early stop, event {}", event);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_equals_reference(
        raw in prop::collection::vec(pattern_obj(2), 1..8),
        events in prop::collection::vec(event(), 1..6),
        removed in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        let patterns: Vec<Pattern> = raw.iter().filter_map(|p| Pattern::parse(p).ok()).collect();
        prop_assume!(!patterns.is_empty());
        let mut m = Matcher::new();
        let mut live = BTreeSet::new();
        for (i, p) in patterns.iter().enumerate() {
            m.insert(i, p);
            live.insert(i);
        }
        for e in &events {
            check(&patterns, e, &m, &live)?;
        }
        for r in removed {
            let i = r.index(patterns.len());
            m.remove(&i);
            live.remove(&i);
        }
        for e in &events {
            check(&patterns, e, &m, &live)?;
        }
    }
}
