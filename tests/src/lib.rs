//! The system rung of Sluice's tests, and the helpers every test that starts a real
//! component shares. Tests stand on three rungs, each run on its own: **unit** tests are pure
//! and live in their crate's `src/` (`cargo test --workspace --lib --bins`); **component**
//! tests drive one crate against a real local part (the journal on disk, one nats-server, an
//! API-server-only control plane) and live in that crate's own `tests/` folder (`cargo test
//! --workspace --exclude sluice-tests --test '*'`); **system** tests run the built binaries as
//! processes (or on a one-node cluster) the way users do, and are this crate's `tests/`
//! (`cargo test -p sluice-tests --tests`, which leaves out the cluster test; that one is
//! `cargo test -p sluice-tests --features cluster --test cluster`).
//! Each real component has one module here, used by every rung that needs it: [`nats`] (a
//! nats-server), [`control_plane`] (etcd + kube-apiserver), [`cluster`] (the one-node
//! Kubernetes), [`sluice`](mod@sluice) (the `sluice` binary and its processes); [`kubectl`]
//! drives an API server as users do, and [`process`] is the child process they all run in.

/// One test per backend for each case, a function of the backend: `mod CASE { fn embedded,
/// fn nats }`.
#[macro_export]
macro_rules! both {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn embedded() {
                super::$case(sluice_tests::sluice::Backend::Embedded)
            }
            #[test]
            fn nats() {
                super::$case(sluice_tests::sluice::Backend::Nats)
            }
        }
    )*};
}

pub mod brokers;
pub mod cluster;
pub mod control_plane;
pub mod disk;
pub mod kubectl;
pub mod nats;
pub mod process;
pub mod sluice;

pub use sluice::{Dev, sluice, sluice_bin, workspace_bin};

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

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stdout then stderr of a finished command, for failure messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The e2e tester handler (`tests/guests/tester`), built from source once per test process.
pub fn tester_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = workspace().join("target/guests");
        let status = Command::new(cargo)
            .current_dir(workspace().join("tests/guests"))
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1", "--target-dir"])
            .arg(&target_dir)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building tests/guests/tester for wasm32-wasip1 failed (is the target installed? `make setup`)");
        target_dir.join("wasm32-wasip1/release/tester.wasm")
    })
}

/// A free loopback port (racy in theory; the OS rarely reuses a port at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Every event on `bus` of the Sluice at `addr` so far, oldest first.
pub fn events_at(addr: &str, bus: &str) -> Vec<serde_json::Value> {
    try_events_at(addr, bus).unwrap_or_else(|e| panic!("tail of bus {bus} at {addr}: {e}"))
}

