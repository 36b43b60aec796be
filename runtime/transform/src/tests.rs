use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{Context, Error, Place, Transform};

fn event() -> Value {
    json!({
        "specversion": "1.0",
        "id": "o-1",
        "source": "shop",
        "type": "com.example.order.paid",
        "subject": "orders/o-1",
        "data": {
            "order": {"id": "o-1", "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]},
            "total": 12.5,
            "count": 3,
            "country": "NL",
            "tags": ["new", "gift"]
        }
    })
}

const CX: Context<'static> = Context {
    trigger: "shop/paid",
};

fn run(paths: &[(&str, &str)], template: &str) -> Result<Value, String> {
    let t = Transform::compile(paths.iter().copied(), template).map_err(|e| {
        e.iter()
            .map(Error::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    t.apply(&event(), CX).map_err(|e| e.to_string())
}

fn compile_err(paths: &[(&str, &str)], template: &str) -> Vec<Error> {
    match Transform::compile(paths.iter().copied(), template) {
        Ok(_) => panic!("{template} compiled"),
        Err(e) => e,
    }
}

#[test]
fn eventbridge_placeholders_fill_values_and_text() {
    let out = run(
        &[("order", "$.data.order.id"), ("src", "$.source"), ("first", "$.data.order.lines[0]")],
        r#"{"order": <order>, "from": "order <order> from <src>", "line": <first>, "missing": <order2>}"#
            .replace("<order2>", "null")
            .as_str(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"order": "o-1", "from": "order o-1 from shop", "line": {"sku": "a", "qty": 2}, "missing": null})
    );
}

#[test]
fn expressions_compute_with_exact_integers_and_checked_types() {
    let out = run(
        &[
            ("total", "$.data.total"),
            ("n", "$.data.count"),
            ("absent", "$.data.nothing"),
        ],
        r#"{
  "gross": ${round(total * 1.21, 2)},
  "each": ${n * 2 + 1},
  "half": ${n / 2},
  "whole": ${6 / 3},
  "big": ${total > 10 ? 'yes' : 'no'},
  "dflt": ${absent ?? 'none'},
  "eu": ${contains(['NL', 'DE'], $.data.country)},
  "sku": "${upper($.data.order.lines[-1].sku)}-${len($.data.tags)}",
  "tags": ${join($.data.tags, '+')},
  "who": <trigger>,
  "kind": ${type($.data.order)},
  "${lower($.data.country)}": true
}"#,
    )
    .unwrap();
    assert_eq!(
        out,
        json!({
            "gross": 15.13, "each": 7, "half": 1.5, "whole": 2, "big": "yes", "dflt": "none",
            "eu": true, "sku": "B-2", "tags": "new+gift", "who": "shop/paid", "kind": "object",
            "nl": true
        })
    );
}

#[test]
fn a_missing_path_is_null_as_in_eventbridge() {
    let out = run(
        &[("x", "$.data.no.such.path"), ("y", "$.data.tags[7]")],
        r#"[<x>, <y>, ${$.data.order.lines[0].nothing}]"#,
    )
    .unwrap();
    assert_eq!(out, json!([null, null, null]));
}

#[test]
fn a_template_without_placeholders_is_its_json() {
    let t = r#"{"a": [1, 2.5, "x\n\u00e9", true, null], "b": {}}"#;
    assert_eq!(
        run(&[], t).unwrap(),
        serde_json::from_str::<Value>(t).unwrap()
    );
}

#[test]
fn compile_errors_name_the_line_and_column() {
    let e = compile_err(&[("order", "$.data.order.id")], "{\n  \"id\": <ordr>\n}");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].place, Place::Template { line: 2, column: 9 });
    assert!(
        e[0].message.contains("unknown name \"ordr\""),
        "{}",
        e[0].message
    );
    assert!(
        e[0].message.contains("inputPaths defines order"),
        "{}",
        e[0].message
    );

    let e = compile_err(&[], "{\"a\": ${1 +* 2}}");
    assert_eq!(
        e[0].place,
        Place::Template {
            line: 1,
            column: 12
        }
    );
    assert!(
        e[0].message.contains("expected a value, found \"*\""),
        "{}",
        e[0].message
    );

    let e = compile_err(&[], "{\"a\": ${nope(1)}}");
    assert!(
        e[0].message.contains("unknown function \"nope\""),
        "{}",
        e[0].message
    );
    let e = compile_err(&[], "{\"a\": ${round()}}");
    assert!(
        e[0].message
            .contains("round: takes 1 or 2 argument(s), got 0"),
        "{}",
        e[0].message
    );
    let e = compile_err(&[], "{\"a\": \"open}");
    assert!(e[0].message.contains("not closed"), "{}", e[0].message);
    let e = compile_err(&[], "{\"a\": 1, \"a\": 2}");
    assert!(e[0].message.contains("appears twice"), "{}", e[0].message);
    let e = compile_err(&[], "{\"a\": ${1 < 2 < 3}}");
    assert!(e[0].message.contains("do not chain"), "{}", e[0].message);
    let e = compile_err(&[], "{\"a\": 1} x");
    assert_eq!(
        e[0].place,
        Place::Template {
            line: 1,
            column: 10
        }
    );
    let e = compile_err(&[], "  ");
    assert!(e[0].message.contains("empty"), "{}", e[0].message);
}

