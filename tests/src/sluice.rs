//! Sluice itself, the way users run it: the built `sluice` binary (and the workspace's other
//! binaries) located and built once per test process; one-shot commands ([`sluice`]); and a
//! running Sluice on either bus, as the conformance suite needs it: `sluice dev` on the
//! embedded bus ([`Dev`], or [`System`] with [`Backend::Embedded`]), or `sluice ingress` +
//! `sluice router` + `sluice worker` on a private nats-server ([`Backend::Nats`]). Both answer
//! the same HTTP API (publish, tail, dead letters), so one test body checks both.

use std::{
    ops::Deref,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{HttpResponse, events_at, http, nats::NatsServer, process::Proc, workspace};

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
    let mut cmd = Command::new(sluice_bin());
    cmd.current_dir(workspace()).args(args);
    if let Some(t) = crate::bearer_token() {
        cmd.env("SLUICE_TOKEN", t);
    }
    cmd.output().expect("sluice runs")
}

/// Where a running Sluice answers its HTTP API (`sluice dev`, or `sluice ingress`).
pub struct Endpoint {
    pub addr: String,
}

impl Endpoint {
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

    /// The recorded steps of the event `id`'s journey (`sluice trace`), oldest first.
    pub fn trace_steps(&self, id: &str) -> Vec<serde_json::Value> {
        let (status, _, body) = self
            .request("GET", &format!("/admin/events/{id}/trace"), &[], b"")
            .expect("the ingress answers");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let trace: serde_json::Value = serde_json::from_slice(&body).expect("trace JSON");
        trace["steps"].as_array().cloned().unwrap_or_default()
    }