/// [`events_at`] for a Sluice that may be restarting: a refused connection or a status other
/// than 200 is an error to retry on, not a failed test.
pub fn try_events_at(addr: &str, bus: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let path = format!("/buses/{bus}/events?after={after}&limit=10000");
        let (status, headers, body) =
            http(addr, "GET", &path, &[], b"").map_err(|e| format!("tail request: {e}"))?;
        if status != 200 {
            return Err(format!(
                "tail answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let before = out.len();
        for line in String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.is_empty())
        {
            out.push(serde_json::from_str(line).expect("tail gives JSON lines"));
        }
        if out.len() == before {
            return Ok(out);
        }
        after = headers
            .iter()
            .find(|(k, _)| k == "x-sluice-next")
            .and_then(|(_, v)| v.parse().ok())
            .expect("x-sluice-next");
    }
}

/// Status, lowercased headers and body of an HTTP response.
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.1 client (one request per connection), enough for tests.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(t) = BEARER.get()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        req.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    // A server may answer before it has read the whole body (413 for an oversized one) and
    // close: the write then fails with a broken pipe or reset, yet the answer is already on
    // its way. Keep the write error and read what came back; only with no answer at all is the
    // write error the result.
    let written = s.write_all(req.as_bytes()).and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset after the answer arrived (the server closed with our body unread).
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(written.err().unwrap_or(e)),
        }
    }
    if raw.is_empty() {
        written?;
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let hs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if hs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok((status, hs, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// Polls `f` until it returns Some or `secs` pass.
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// For each input id, how many `com.example.done` replies the tester handler made (`events`
/// from the default bus).
pub fn done_counts(events: &[serde_json::Value]) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for e in events {
        if e["type"] == "com.example.done" {
            *m.entry(e["data"]["of"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    m
}

/// Writes a Function running the tester handler plus `triggers` (YAML) into `dir`.
pub fn tester_manifests(dir: &Path, triggers: &str) {
    tester_manifests_with(dir, "", triggers);
}

/// [`tester_manifests`] with more lines of the Function's spec (`  emits: [t]\n`).
pub fn tester_manifests_with(dir: &Path, function_spec: &str, triggers: &str) {
    let f = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {{name: tester, namespace: e2e}}\nspec:\n  module: {{path: {}}}\n  abi: command\n  concurrency: 32\n  limits: {{timeout: 5s}}\n  scaling: {{minReplicas: 0, maxReplicas: 2, targetPendingPerReplica: 500, cooldown: 30s}}\n{function_spec}",
        tester_wasm().display()
    );
    std::fs::write(dir.join("function.yaml"), f).expect("write manifest");
    std::fs::write(dir.join("triggers.yaml"), triggers).expect("write manifest");
}

/// A temporary folder holding `manifests/` (the tester Function plus `triggers`) and the
/// path for a `sluice dev` data directory beside it: (folder, manifests, data).
pub fn tester_setup(triggers: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path().join("manifests");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&dir).expect("manifests folder");
    tester_manifests(&dir, triggers);
    (tmp, dir, data)
}

/// The environment scripts/toolchains.sh's env.sh sets (PATH with every handler toolchain,
/// ASC_MODULES, JCO_MODULES, PLAYWRIGHT_MODULES, GOTOOLCHAIN), read by sourcing it. Fails
/// with the command to run when the toolchains are not installed.
pub fn toolchain_env() -> std::collections::HashMap<String, String> {
    let dir = std::env::var("SLUICE_TOOLCHAINS")
        .unwrap_or_else(|_| "/var/cache/sluice/toolchains".into());
    let env_sh = Path::new(&dir).join("env.sh");
    assert!(
        env_sh.exists(),
        "{} is missing: run ./scripts/toolchains.sh (or make functions) first",
        env_sh.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(". {} && env -0", env_sh.display()))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "sourcing {}: {}",
        env_sh.display(),
        output_text(&out)
    );
    out.stdout
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .filter(|(k, _)| k == &"PATH" || k.ends_with("_MODULES") || k == &"GOTOOLCHAIN")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A Trigger in namespace `e2e` sending the default bus's events of type `event_type` to the
/// tester handler; `delivery` holds the lines of its `spec.delivery` (none: no such key).
/// Triggers join with `---\n` into one manifest file.
pub fn tester_trigger(name: &str, event_type: &str, delivery: &[&str]) -> String {
    let mut t = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\n\
         metadata: {{ name: {name}, namespace: e2e }}\n\
         spec:\n  source: {{ bus: default }}\n  pattern: {{ type: [{event_type}] }}\n  function: tester\n"
    );
    if !delivery.is_empty() {
        t.push_str("  delivery:\n");
        for line in delivery {
            t.push_str(&format!("    {line}\n"));
        }
    }
    t
}

/// The Python with the official CloudEvents SDK that `scripts/setup.sh` installs.
pub const CLOUDEVENTS_PYTHON: &str = "/var/cache/sluice/toolchains/cloudevents-1.12.0/bin/python";

/// The bearer token every request of this test process sends from now on (through [`http`],
/// and as `SLUICE_TOKEN` to the `sluice` commands it runs), as a user exports SLUICE_TOKEN
/// once: for a Sluice whose ingress requires one (the chart's default).
pub fn use_bearer_token(token: &str) {
    let _ = BEARER.set(token.to_owned());
}

static BEARER: OnceLock<String> = OnceLock::new();

/// The token set by [`use_bearer_token`].
pub fn bearer_token() -> Option<&'static str> {
    BEARER.get().map(String::as_str)
}

/// What a fault test saw, in the counts the README's fault table quotes: events sent,
/// accepted (2xx), handled (distinct, at least once), duplicated (extra deliveries) and lost
/// (accepted, never handled). [`FaultCounts::report`] prints them and keeps them under
/// `target/faults/`.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub sent: usize,
    pub accepted: usize,
    pub handled: usize,
    pub duplicated: usize,
    pub lost: usize,
}

impl FaultCounts {
    /// Counts from the ids accepted and the handled multiplicities (`done_counts`).
    pub fn of(
        sent: usize,
        accepted: &std::collections::HashSet<String>,
        handled: &std::collections::HashMap<String, usize>,
    ) -> Self {
        let of_accepted = |id: &String| handled.get(id).copied().unwrap_or(0);
        Self {
            sent,
            accepted: accepted.len(),
            handled: accepted.iter().filter(|id| of_accepted(id) > 0).count(),
            duplicated: accepted
                .iter()
                .map(|id| of_accepted(id).saturating_sub(1))
                .sum(),
            lost: accepted.iter().filter(|id| of_accepted(id) == 0).count(),
        }
    }

    /// Prints the counts and writes them to `target/faults/NAME.json`.
    pub fn report(&self, name: &str) {
        let json = serde_json::json!({
            "sent": self.sent,
            "accepted": self.accepted,
            "handled": self.handled,
            "duplicated": self.duplicated,
            "lost": self.lost,
        })
        .to_string();
        println!("fault {name}: {json}");
        let dir = workspace().join("target/faults");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.json")), json + "\n");
    }
}
