//! The example handlers in `functions/<language>/` (and `functions/rust/<example>/`), tried
//! the way a user tries one: `sluice invoke` on the built module with the folder's sample
//! event. Replies are compared with `expected.jsonl` on `type`, `subject`, `datacontenttype`
//! and `data` (`id`, `source` and `time` are the host's to fill). Each folder's `cases/` holds
//! more events: `<case>.event.json` with either `<case>.expected.jsonl` (the replies) or
//! `<case>.fatal` (the message a fatal failure must log), and optionally `<case>.env`
//! (`NAME=VALUE` lines passed as `--env`). `make functions` builds the modules first; a
//! missing module fails with the command to run.

use std::path::{Path, PathBuf};

use serde_json::Value;
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

/// What one invocation must produce.
enum Expect {
    Replies(Vec<Value>),
    /// `sluice invoke` exits 1 reporting a fatal failure, and the handler logged this text.
    Fatal(String),
}

struct Case {
    name: String,
    event: PathBuf,
    env: Vec<String>,
    expect: Expect,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn parse_jsonl(path: &Path) -> Vec<Value> {
    read(path)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// The sample event plus every case in `cases/`, sorted by name.
fn cases(dir: &Path) -> Vec<Case> {
    let mut cases = vec![Case {
        name: "event.json".into(),
        event: dir.join("event.json"),
        env: vec![],
        expect: Expect::Replies(parse_jsonl(&dir.join("expected.jsonl"))),
    }];
    let Ok(entries) = std::fs::read_dir(dir.join("cases")) else {
        return cases;
    };
    let mut events: Vec<PathBuf> = entries
        .map(|e| e.expect("cases/ entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".event.json"))
        .collect();
    events.sort();
    for event in events {
        let file = event.file_name().unwrap().to_string_lossy().into_owned();
        let name = file.trim_end_matches(".event.json").to_owned();
        let sibling = |ext: &str| event.with_file_name(format!("{name}.{ext}"));
        let expect = match (sibling("expected.jsonl"), sibling("fatal")) {
            (replies, _) if replies.exists() => Expect::Replies(parse_jsonl(&replies)),
            (_, fatal) if fatal.exists() => Expect::Fatal(read(&fatal).trim().to_owned()),
            _ => panic!(
                "{}: neither {name}.expected.jsonl nor {name}.fatal",
                rel(&event)
            ),
        };
        let env = match std::fs::read_to_string(sibling("env")) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            Err(_) => vec![],
        };
        cases.push(Case {
            name,
            event,
            env,
            expect,
        });
    }
    cases
}

/// JSON equality where numbers compare by value: `38.50` printed by C equals `38.5`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The attributes a reply is judged on; the rest (id, source, time) is the host's.
fn compared(reply: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["type", "subject", "datacontenttype", "data"] {
        if let Some(v) = reply.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// The `key: value` pairs of a one-line YAML flow mapping such as
/// `  limits: { memory: 16Mi, timeout: 1s }`, the style every example manifest uses.
fn flow_map(yaml: &str, key: &str) -> Vec<(String, String)> {
    let prefix = format!("{key}: {{");
    let Some(line) = yaml.lines().find(|l| l.trim_start().starts_with(&prefix)) else {
        return vec![];
    };
    let inner = line
        .trim()
        .trim_start_matches(&prefix)
        .trim_end_matches('}');
    inner
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
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

    // The manifest's memory and output limits must be enough for every case; the wall-clock
    // limit is not used, since a test machine under load says nothing about the handler.
    let limits = flow_map(&function, "limits");
    let memory = limits
        .iter()
        .find(|(k, _)| k == "memory")
        .map(|(_, v)| v.clone());
    let output = limits
        .iter()
        .find(|(k, _)| k == "output")
        .map(|(_, v)| v.clone());

    let cases = cases(&dir);
    assert!(
        cases.len() >= 2,
        "{folder}: only the sample event, no case in cases/"
    );
    for case in cases {
        let what = format!("{folder} {}", case.name);
        let module = rel(&module);
        let event = rel(&case.event);
        let mut args = vec!["invoke", module.as_str(), "--event", event.as_str()];
        args.extend(["--timeout", "30s"]);
        if let Some(memory) = &memory {
            args.extend(["--memory", memory.as_str()]);
        }
        if let Some(output) = &output {
            args.extend(["--output", output.as_str()]);
        }
        for kv in &case.env {
            args.extend(["--env", kv.as_str()]);
        }
        let out = sluice(&args);
        let text = stdout(&out);
        let log = String::from_utf8_lossy(&out.stderr);
        match case.expect {
            Expect::Replies(want) => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{what}: sluice invoke failed\nstdout:\n{text}\nstderr:\n{log}"
                );
                let got: Vec<Value> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        serde_json::from_str(l)
                            .unwrap_or_else(|e| panic!("{what}: reply is not JSON: {e}: {l}"))
                    })
                    .collect();
                let got: Vec<Value> = got.iter().map(compared).collect();
                let want: Vec<Value> = want.iter().map(compared).collect();
                let equal =
                    got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| same(g, w));
                assert!(
                    equal,
                    "{what}: replies differ\n got: {}\nwant: {}\nstderr:\n{log}",
                    serde_json::to_string_pretty(&got).unwrap(),
                    serde_json::to_string_pretty(&want).unwrap()
                );
            }
            Expect::Fatal(message) => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{what}: expected a fatal failure\nstdout:\n{text}\nstderr:\n{log}"
                );
                assert!(
                    text.trim().is_empty(),
                    "{what}: a failed invocation printed replies:\n{text}"
                );
                assert!(
                    log.contains("fatal"),
                    "{what}: the failure is not reported as fatal:\n{log}"
                );
                assert!(
                    log.contains(&message),
                    "{what}: {message:?} not in the output:\n{log}"
                );
            }
        }
    }
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
