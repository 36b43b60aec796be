//! One test per operator, each with events that must match and events that must not. Every
//! verdict is computed three ways (compiled matcher on a `Value`, on raw bytes, and the
//! reference interpreter) and the three must agree.

use serde_json::{Value, json};
use sluice_pattern::{Matcher, Pattern, reference};

fn verdict(pattern: &Value, event: &Value) -> bool {
    let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    let mut m = Matcher::new();
    m.insert(1u32, &p);
    let compiled = !m.matches(event).is_empty();
    let bytes = serde_json::to_vec(event).unwrap();
    let raw = !m.matches_json(&bytes).unwrap().is_empty();
    let mut early = Vec::new();
    m.matches_valid_json_into(&bytes, &mut early).unwrap();
    let oracle = reference::matches(&p, event);
    assert_eq!(
        compiled, oracle,
        "compiled vs reference: {pattern} on {event}"
    );
    assert_eq!(raw, oracle, "bytes vs reference: {pattern} on {event}");
    assert_eq!(
        !early.is_empty(),
        oracle,
        "bytes read until decided vs reference: {pattern} on {event}"
    );
    oracle
}

fn yes(pattern: Value, events: &[Value]) {
    for e in events {
        assert!(verdict(&pattern, e), "{pattern} should match {e}");
    }
}

fn no(pattern: Value, events: &[Value]) {
    for e in events {
        assert!(!verdict(&pattern, e), "{pattern} should not match {e}");
    }
}

#[test]
fn exact_values() {
    let p = json!({"source": ["a", 5, true, null]});
    yes(
        p.clone(),
        &[
            json!({"source": "a"}),
            json!({"source": 5.0}),
            json!({"source": true}),
            json!({"source": null}),
        ],
    );
    no(
        p,
        &[
            json!({"source": "A"}),
            json!({"source": "5"}),
            json!({"source": false}),
            json!({}),
            json!({"source": {"a": 1}}),
        ],
    );
    yes(json!({"x": [""]}), &[json!({"x": ""})]);
    no(json!({"x": [""]}), &[json!({"x": null}), json!({})]);
}

#[test]
fn nested_objects_are_and() {
    let p = json!({"type": ["t"], "data": {"a": ["1"], "b": {"c": [2]}}});
    yes(
        p.clone(),
        &[json!({"type": "t", "data": {"a": "1", "b": {"c": 2}, "z": 0}})],
    );
    no(
        p,
        &[
            json!({"type": "t", "data": {"a": "1", "b": {"c": 3}}}),
            json!({"data": {"a": "1", "b": {"c": 2}}}),
        ],
    );
}

#[test]
fn event_arrays_match_any_element() {
    let p = json!({"resources": ["r2"]});
    yes(
        p.clone(),
        &[
            json!({"resources": ["r1", "r2"]}),
            json!({"resources": [["r2"]]}),
        ],
    );
    no(p, &[json!({"resources": ["r1"]}), json!({"resources": []})]);
}

#[test]
fn arrays_of_objects_keep_fields_in_one_element() {
    let p = json!({"employees": {"first": ["Anna"], "last": ["Smith"]}});
    let both = json!({"employees": [{"first": "John", "last": "Doe"}, {"first": "Anna", "last": "Smith"}]});
    let crossed = json!({"employees": [{"first": "Anna", "last": "Doe"}, {"first": "John", "last": "Smith"}]});
    yes(
        p.clone(),
        &[
            both,
            json!({"employees": [[{"first": "Anna", "last": "Smith"}]]}),
        ],
    );
    no(p, &[crossed]);
    // different arrays may be combined freely
    let p = json!({"a": {"x": [1]}, "b": {"y": [2]}});
    yes(p, &[json!({"a": [{"x": 0}, {"x": 1}], "b": [{"y": 2}]})]);
    // a leaf array inside one element is still any-of
    let p = json!({"items": {"tags": ["a"], "sku": ["s"]}});
    yes(
        p.clone(),
        &[json!({"items": [{"sku": "s", "tags": ["b", "a"]}]})],
    );
    no(
        p,
        &[json!({"items": [{"sku": "s", "tags": ["b"]}, {"sku": "t", "tags": ["a"]}]})],
    );
}

