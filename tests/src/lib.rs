//! Shared helpers for the end-to-end tests in `tests/tests/`: they run the real `sluice`
//! binary, built once per test process by cargo itself, the way a user would.

pub mod cluster;
pub mod system;

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
    BIN.get_or_init(|| workspace_bin("sluice"))
}

/// Path of the workspace binary `name` of this test's profile, built first (once per test
/// process) unless `SLUICE_PREBUILT_BINS` says `make test` built them before starting the
/// tests. (Cargo run from inside a test sees the test's environment, which build scripts
/// notice: it would rebuild part of the dependency tree on every test run.)
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        if std::env::var_os("SLUICE_PREBUILT_BINS").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace())
                .args(["build", "--quiet", "--workspace", "--bins"]);
            if !cfg!(debug_assertions) {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cargo runs");
            assert!(status.success(), "building the workspace binaries failed");
        }
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        exe.parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf()
    });
    dir.join(name)
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

/// A `sluice dev` process serving a manifest directory; killed when dropped.
pub struct Dev {
    pub child: std::process::Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Dev {
    /// Starts `sluice dev DIR --data-dir DATA` and waits until it serves.
    pub fn start(dir: &Path, data: &Path, port: u16, extra: &[&str]) -> Dev {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = data.with_extension(format!("{port}.{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(sluice_bin())
            .arg("dev")
            .arg(dir)
            .arg("--data-dir")
            .arg(data)
            .args(["--addr", &addr])
            .args(extra)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("sluice dev starts");
        let dev = Dev { child, addr, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Ok((200, _, _)) = dev.request("GET", "/readyz", &[], b"") {
                return dev;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("sluice dev did not become ready; log:\n{}", dev.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One HTTP/1.1 request; returns (status, headers, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        http(&self.addr, method, path, headers, body)
    }

    /// Every event on `bus` so far, oldest first.
    pub fn events(&self, bus: &str) -> Vec<serde_json::Value> {
        events_at(&self.addr, bus)
    }
}

/// Every event on `bus` of the Sluice at `addr` so far, oldest first.
pub fn events_at(addr: &str, bus: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let path = format!("/buses/{bus}/events?after={after}&limit=10000");
        let (status, headers, body) = http(addr, "GET", &path, &[], b"").expect("tail request");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let before = out.len();
        for line in String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.is_empty())
        {
            out.push(serde_json::from_str(line).expect("tail gives JSON lines"));
        }
        if out.len() == before {
            return out;
        }
        after = headers
            .iter()
            .find(|(k, _)| k == "x-sluice-next")
            .and_then(|(_, v)| v.parse().ok())
            .expect("x-sluice-next");
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill9();
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
    let f = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {{name: tester, namespace: e2e}}\nspec:\n  module: {{path: {}}}\n  abi: command\n  concurrency: 32\n  limits: {{timeout: 5s}}\n  scaling: {{minReplicas: 0, maxReplicas: 2, targetPendingPerReplica: 500, cooldown: 30s}}\n",
        tester_wasm().display()
    );
    std::fs::write(dir.join("function.yaml"), f).expect("write manifest");
    std::fs::write(dir.join("triggers.yaml"), triggers).expect("write manifest");
}

/// The Python with the official CloudEvents SDK that `scripts/setup.sh` installs.
pub const CLOUDEVENTS_PYTHON: &str = "/var/cache/sluice/toolchains/cloudevents-1.12.0/bin/python";
