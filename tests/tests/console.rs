//! The web console in a real browser: `sluice dev --token` serves it, and Debian's chromium,
//! driven headless by playwright-core (tests/console/console.test.mjs), opens it, follows a
//! filtered live tail, sees a published event within 2 s, redrives a dead letter by
//! clicking, reads a trace and sends an event from the form. Screenshots land in
//! `target/console/`. chromium comes from scripts/setup.sh, playwright-core from
//! scripts/toolchains.sh (its env.sh names it); a missing one fails with the command to run.

use std::path::Path;
use std::process::Command;

use sluice_tests::{Dev, free_port, output_text, tester_manifests, tester_trigger, workspace};

/// `PLAYWRIGHT_MODULES` from scripts/toolchains.sh's env.sh.
fn playwright_modules() -> String {
    let dir = std::env::var("SLUICE_TOOLCHAINS")
        .unwrap_or_else(|_| "/var/cache/sluice/toolchains".into());
    let env_sh = Path::new(&dir).join("env.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". {} && printf %s \"${{PLAYWRIGHT_MODULES:-}}\"",
            env_sh.display()
        ))
        .output()
        .expect("bash runs");
    let modules = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && Path::new(&modules).join("playwright-core").is_dir(),
        "playwright-core is not installed ({}): run ./scripts/toolchains.sh",
        env_sh.display()
    );
    modules
}

#[test]
fn the_console_shows_events_and_redrives_a_dead_letter_in_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run ./scripts/setup.sh (Debian package chromium)"
    );
    let modules = playwright_modules();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    tester_manifests(
        &dir,
        &tester_trigger(
            "console",
            "com.example.console",
            &["retry: { maxAttempts: 2, initialDelay: 100ms }"],
        ),
    );
    let token = "console-test-token-0123456789";
    let dev = Dev::start(
        &dir,
        &tmp.path().join("data"),
        free_port(),
        &["--token", token],
    );
    let shots = workspace().join("target/console");
    std::fs::create_dir_all(&shots).unwrap();

    let out = Command::new("node")
        .arg(workspace().join("tests/console/console.test.mjs"))
        .env("PLAYWRIGHT_MODULES", &modules)
        .env("SLUICE_URL", format!("http://{}", dev.addr))
        .env("SLUICE_TOKEN", token)
        .env("TRIGGER", "e2e/console")
        .env("EVENT_TYPE", "com.example.console")
        .env("SHOTS_DIR", &shots)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "the console test failed:\n{}\nsluice dev log:\n{}",
        output_text(&out),
        dev.log_text()
    );
    let text = output_text(&out);
    assert!(
        text.contains("redrive clicked: the dead letter was delivered again"),
        "{text}"
    );
    assert!(shots.join("console.png").is_file());
}