#[test]
fn prefix() {
    yes(
        json!({"time": [{"prefix": "2017-10-02"}]}),
        &[json!({"time": "2017-10-02T18:43:48Z"})],
    );
    no(
        json!({"time": [{"prefix": "2017-10-02"}]}),
        &[json!({"time": "2017-10-03"}), json!({"time": 20171002})],
    );
    yes(
        json!({"s": [{"prefix": {"equals-ignore-case": "EventB"}}]}),
        &[json!({"s": "eventbridge"}), json!({"s": "EVENTB"})],
    );
    no(
        json!({"s": [{"prefix": {"equals-ignore-case": "EventB"}}]}),
        &[json!({"s": "event"})],
    );
}

#[test]
fn suffix() {
    yes(json!({"f": [{"suffix": ".png"}]}), &[json!({"f": "a.png"})]);
    no(
        json!({"f": [{"suffix": ".png"}]}),
        &[json!({"f": "a.PNG"}), json!({"f": "png"})],
    );
    yes(
        json!({"f": [{"suffix": {"equals-ignore-case": ".PNG"}}]}),
        &[json!({"f": "a.png"}), json!({"f": "B.Png"})],
    );
    no(
        json!({"f": [{"suffix": {"equals-ignore-case": ".PNG"}}]}),
        &[json!({"f": "a.jpg"})],
    );
}

#[test]
fn equals_ignore_case() {
    yes(
        json!({"n": [{"equals-ignore-case": "alice"}]}),
        &[json!({"n": "ALICE"}), json!({"n": "Alice"})],
    );
    no(
        json!({"n": [{"equals-ignore-case": "alice"}]}),
        &[json!({"n": "alicia"}), json!({"n": 1})],
    );
}

#[test]
fn wildcard() {
    let p = json!({"k": [{"wildcard": "dir/*.png"}]});
    yes(
        p.clone(),
        &[
            json!({"k": "dir/a.png"}),
            json!({"k": "dir/.png"}),
            json!({"k": "dir/x/y.png"}),
        ],
    );
    no(
        p,
        &[
            json!({"k": "dir/a.jpg"}),
            json!({"k": "other/a.png"}),
            json!({"k": 3}),
        ],
    );
    yes(
        json!({"k": [{"wildcard": r"a\*b"}]}),
        &[json!({"k": "a*b"})],
    );
    no(
        json!({"k": [{"wildcard": r"a\*b"}]}),
        &[json!({"k": "axb"})],
    );
    yes(
        json!({"k": [{"wildcard": "*lib*"}]}),
        &[json!({"k": "/usr/lib/x"})],
    );
    yes(json!({"k": [{"wildcard": "*"}]}), &[json!({"k": ""})]);
    no(json!({"k": [{"wildcard": "*"}]}), &[json!({"k": null})]);
}

