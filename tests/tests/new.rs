//! The developer's loop in each of the nine languages, as a user meets it and
//! docs/handlers.md shows it (`sluice new go hello-go`, `sluice build hello-go`, `sluice test
//! hello-go`, `sluice invoke hello-go/hello-go.wasm`, `sluice dev hello-go`): `sluice new LANG
//! NAME` writes a project, `sluice build` builds it with the installed toolchain, `sluice
//! invoke` runs its sample event, and `sluice test` passes its cases; the Go project is also
//! served by `sluice dev` and greets a published event. The toolchains are the ones `make
//! functions` installs (`scripts/toolchains.sh`, put on PATH by its env.sh); a missing one
//! fails the test with the command to run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sluice_tests::{
    Dev, free_port, output_text, sluice, sluice_bin, stdout, toolchain_env, wait_for,
};

/// Where the generated Rust projects build: beside the workspace's own build output, so a
/// second run reuses the compiled dependencies.
fn rust_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("sluice-new"),
        None => sluice_tests::workspace().join("target/sluice-new"),
    }
}

fn build(dir: &Path, env: &HashMap<String, String>) -> Output {
    Command::new(sluice_bin())
        .arg("build")
        .arg(dir)
        .envs(env)
        .env("CARGO_TARGET_DIR", rust_target_dir())
        .output()
        .expect("sluice build runs")
}

