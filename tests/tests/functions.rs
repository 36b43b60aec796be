//! The example handlers in `functions/<language>/` (and `functions/rust/<example>/`), tried
//! the way a user tries one: `sluice test` on the folder runs its sample event and every case
//! in `cases/` through the built module with the Function's limits and compares the replies
//! with `expected.jsonl` (cli/src/project/test.rs says how). `make functions` builds the
//! modules first; a missing module fails with the command to run.

use std::path::Path;

use sluice_tests::{sluice, stdout, workspace};

/// One example: its folder under `functions/`, the module its build writes, and its ABI.
struct Example {
    folder: &'static str,
    module: &'static str,
    abi: &'static str,
}

const EXAMPLES: [Example; 10] = [
    Example {
        folder: "c",
        module: "sensor.wasm",
        abi: "command",
    },
    Example {
        folder: "cpp",
        module: "summary.wasm",
        abi: "command",
    },
    Example {
        folder: "zig",
        module: "shipping.wasm",
        abi: "command",
    },
    Example {
        folder: "assemblyscript",
        module: "signup.wasm",
        abi: "command",
    },
    Example {
        folder: "javascript",
        module: "invoice.wasm",
        abi: "component",
    },
    Example {
        folder: "python",
        module: "fraud.wasm",
        abi: "component",
    },
    Example {
        folder: "go",
        module: "order-check.wasm",
        abi: "command",
    },
    Example {
        folder: "wat",
        module: "measure.wasm",
        abi: "command",
    },
    Example {
        folder: "rust/invoice",
        module: "invoice.wasm",
        abi: "component",
    },
    Example {
        folder: "rust/restock",
        module: "restock.wasm",
        abi: "command",
    },
];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn check(folder: &str) {
    let example = EXAMPLES
        .iter()
        .find(|e| e.folder == folder)
        .expect("a known example");
    let language = folder.split('/').next().expect("a language folder");
    let dir = workspace().join("functions").join(folder);
    let module = dir.join(example.module);
    assert!(
        module.exists(),
        "{} is not built: run `make functions` (or `./scripts/toolchains.sh && make -C \
         functions {language}`) first",
        rel(&module)
    );

    // The manifests are valid and point at this module with this ABI.
    let manifests = [dir.join("function.yaml"), dir.join("trigger.yaml")];
    let args: Vec<String> = std::iter::once("validate".to_owned())
        .chain(manifests.iter().map(|p| rel(p)))
        .collect();
    let out = sluice(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "sluice validate:\n{text}");
    assert!(
        text.contains(": Function examples/") && text.contains(": Trigger examples/"),
        "{text}"
    );
    let function = read(&manifests[0]);
    assert!(
        function.contains(&format!("path: {}\n", example.module)),
        "{}: spec.module.path is not {}",
        rel(&manifests[0]),
        example.module
    );
    assert!(
        function.contains(&format!("abi: {}\n", example.abi)),
        "{}: abi is not {}",
        rel(&manifests[0]),
        example.abi
    );

    // Every case passes with the manifest's memory and output limits; the wall-clock limit is
    // raised, since a test machine under load says nothing about the handler.
    let cases = std::fs::read_dir(dir.join("cases"))
        .map(|entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".event.json"))
                })
                .count()
        })
        .unwrap_or(0);
    assert!(
        cases >= 1,
        "{folder}: only the sample event, no case in cases/"
    );
    let out = sluice(&["test", &rel(&dir), "--timeout", "30s"]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sluice test functions/{folder}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = cases + 1;
    assert!(
        text.contains(&format!(": {total} of {total} passed")),
        "{text}"
    );
}

#[test]
fn c_sensor_reading_to_celsius_with_alert() {
    check("c");
}

#[test]
fn cpp_text_summary() {
    check("cpp");
}

#[test]
fn zig_shipping_quote() {
    check("zig");
}

#[test]
fn assemblyscript_signup_enrichment() {
    check("assemblyscript");
}

#[test]
fn javascript_component_invoice() {
    check("javascript");
}

#[test]
fn python_component_fraud_score() {
    check("python");
}

#[test]
fn go_order_check() {
    check("go");
}

#[test]
fn wat_byte_measure() {
    check("wat");
}

#[test]
fn rust_component_invoice() {
    check("rust/invoice");
}

#[test]
fn rust_command_restock() {
    check("rust/restock");
}

/// Every folder is complete: what the functions/README.md index promises a user finds. A
/// language with several examples (rust/) keeps one build.sh for them all.
#[test]
fn every_example_folder_has_its_files() {
    let functions = workspace().join("functions");
    for example in &EXAMPLES {
        let dir = functions.join(example.folder);
        let language = example.folder.split('/').next().expect("a language folder");
        for file in [
            "README.md",
            "function.yaml",
            "trigger.yaml",
            "event.json",
            "expected.jsonl",
        ] {
            assert!(
                dir.join(file).exists(),
                "functions/{}/{file} is missing",
                example.folder
            );
        }
        assert!(
            dir.join("build.sh").exists() || functions.join(language).join("build.sh").exists(),
            "functions/{}: no build.sh",
            example.folder
        );
        let index = read(&functions.join("README.md"));
        assert!(
            index.contains(&format!("]({language}/)")),
            "functions/README.md does not link {language}/"
        );
    }
}