#[test]
fn anything_but() {
    let p = json!({"state": [{"anything-but": ["stopped", "overloaded"]}]});
    yes(
        p.clone(),
        &[
            json!({"state": "running"}),
            json!({"state": 3}),
            json!({"state": ["stopped", "x"]}),
        ],
    );
    no(
        p,
        &[
            json!({"state": "stopped"}),
            json!({}),
            json!({"state": ["stopped"]}),
        ],
    );
    yes(
        json!({"x": [{"anything-but": 100}]}),
        &[json!({"x": 101}), json!({"x": "100"})],
    );
    no(
        json!({"x": [{"anything-but": 100}]}),
        &[json!({"x": 100.0})],
    );
    yes(
        json!({"r": [{"anything-but": {"prefix": "us-"}}]}),
        &[json!({"r": "eu-west-1"}), json!({"r": 7})],
    );
    no(
        json!({"r": [{"anything-but": {"prefix": "us-"}}]}),
        &[json!({"r": "us-east-1"})],
    );
    yes(
        json!({"f": [{"anything-but": {"suffix": [".png", ".jpg"]}}]}),
        &[json!({"f": "a.gif"})],
    );
    no(
        json!({"f": [{"anything-but": {"suffix": [".png", ".jpg"]}}]}),
        &[json!({"f": "a.jpg"})],
    );
    yes(
        json!({"f": [{"anything-but": {"wildcard": "*/lib/*"}}]}),
        &[json!({"f": "/usr/bin/x"})],
    );
    no(
        json!({"f": [{"anything-but": {"wildcard": "*/lib/*"}}]}),
        &[json!({"f": "/usr/lib/x"})],
    );
    yes(
        json!({"s": [{"anything-but": {"equals-ignore-case": ["Stopped"]}}]}),
        &[json!({"s": "running"})],
    );
    no(
        json!({"s": [{"anything-but": {"equals-ignore-case": ["Stopped"]}}]}),
        &[json!({"s": "STOPPED"})],
    );
}

#[test]
fn numeric() {
    let p = json!({"c": [{"numeric": [">", 0, "<=", 5]}]});
    yes(
        p.clone(),
        &[json!({"c": 5}), json!({"c": 0.1}), json!({"c": [9, 3]})],
    );
    no(
        p,
        &[
            json!({"c": 0}),
            json!({"c": 5.01}),
            json!({"c": "3"}),
            json!({}),
        ],
    );
    yes(
        json!({"x": [{"numeric": ["=", 3.018e2]}]}),
        &[json!({"x": 301.8})],
    );
    no(
        json!({"x": [{"numeric": ["=", 3.018e2]}]}),
        &[json!({"x": 301})],
    );
    yes(
        json!({"x": [{"numeric": ["<", -1]}]}),
        &[json!({"x": -1.5}), json!({"x": -1e300})],
    );
    no(json!({"x": [{"numeric": ["<", -1]}]}), &[json!({"x": -1})]);
    yes(
        json!({"x": [{"numeric": [">=", 10]}]}),
        &[json!({"x": 10}), json!({"x": 1e10})],
    );
    yes(
        json!({"x": [{"numeric": ["<=", 10, ">", 9]}]}),
        &[json!({"x": 10})],
    );
}

#[test]
fn exists() {
    yes(
        json!({"d": {"c": [{"exists": true}]}}),
        &[json!({"d": {"c": 1}}), json!({"d": {"c": null}})],
    );
    no(
        json!({"d": {"c": [{"exists": true}]}}),
        &[
            json!({"d": {}}),
            json!({"d": {"c": {"x": 1}}}),
            json!({"d": {"c": []}}),
        ],
    );
    yes(
        json!({"d": {"c": [{"exists": false}]}}),
        &[
            json!({"d": {}}),
            json!({}),
            json!({"d": {"c": {"x": 1}}}),
            json!({"d": 5}),
        ],
    );
    no(
        json!({"d": {"c": [{"exists": false}]}}),
        &[json!({"d": {"c": 0}}), json!({"d": [{}, {"c": 1}]})],
    );
}

#[test]
fn cidr() {
    let p = json!({"ip": [{"cidr": "10.0.0.0/24"}]});
    yes(p.clone(), &[json!({"ip": "10.0.0.255"})]);
    no(
        p,
        &[
            json!({"ip": "10.0.1.0"}),
            json!({"ip": "not an ip"}),
            json!({"ip": 10}),
        ],
    );
    let p = json!({"ip": [{"cidr": "2001:db8::/32"}]});
    yes(p.clone(), &[json!({"ip": "2001:db8::1"})]);
    no(
        p,
        &[json!({"ip": "2001:db9::1"}), json!({"ip": "10.0.0.1"})],
    );
}

