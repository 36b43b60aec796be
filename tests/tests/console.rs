//! The web console in a real browser: `sluice dev --token` serves it, and Debian's chromium,
//! driven headless by playwright-core (tests/console/console.test.mjs), opens it, follows a
//! filtered live tail, sees a published event within 2 s, redrives a dead letter by
//! clicking, reads a trace and sends an event from the form. Screenshots land in
//! `target/console/`. chromium comes from scripts/setup.sh, playwright-core from
//! scripts/toolchains.sh (its env.sh names it); a missing one fails with the command to run.

use std::path::Path;
use std::process::Command;

use sluice_tests::{
    Dev, free_port, output_text, tester_setup, tester_trigger, toolchain_env, workspace,
};

/// `PLAYWRIGHT_MODULES` from scripts/toolchains.sh's env.sh.
fn playwright_modules() -> String {
    let modules = toolchain_env()
        .remove("PLAYWRIGHT_MODULES")
        .unwrap_or_default();
    assert!(
        Path::new(&modules).join("playwright-core").is_dir(),
        "playwright-core is not installed: run ./scripts/toolchains.sh"
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
    let (_tmp, dir, data) = tester_setup(&tester_trigger(
        "console",
        "com.example.console",
        &["retry: { maxAttempts: 2, initialDelay: 100ms }"],
    ));
    let token = "console-test-token-0123456789";
    let dev = Dev::start(&dir, &data, free_port(), &["--token", token]);
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