#[test]
fn input_paths_that_no_event_can_have_are_refused() {
    let cases = [
        ("a", "data.x", "must start with $"),
        ("b", "$.source.host", "source is a single value"),
        ("c", "$.Type", "not an attribute name"),
        ("d", "$[0]", "not an array"),
        ("e", "$.data..x", "expected a field name"),
        ("f", "$.data[x]", "must be an index"),
        ("g", "$.data[0", "is not closed"),
    ];
    for (name, path, why) in cases {
        let e = compile_err(&[(name, path)], "{}");
        assert_eq!(e[0].place, Place::InputPath(name.into()), "{path}");
        assert!(e[0].message.contains(why), "{path}: {}", e[0].message);
    }
    let e = compile_err(&[("event", "$.id"), ("1x", "$.id"), ("null", "$.id")], "{}");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        run(
            &[
                ("ok", "$.data['order'].lines[-1]['sku']"),
                ("ext", "$.traceparent")
            ],
            "[<ok>, <ext>]"
        )
        .is_ok()
    );
}

#[test]
fn evaluation_errors_point_at_the_operator_and_say_why() {
    let t = Transform::compile([("c", "$.data.country")], "{\n \"x\": ${c * 2}\n}").unwrap();
    let e = t.apply(&event(), CX).unwrap_err();
    assert_eq!((e.line, e.column), (2, 11));
    assert!(e.message.contains("* needs a number, got string"), "{e}");

    for (template, why) in [
        ("${1 / 0}", "division by zero"),
        ("${'a' + 1}", "cannot add string and number"),
        ("${$.data.nothing ? 1 : 2}", "needs a boolean, got null"),
        ("${number('x1')}", "is not a number"),
        ("${'a' < 1}", "cannot order string and number"),
        ("${$.data.tags[true]}", "an index is a number or a string"),
    ] {
        let t = Transform::compile([], template).unwrap();
        let e = t.apply(&event(), CX).unwrap_err();
        assert!(e.message.contains(why), "{template}: {e}");
    }
}

#[test]
fn output_and_nesting_are_bounded() {
    // Each replace doubles the text: 4 KiB doubled nine times would be 2 MiB.
    let big = format!("{{\"data\": {{\"s\": \"{}\"}}}}", "x".repeat(4096));
    let big: Value = serde_json::from_str(&big).unwrap();
    let mut expr = "big".to_owned();
    for _ in 0..9 {
        expr = format!("replace({expr}, 'x', 'xx')");
    }
    let t = Transform::compile([("big", "$.data.s")], &format!("${{{expr}}}")).unwrap();
    let e = t.apply(&big, CX).unwrap_err();
    assert!(e.message.contains("builds a value over"), "{e}");
    let list = format!("${{[{}1]}}", "big, ".repeat(300));
    let t = Transform::compile([("big", "$.data.s")], &list).unwrap();
    let e = t.apply(&big, CX).unwrap_err();
    assert!(e.message.contains("builds a value over"), "{e}");
    let repeated = format!("[{}1]", "<big>,".repeat(2000));
    let t = Transform::compile([("big", "$.data.s")], &repeated).unwrap();
    let e = t.apply(&big, CX).unwrap_err();
    assert!(e.message.contains("over 1048576 bytes"), "{e}");

    let deep = format!("${{{}1{}}}", "(".repeat(500), ")".repeat(500));
    let e = compile_err(&[], &deep);
    assert!(e[0].message.contains("nested more than 64"), "{e:?}");
    let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    let e = compile_err(&[], &deep);
    assert!(e[0].message.contains("nested more than 64"), "{e:?}");
    let e = compile_err(&[], &"1".repeat(crate::MAX_TEMPLATE_BYTES + 1));
    assert!(e[0].message.contains("over the limit"), "{e:?}");
}

proptest! {
    /// Whatever a manifest holds, compiling and applying it returns; it never panics.
    #[test]
    fn any_template_compiles_or_errors_without_panicking(
        t in r#"[\[\]{}"<>$a-z0-9 .,:?!+*/%()'=&|-]{0,40}"#
    ) {
        if let Ok(tr) = Transform::compile([("a", "$.data.count"), ("b", "$.data.tags")], &t) {
            let _ = tr.apply(&event(), CX);
        }
    }

    #[test]
    fn arithmetic_on_integers_is_exact(a in -1_000_000i64..1_000_000, b in 1i64..1000) {
        let t = Transform::compile([], &format!("[${{{a} + {b}}}, ${{{a} * {b}}}, ${{{a} % {b}}}, ${{{a} - {b}}}]")).unwrap();
        prop_assert_eq!(t.apply(&event(), CX).unwrap(), json!([a + b, a * b, a % b, a - b]));
    }
}
