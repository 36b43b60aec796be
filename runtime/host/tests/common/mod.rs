//! Builds the guest handlers under `tests/guests/` from source (once per test process) and
//! offers the engine, handler and event helpers the host tests share.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sluice_event::CloudEvent;
use sluice_host::{Engine, EngineConfig, HandlerConfig};

pub fn workspace_target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/guests")
}

/// Builds `package` of the guest workspace for `target` and returns the module bytes.
fn build(package: &str, target: &str, artifact: &str) -> Vec<u8> {
    let guests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/guests");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&guests)
        .args([
            "build",
            "--quiet",
            "--release",
            "--locked",
            "-p",
            package,
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(workspace_target())
        // The host's build flags are for the host, not the guest.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo for the guest modules");
    assert!(
        status.success(),
        "building guest {package} for {target} failed"
    );
    let path = workspace_target()
        .join(target)
        .join("release")
        .join(artifact);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The component probe (`tests/guests/probe`), world sluice:function/handler.
pub fn probe() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build("probe", "wasm32-wasip2", "probe.wasm"))
}

/// The command probe as a WASI preview 1 core module.
pub fn cmd_p1() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build("cmd", "wasm32-wasip1", "cmd.wasm"))
}

/// The command probe as a WASI preview 2 command component.
pub fn cmd_p2() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build("cmd", "wasm32-wasip2", "cmd.wasm"))
}

pub fn engine() -> Engine {
    Engine::new(EngineConfig {
        max_instances: 8,
        max_memory: 256 << 20,
        ..EngineConfig::default()
    })
    .expect("engine")
}

pub fn config(name: &str) -> HandlerConfig {
    let mut cfg = HandlerConfig::new("test", name);
    cfg.timeout = Duration::from_secs(2);
    cfg.memory = 32 << 20;
    cfg.output = 1 << 20;
    cfg
}

/// An event whose type selects the probe's behaviour.
pub fn event(ty: &str, data: &str) -> CloudEvent {
    let mut e = CloudEvent::new("ev-1", "/tests", ty);
    e.datacontenttype = Some("text/plain".into());
    e.data = Some(data.as_bytes().to_vec());
    e
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
}
