//! `sluice validate` as a user runs it: on the shipped examples (local and cluster) and on a
//! folder of broken manifests, each of which states the lines it expects in `# expect:`
//! comments.

use sluice_tests::{sluice, stdout, workspace};

/// `sluice validate DIR` passes, with the README's invoice Function and its Trigger ok.
fn invoice_example_validates(dir: &str) {
    let out = sluice(&["validate", dir]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Function shop/invoice: ok"), "{text}");
    assert!(text.contains("Trigger shop/paid-orders: ok"), "{text}");
}

#[test]
fn examples_validate() {
    invoice_example_validates("functions/examples");
    let text = stdout(&sluice(&["validate", "functions/examples"]));
    assert!(text.contains("EventSchema shop/order-paid: ok"), "{text}");
}

/// The manifests the README applies to a cluster (and the chart tests install).
#[test]
fn cluster_example_validates() {
    invoice_example_validates("functions/cluster");
}

#[test]
fn broken_manifests_report_every_error_with_its_path() {
    let dir = workspace().join("tests/fixtures/invalid");
    let out = sluice(&["validate", "tests/fixtures/invalid"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains(": ok"), "a broken object passed:\n{text}");

    let mut expected = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!(
            "tests/fixtures/invalid/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let source = std::fs::read_to_string(&path).unwrap();
        let wants: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!wants.is_empty(), "{name} states no expectation");
        for want in &wants {
            let line = format!("{name}: {want}");
            assert!(
                text.lines().any(|l| l.starts_with(&line)),
                "missing line\n  {line}\nin output:\n{text}"
            );
        }
        // Nothing beyond what the file expects: every output line of this file is one of them.
        let prefix = format!("{name}: ");
        let extra: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter(|l| !wants.iter().any(|w| l.starts_with(&format!("{prefix}{w}"))))
            .collect();
        assert!(
            extra.is_empty(),
            "unexpected lines for {name}:\n{}",
            extra.join("\n")
        );
        expected += wants.len();
    }
    assert!(expected >= 30, "only {expected} expectations");
}

#[test]
fn valid_objects_beside_broken_ones_are_still_ok() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mixed.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: wasm}\n---\n\
         apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: good}\nspec: {module: {path: a.wasm}}\n---\n\
         apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: good}\nspec: {module: {path: b.wasm}}\n",
    )
    .unwrap();
    let out = sluice(&["validate", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ConfigMap default/wasm: skipped (v1 is not a Sluice resource)"),
        "{text}"
    );
    assert!(text.contains("Function default/good: ok"), "{text}");
    assert!(
        text.contains("metadata.name: Function default/good is also defined in"),
        "{text}"
    );
}

#[test]
fn missing_path_is_an_error() {
    let out = sluice(&["validate", "does/not/exist"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("does/not/exist: cannot read"));
}

#[test]
fn crds_on_stdout_equal_committed_files() {
    let out = sluice(&["crds"]);
    assert_eq!(out.status.code(), Some(0));
    let mut files: Vec<_> = std::fs::read_dir(workspace().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let committed: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(stdout(&out), committed.join("---\n"));
    let check = sluice(&["crds", "--out", "crds", "--check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["crds", "--help"],
        vec!["validate", "--help"],
    ] {
        let out = sluice(&cmd);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}");
        assert!(stdout(&out).contains("Usage: sluice"), "{cmd:?}");
    }
}

#[test]
fn transform_paths_are_checked_against_the_event_schema_of_their_type() {
    let out = sluice(&["validate", "tests/fixtures/contracts"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let file = "tests/fixtures/contracts/paid.yaml";
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}: EventSchema shop/paid: ok"),
            format!(
                "{file}: Trigger shop/paid: spec.transform.inputPaths.cents: \"$.data.total.cents\" cannot exist in events of type com.example.order.paid: EventSchema shop/paid v1: $.data.total is number, not an object"
            ),
            format!(
                "{file}: Trigger shop/paid: spec.transform.inputPaths.qty: \"$.data.items[0].qty\" cannot exist in events of type com.example.order.paid: EventSchema shop/paid v1: $.data.items[0] has no property \"qty\" (a closed object: sku)"
            ),
            format!(
                "{file}: Trigger shop/paid: spec.transform.inputPaths.total: \"$.data.totl\" cannot exist in events of type com.example.order.paid: EventSchema shop/paid v1: $.data has no property \"totl\" (a closed object: items, orderId, total)"
            ),
            format!("{file}: Trigger shop/any-order: ok"),
        ],
        "{text}"
    );
}