    /// The attempts the event `id` had, (number, outcome), in attempt order.
    pub fn attempts(&self, id: &str) -> Vec<(u64, String)> {
        let mut out: Vec<(u64, String)> = self
            .trace_steps(id)
            .iter()
            .filter(|s| s["step"] == "attempt")
            .map(|s| {
                let n = s["attempt"].as_u64().expect("an attempt number");
                (n, s["outcome"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        out.sort();
        out
    }

    /// Every event on `bus` so far, oldest first.
    pub fn events(&self, bus: &str) -> Vec<serde_json::Value> {
        events_at(&self.addr, bus)
    }

    /// POSTs `events` as one batch to the default bus; returns the status and the answer
    /// (`null` when it is not JSON).
    pub fn post_batch(&self, events: &[serde_json::Value]) -> (u16, serde_json::Value) {
        let body = serde_json::to_vec(events).expect("events serialize");
        let (status, _, answer) = self
            .request(
                "POST",
                "/buses/default/events",
                &[("content-type", "application/cloudevents-batch+json")],
                &body,
            )
            .expect("the ingress answers");
        (status, serde_json::from_slice(&answer).unwrap_or_default())
    }
}

/// Waits until every address answers `/readyz` with 200, failing with `logs()` after 120 s.
fn wait_ready<'a>(addrs: impl IntoIterator<Item = &'a str>, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for a in addrs {
        loop {
            if let Ok((200, _, _)) = http(a, "GET", "/readyz", &[], b"") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{a} did not become ready\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A `sluice dev` process serving a manifest directory on a given port; killed when dropped.
pub struct Dev {
    pub proc: Proc,
    endpoint: Endpoint,
}

impl Dev {
    /// Starts `sluice dev DIR --data-dir DATA` and waits until it serves.
    pub fn start(dir: &Path, data: &Path, port: u16, extra: &[&str]) -> Dev {
        Self::start_with_env(dir, data, port, extra, &[])
    }

    /// [`Dev::start`] with `env` added to its environment.
    pub fn start_with_env(
        dir: &Path,
        data: &Path,
        port: u16,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Dev {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = format!("127.0.0.1:{port}");
        let s = |x: &Path| x.display().to_string();
        let mut args = vec![
            "dev".into(),
            s(dir),
            "--data-dir".into(),
            s(data),
            "--addr".into(),
            addr.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = data.with_extension(format!("{port}.{n}.log"));
        let dev = Dev {
            proc: Proc::spawn_with_env(sluice_bin(), args, env, log),
            endpoint: Endpoint { addr },
        };
        wait_ready([dev.addr.as_str()], || {
            format!("sluice dev log:\n{}", dev.log_text())
        });
        dev
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }
}

impl Deref for Dev {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Nats,
}

/// What every Sluice process prints once it listens.
const ANNOUNCE: &str = " on http://";

/// The address the latest start of `proc` announced (`… on http://ADDR`): processes listen
/// on port 0, so parallel tests never race for a port.
fn announced_addr(proc: &mut Proc) -> String {
    let starts = proc.starts();
    proc.wait_log(Duration::from_secs(120), "no address announced", |log| {
        if log.matches(ANNOUNCE).count() < starts {
            return None;
        }
        log.rsplit(ANNOUNCE)
            .next()
            .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == ')').next())
            .map(str::to_owned)
    })
}

/// `sluice worker`'s arguments: `function` of the manifests in `dir` on the NATS at `url`.
fn worker_args(url: &str, function: &str, dir: &Path, listen: &str, cache: &Path) -> Vec<String> {
    [
        "worker",
        "--nats",
        url,
        "--function",
        function,
        "--manifests",
        &dir.display().to_string(),
        "--listen",
        listen,
        "--cache-dir",
        &cache.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Sluice serving a manifest directory on one of the two buses. Its [`Endpoint`] is where
/// producers and the CLI talk to it (`sluice dev`, or the ingress).
pub struct System {
    pub backend: Backend,
    endpoint: Endpoint,
    /// `sluice dev`, or `sluice ingress`.
    pub front: Proc,
    pub router: Option<Proc>,
    pub router_addr: Option<String>,
    pub worker: Option<Proc>,
    pub worker_addr: Option<String>,
    pub nats: Option<NatsServer>,
}

impl System {
    /// Starts Sluice on `backend` for the manifests in `dir` (whose Function is `function`),
    /// keeping state under `data`, and waits until every process is ready.
    pub fn start(backend: Backend, dir: &Path, data: &Path, function: &str) -> System {
        if backend == Backend::Nats {
            let nats = NatsServer::start(&data.join("nats"));
            return Self::start_on_nats(nats, dir, data, function);
        }
        std::fs::create_dir_all(data).expect("data dir");
        let addr = "127.0.0.1:0".to_owned();
        let dev = vec![
            "dev".into(),
            dir.display().to_string(),
            "--data-dir".into(),
            data.join("bus").display().to_string(),
            "--addr".into(),
            addr.clone(),
        ];
        let mut sys = System {
            backend,
            front: Proc::spawn(sluice_bin(), dev, data.join("dev.log")),
            endpoint: Endpoint { addr },
            router: None,
            router_addr: None,
            worker: None,
            worker_addr: None,
            nats: None,
        };
        sys.refresh_addrs();
        sys.wait_ready();
        sys
    }

    /// Starts Sluice's distributed processes (ingress, router, one worker of `function`) on
    /// an already running nats-server.
    pub fn start_on_nats(nats: NatsServer, dir: &Path, data: &Path, function: &str) -> System {
        std::fs::create_dir_all(data).expect("data dir");
        let addr = "127.0.0.1:0".to_owned();
        let s = |x: &Path| x.display().to_string();
        // Trace steps are off by default on NATS (they cost publish throughput); the suites
        // check them, so these processes record them.
        let env: [(&str, &std::ffi::OsStr); 1] = [("SLUICE_TRACE_STEPS", "1".as_ref())];
        let sluice = |args: Vec<String>, log: &str| {
            Proc::spawn_with_env(sluice_bin(), args, &env, data.join(log))
        };
        let url = nats.url();
        let nats_args = |command: &str| vec![command.into(), "--nats".into(), url.clone()];
        let mut ingress = nats_args("ingress");
        ingress.extend([
            "--manifests".into(),
            s(dir),
            "--listen".into(),
            addr.clone(),
        ]);
        let mut router = nats_args("router");
        router.extend([
            "--manifests".into(),
            s(dir),
            "--listen".into(),
            addr.clone(),
        ]);
        let worker = worker_args(&url, function, dir, &addr, &data.join("cache"));
        let mut sys = System {
            backend: Backend::Nats,
            front: sluice(ingress, "ingress.log"),
            router: Some(sluice(router, "router.log")),
            router_addr: Some(addr.clone()),
            worker: Some(sluice(worker, "worker.log")),
            worker_addr: Some(addr.clone()),
            endpoint: Endpoint { addr },
            nats: Some(nats),
        };
        sys.refresh_addrs();
        sys.wait_ready();
        sys
    }

    /// Starts one more worker of `function` through `wrapper` (a command that runs the
    /// `sluice` it is given, e.g. `ip netns exec NS`), listening on `listen`, with a module
    /// cache of its own; waits until it is ready and returns it with its address.
    pub fn add_worker(
        &self,
        wrapper: &[&str],
        dir: &Path,
        data: &Path,
        function: &str,
        listen: &str,
        name: &str,
    ) -> (Proc, String) {
        let nats = self.nats.as_ref().expect("a distributed system");
        let (program, mut args) = match wrapper.split_first() {
            Some((p, rest)) => (
                PathBuf::from(p),
                rest.iter()
                    .map(|a| a.to_string())
                    .chain([sluice_bin().display().to_string()])
                    .collect(),
            ),
            None => (sluice_bin().to_owned(), Vec::new()),
        };
        let cache = data.join(format!("cache-{name}"));
        args.extend(worker_args(&nats.url(), function, dir, listen, &cache));
        let mut proc = Proc::spawn(&program, args, data.join(format!("{name}.log")));
        let addr = announced_addr(&mut proc);
        wait_ready([addr.as_str()], || proc.log_text());
        (proc, addr)
    }

    /// Reads the addresses the processes announced (they change with every restart).
    fn refresh_addrs(&mut self) {
        self.endpoint.addr = announced_addr(&mut self.front);
        if let Some(r) = &mut self.router {
            self.router_addr = Some(announced_addr(r));
        }
        if let Some(w) = &mut self.worker {
            self.worker_addr = Some(announced_addr(w));
        }
    }

    /// Waits until every process answers `/readyz` with 200.
    pub fn wait_ready(&self) {
        let addrs = [Some(&self.addr), self.router_addr.as_ref()]
            .into_iter()
            .chain([self.worker_addr.as_ref()])
            .flatten()
            .map(String::as_str);
        wait_ready(addrs, || self.logs());
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!("--- front ---\n{}", self.front.log_text());
        for (name, p) in [("router", &self.router), ("worker", &self.worker)] {
            if let Some(p) = p {
                out.push_str(&format!("\n--- {name} ---\n{}", p.log_text()));
            }
        }
        out
    }

    /// Crashes whatever runs the handlers (the worker, or all of `sluice dev`) with SIGKILL
    /// and starts it again.
    pub fn crash_and_restart_worker(&mut self) {
        let p = self.worker.as_mut().unwrap_or(&mut self.front);
        p.kill9();
        p.restart();
        self.refresh_addrs();
        self.wait_ready();
    }
}

impl System {
    /// Crashes the front (`sluice dev`, or the ingress) with SIGKILL and starts it again; its
    /// address changes.
    pub fn crash_and_restart_front(&mut self) {
        self.front.kill9();
        self.front.restart();
        self.refresh_addrs();
        self.wait_ready();
    }
}

impl Deref for System {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Sluice on `backend` running the tester handler (`e2e/tester`) with `triggers`, in a
/// temporary directory that lives as long as this value.
pub struct Tester {
    _tmp: tempfile::TempDir,
    pub sys: System,
}

impl Tester {
    pub fn start(backend: Backend, triggers: &str) -> Tester {
        Self::start_with_function(backend, "", triggers)
    }

    /// [`Tester::start`] with more lines of the tester Function's spec (`  emits: [t]\n`).
    pub fn start_with_function(backend: Backend, function_spec: &str, triggers: &str) -> Tester {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("manifests");
        std::fs::create_dir_all(&dir).expect("manifest dir");
        crate::tester_manifests_with(&dir, function_spec, triggers);
        let sys = System::start(backend, &dir, &tmp.path().join("data"), "e2e/tester");
        Tester { _tmp: tmp, sys }
    }

    /// The manifest directory the processes read (and re-read on change).
    pub fn manifests(&self) -> std::path::PathBuf {
        self._tmp.path().join("manifests")
    }
}