#[test]
fn or() {
    let p = json!({"source": ["s"], "$or": [{"a": [1]}, {"b": {"c": [2]}}]});
    yes(
        p.clone(),
        &[
            json!({"source": "s", "a": 1}),
            json!({"source": "s", "b": {"c": 2}}),
        ],
    );
    no(p, &[json!({"source": "s", "a": 2}), json!({"a": 1})]);
    let p = json!({"x": {"$or": [{"y": [1]}, {"z": [{"exists": false}]}]}});
    yes(
        p.clone(),
        &[json!({"x": {"y": 1, "z": 0}}), json!({"x": {}})],
    );
    no(p, &[json!({"x": {"y": 2, "z": 0}})]);
}

#[test]
fn several_patterns_report_each_matching_id_once() {
    let mut m = Matcher::new();
    let pats = [
        ("a", json!({"type": [{"prefix": "com."}]})),
        (
            "b",
            json!({"type": ["com.x"], "$or": [{"k": [1]}, {"j": [1]}]}),
        ),
        ("c", json!({"type": [{"wildcard": "*.y"}]})),
    ];
    for (id, p) in &pats {
        m.insert(id.to_string(), &Pattern::parse(p).unwrap());
    }
    let mut got = m.matches(&json!({"type": "com.x", "k": 1, "j": 1}));
    got.sort();
    assert_eq!(got, vec!["a", "b"]);
    m.remove(&"a".to_string());
    assert_eq!(m.matches(&json!({"type": "com.x", "k": 1})), vec!["b"]);
    // insert replaces
    m.insert(
        "b".into(),
        &Pattern::parse(&json!({"type": ["other"]})).unwrap(),
    );
    assert!(m.matches(&json!({"type": "com.x", "k": 1})).is_empty());
    assert_eq!(m.len(), 2);
}

#[test]
fn invalid_patterns_name_path_and_reason() {
    let cases = [
        (json!("x"), "", "must be an object"),
        (json!({}), "", "must not be an empty object"),
        (json!({"a": "x"}), "a", "match values must be in a list"),
        (json!({"a": []}), "a", "must not be an empty list"),
        (
            json!({"data": {"total": [{"numeric": [">"]}]}}),
            "data.total[0].numeric",
            "numeric needs an operator and a number",
        ),
        (
            json!({"data": {"total": [{"numeric": ["!", 1]}]}}),
            "data.total[0].numeric[0]",
            "unknown numeric operator",
        ),
        (
            json!({"n": [{"numeric": [">", 5, "<", 1]}]}),
            "n[0].numeric",
            "above the upper bound",
        ),
        (
            json!({"n": [{"numeric": [">", 1, ">", 2]}]}),
            "n[0].numeric",
            "one lower bound",
        ),
        (
            json!({"n": [{"numeric": [">", "1"]}]}),
            "n[0].numeric[1]",
            "numeric needs",
        ),
        (
            json!({"n": [{"nope": 1}]}),
            "n[0]",
            "unknown operator \"nope\"",
        ),
        (
            json!({"n": [{"prefix": "a", "suffix": "b"}]}),
            "n[0]",
            "exactly one operator",
        ),
        (
            json!({"n": [{"prefix": 1}]}),
            "n[0].prefix",
            "prefix takes a string",
        ),
        (
            json!({"n": [{"wildcard": "a**"}]}),
            "n[0].wildcard",
            "consecutive wildcard",
        ),
        (
            json!({"n": [{"exists": "yes"}]}),
            "n[0].exists",
            "true or false",
        ),
        (
            json!({"n": [{"cidr": "10.0.0.0/40"}]}),
            "n[0].cidr",
            "prefix length",
        ),
        (
            json!({"n": [{"anything-but": ["a", 1]}]}),
            "n[0].anything-but",
            "only strings or only numbers",
        ),
        (
            json!({"n": [{"anything-but": {"prefix": [1]}}]}),
            "n[0].anything-but.prefix[0]",
            "needs strings",
        ),
        (json!({"n": [[1]]}), "n[0]", "not a list"),
        (json!({"$or": [{"a": [1]}]}), "$or", "at least two"),
        (
            json!({"$or": [{"a": [1]}, 3]}),
            "$or[1]",
            "must be a pattern",
        ),
    ];
    for (p, path, reason) in cases {
        let e = Pattern::parse(&p).expect_err(&p.to_string());
        assert_eq!(e.path, path, "{p}: {e}");
        assert!(e.reason.contains(reason), "{p}: {e}");
    }
}