fn new_project(lang: &str, parent: &Path) -> (String, PathBuf) {
    let name = format!("hello-{lang}");
    let dir = parent.join(&name);
    let out = sluice(&["new", lang, &name, "--dir", dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sluice new {lang}: {}",
        output_text(&out)
    );
    assert!(stdout(&out).contains("Created"), "{}", output_text(&out));
    (name, dir)
}

/// Generates, builds, invokes and tests a project; returns the folder it is in (the project is
/// its only content, so `sluice dev` can serve it).
fn generate_build_invoke(lang: &str) -> Project {
    let tmp = tempfile::tempdir().unwrap();
    let (name, dir) = new_project(lang, tmp.path());
    for file in [
        "function.yaml",
        "trigger.yaml",
        "event.json",
        "expected.jsonl",
        "build.sh",
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "{lang}: {file} was not written");
    }

    let out = build(&dir, &toolchain_env());
    assert_eq!(
        out.status.code(),
        Some(0),
        "sluice build ({lang}):\n{}",
        output_text(&out)
    );
    let module = dir.join(format!("{name}.wasm"));
    assert!(
        stdout(&out).contains(&format!("built {}", module.display())),
        "{}",
        output_text(&out)
    );

    // The sample event through `sluice invoke`: one greeting, the subject kept.
    let event = dir.join("event.json");
    let out = sluice(&[
        "invoke",
        module.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sluice invoke ({lang}):\n{}",
        output_text(&out)
    );
    let replies: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{lang}: reply {l:?}: {e}")))
        .collect();
    assert_eq!(replies.len(), 1, "{lang}: {replies:?}");
    assert_eq!(replies[0]["type"], "com.example.greeting", "{lang}");
    assert_eq!(replies[0]["subject"], "visitors/ada", "{lang}");
    assert_eq!(replies[0]["data"]["greeting"], "Hello, Ada!", "{lang}");
    assert_eq!(
        replies[0]["source"],
        format!("sluice://default/{name}"),
        "{lang}"
    );

    // An event without a name is fatal, with the handler's reason.
    let no_name = dir.join("cases/no-name.event.json");
    let out = sluice(&[
        "invoke",
        module.to_str().unwrap(),
        "--event",
        no_name.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{lang}: {}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: fatal: data.name: must be a non-empty string"),
        "{lang}: the failure does not carry the handler's reason:\n{err}"
    );

    // `sluice test`: the sample event and both cases, with the Function's limits.
    let out = sluice(&["test", dir.to_str().unwrap(), "--timeout", "30s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sluice test ({lang}):\n{}",
        output_text(&out)
    );
    assert!(
        stdout(&out).contains(&format!("{name}: 3 of 3 passed")),
        "{}",
        output_text(&out)
    );
    Project { _tmp: tmp, dir }
}

/// A generated project and the temporary folder holding it.
struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Project {
    fn path(&self) -> &Path {
        &self.dir
    }
}

#[test]
fn rust() {
    generate_build_invoke("rust");
}

#[test]
fn c() {
    generate_build_invoke("c");
}

#[test]
fn cpp() {
    generate_build_invoke("cpp");
}

#[test]
fn zig() {
    generate_build_invoke("zig");
}

#[test]
fn assemblyscript() {
    generate_build_invoke("assemblyscript");
}

#[test]
fn javascript() {
    generate_build_invoke("javascript");
}

#[test]
fn python() {
    generate_build_invoke("python");
}

#[test]
fn go() {
    let dir = generate_build_invoke("go");
    // The project as it is, served: a published hello is greeted on the bus.
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), data.path(), free_port(), &[]);
    let event = br#"{"specversion":"1.0","id":"dev-1","source":"/t","type":"com.example.hello","data":{"name":"Grace"}}"#;
    let (status, _, body) = dev
        .request(
            "POST",
            "/",
            &[("content-type", "application/cloudevents+json")],
            event,
        )
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let greeting = wait_for(30, || {
        dev.events("default")
            .into_iter()
            .find(|e| e["type"] == "com.example.greeting")
    })
    .unwrap_or_else(|| panic!("no greeting on the bus\n{}", dev.log_text()));
    assert_eq!(greeting["data"]["greeting"], "Hello, Grace!");
    assert_eq!(greeting["source"], "sluice://default/hello-go");
}

#[test]
fn wat() {
    generate_build_invoke("wat");
}

/// `sluice test` fails a reply that differs, a sample event no Trigger would deliver, and a
/// module that was never built, each saying so.
#[test]
fn test_reports_what_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let (name, dir) = new_project("wat", tmp.path());
    let out = sluice(&["test", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("is not built: run `sluice build"),
        "{}",
        output_text(&out)
    );

    let out = build(&dir, &toolchain_env());
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let expected = dir.join("expected.jsonl");
    let text = std::fs::read_to_string(&expected).unwrap();
    std::fs::write(&expected, text.replace("Hello, Ada!", "Hello, Bob!")).unwrap();
    let out = sluice(&["test", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = stdout(&out);
    assert!(text.contains("FAIL  event.json: replies differ"), "{text}");
    assert!(
        text.contains("Hello, Bob!") && text.contains("Hello, Ada!"),
        "{text}"
    );
    assert!(
        text.contains("ok    cases/no-name") && text.contains(&format!("{name}: 1 of 3 failed")),
        "{text}"
    );
    std::fs::write(&expected, text_of_expected()).unwrap();

    let trigger = dir.join("trigger.yaml");
    let yaml = std::fs::read_to_string(&trigger).unwrap();
    std::fs::write(
        &trigger,
        yaml.replace("com.example.hello\"]", "com.example.other\"]"),
    )
    .unwrap();
    let out = sluice(&["test", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        stdout(&out).contains(&format!(
            "matches the pattern of no Trigger of this Function ({name}-hello)"
        )),
        "{}",
        output_text(&out)
    );
}

fn text_of_expected() -> &'static str {
    "{\"type\":\"com.example.greeting\",\"subject\":\"visitors/ada\",\"datacontenttype\":\"application/json\",\"data\":{\"greeting\":\"Hello, Ada!\"}}\n"
}

/// A missing tool is named with how to install it, before anything runs; bad names and an
/// occupied folder are refused without writing anything.
#[test]
fn build_and_new_refuse_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = new_project("zig", tmp.path());
    let out = Command::new(sluice_bin())
        .arg("build")
        .arg(&dir)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zig: not found on PATH; install: pip install ziglang"),
        "{err}"
    );
    assert!(
        !err.contains("with build.sh"),
        "build.sh ran without its tool:\n{err}"
    );

    let out = sluice(&[
        "new",
        "go",
        "Hello_World",
        "--dir",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        output_text(&out).contains("NAME \"Hello_World\": must be"),
        "{}",
        output_text(&out)
    );
    assert!(!tmp.path().join("x").exists());

    let out = sluice(&["new", "cobol", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        output_text(&out).contains("one of rust, c, cpp"),
        "{}",
        output_text(&out)
    );

    let before = std::fs::read_to_string(dir.join("handler.zig")).unwrap();
    let out = sluice(&["new", "c", "hello-zig", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("already exists and is not empty"),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("handler.zig")).unwrap(),
        before
    );
    assert!(!dir.join("handler.c").exists());
}
