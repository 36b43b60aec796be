//! Shared helpers for the end-to-end tests in `tests/tests/`: they run the real `sluice`
//! binary, built once per test process by cargo itself, the way a user would.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

/// The workspace root (where `Cargo.toml`, `crds/` and `functions/` live).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
}

/// Path of a freshly built `sluice` binary of the same profile as this test.
pub fn sluice_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = !cfg!(debug_assertions);
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace()).args([
            "build",
            "--quiet",
            "-p",
            "sluice-runtime",
            "--bin",
            "sluice",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the sluice binary failed");
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        profile_dir.join("sluice")
    })
}

/// Runs `sluice ARGS…` from the workspace root and returns its output.
pub fn sluice(args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .current_dir(workspace())
        .args(args)
        .output()
        .expect("sluice runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