#[test]
fn or_explosion_and_depth_are_refused() {
    let branch = json!([{"a": [1]}, {"b": [1]}, {"c": [1]}, {"d": [1]}]);
    let mut p = json!({"x": [1]});
    let mut cur = &mut p;
    for _ in 0..6 {
        cur["$or"] = branch.clone();
        cur["n"] = json!({"y": [1]});
        cur = &mut cur["n"];
    }
    assert!(
        Pattern::parse(&p)
            .unwrap_err()
            .reason
            .contains("alternatives")
    );

    let mut deep = json!({"leaf": [1]});
    for _ in 0..100 {
        deep = json!({ "k": deep });
    }
    assert!(Pattern::parse(&deep).unwrap_err().reason.contains("deeper"));
}

#[test]
fn bad_event_bytes_are_errors_not_panics() {
    let mut m = Matcher::new();
    m.insert(1, &Pattern::parse(&json!({"a": {"b": ["x"]}})).unwrap());
    for bad in [
        &b""[..],
        b"{",
        b"{\"a\":",
        b"{\"a\":{\"b\":\"x\\",
        b"[1,,2]",
        b"{\"a\":tru}",
        b"{} x",
        b"{\"a\":{\"b\":\"\\ud800\"}}",
    ] {
        assert!(
            m.matches_json(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        m.matches_json(br#"{"z":[{"q":"\""}],"a":{"b":"\u0078"}}"#)
            .unwrap(),
        vec![1]
    );
    // duplicate keys: the last one wins, as in serde_json
    assert!(
        m.matches_json(br#"{"a":{"b":"x"},"a":{"b":"y"}}"#)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        m.matches_json(br#"{"a":{"b":"y"},"a":{"b":"x"}}"#).unwrap(),
        vec![1]
    );
}

#[test]
fn valid_json_is_read_only_until_every_pattern_key_is_decided() {
    let mut m = Matcher::new();
    m.insert(
        1,
        &Pattern::parse(&json!({"source": ["s"], "a": {"b": ["x"]}})).unwrap(),
    );
    let read = |bytes: &[u8]| {
        let mut out = Vec::new();
        m.matches_valid_json_into(bytes, &mut out).map(|()| out)
    };
    // What follows the last key a pattern names is never read: the broken tail (standing in
    // for a large `data`) is not reported, where the full read refuses it.
    let tail = br#"{"a":{"b":"x","c":[1,2]},"source":"s","type":"t","data":{"#;
    assert_eq!(read(tail).unwrap(), vec![1]);
    assert!(m.matches_json(tail).is_err());
    // Inside an object the rest is skipped, not decoded: a stray byte there goes unnoticed.
    assert_eq!(
        read(br#"{"a":{"b":"x","c":tru},"source":"s"}"#).unwrap(),
        vec![1]
    );
    // A key the pattern names that is missing keeps the walk going to the end.
    assert!(read(br#"{"a":{"b":"x"},"type":"t"}"#).unwrap().is_empty());
    // Arrays of objects: every element is read, not just the first that has all its keys.
    let mut arr = Matcher::new();
    arr.insert(2, &Pattern::parse(&json!({"a": {"b": ["x"]}})).unwrap());
    let mut out = Vec::new();
    arr.matches_valid_json_into(br#"{"a":[{"b":"y"},{"b":"x"}],"z":1}"#, &mut out)
        .unwrap();
    assert_eq!(out, vec![2]);
    // Bad bytes before the stop are still errors, never panics.
    for bad in [&b""[..], b"{", b"{\"a\":", b"{\"a\":{\"b\":tru"] {
        assert!(read(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}
