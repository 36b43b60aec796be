//! `sluice test-pattern` as a user runs it: exit 0 and `match`, exit 1 and `no match`, exit 2
//! with the validation error (path and reason); patterns and events inline or from `@file`.

use sluice_tests::{sluice, stdout};

const EVENT: &str = r#"{"specversion":"1.0","id":"1","source":"shop","type":"com.example.order.paid","data":{"total":120,"items":[{"sku":"A","qty":2}]}}"#;

#[test]
fn matching_event_prints_match_and_exits_0() {
    let out = sluice(&[
        "test-pattern",
        "--pattern",
        r#"{"type":["com.example.order.paid"],"data":{"total":[{"numeric":[">",100]}],"items":{"sku":["A"],"qty":[2]}}}"#,
        "--event",
        EVENT,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "match\n");
}

#[test]
fn other_event_prints_no_match_and_exits_1() {
    let out = sluice(&[
        "test-pattern",
        "--pattern",
        r#"{"data":{"total":[{"numeric":["<",100]}]}}"#,
        "--event",
        EVENT,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "no match\n");
}

#[test]
fn invalid_pattern_prints_path_and_reason_and_exits_2() {
    let out = sluice(&[
        "test-pattern",
        "--pattern",
        r#"{"data":{"total":[{"numeric":[">"]}]}}"#,
        "--event",
        EVENT,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data.total[0].numeric: numeric needs an operator and a number"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn pattern_and_event_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    let e = dir.path().join("e.json");
    std::fs::write(
        &p,
        r#"{"source":[{"anything-but":"other"}],"subject":[{"exists":false}]}"#,
    )
    .unwrap();
    std::fs::write(&e, EVENT).unwrap();
    let out = sluice(&[
        "test-pattern",
        "--pattern",
        &format!("@{}", p.display()),
        "--event",
        &format!("@{}", e.display()),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "match\n");
    let missing = sluice(&[
        "test-pattern",
        "--pattern",
        "@/does/not/exist",
        "--event",
        EVENT,
    ]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn a_transform_prints_what_the_handler_would_get() {
    let out = sluice(&[
        "test-pattern",
        "--pattern",
        r#"{"type":["com.example.order.paid"]}"#,
        "--event",
        EVENT,
        "--transform",
        "{inputPaths: {total: $.data.total, sku: '$.data.items[0].sku'}, template: '{\"sku\": <sku>, \"gross\": ${total * 1.21}, \"line\": \"${len($.data.items)} line(s) from <sku>\"}'}",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let (first, rest) = text.split_once('\n').unwrap();
    assert_eq!(first, "match");
    let data: serde_json::Value = serde_json::from_str(rest).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"sku": "A", "gross": 145.2, "line": "1 line(s) from A"})
    );
}

#[test]
fn a_bad_transform_names_the_field_and_position_and_exits_2() {
    let out = sluice(&[
        "test-pattern",
        "--event",
        EVENT,
        "--transform",
        "{inputPaths: {host: $.source.host}, template: '{\"a\": ${upper(totl)}}'}",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "transform.inputPaths.host: \"$.source.host\" cannot exist: source is a single value"
        ),
        "{err}"
    );
    assert!(
        err.contains("transform.template: line 1, column 15: unknown name \"totl\""),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    // Valid, but not for this event: a string times a number.
    let out = sluice(&[
        "test-pattern",
        "--event",
        EVENT,
        "--transform",
        "{template: '${$.source * 2}'}",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("transform.template line 1, column 12: * needs a number, got string"),
        "{err}"
    );
}
