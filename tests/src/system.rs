//! A running Sluice on either bus, as the conformance suite needs it: `sluice dev` on the
//! embedded bus, or `sluice ingress` + `sluice router` + `sluice worker` on a nats-server this
//! module starts on a free port with its own store directory. Both answer the same HTTP API
//! (publish, tail, dead letters), so one test body checks both.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use crate::{HttpResponse, free_port, http, sluice_bin};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Nats,
}

/// A child process restarted with the same arguments; killed when dropped.
pub struct Proc {
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    /// Starts so far (each announces its address once).
    starts: usize,
}

impl Proc {
    pub fn spawn(program: &Path, args: Vec<String>, log: PathBuf) -> Proc {
        let mut p = Proc {
            program: program.to_owned(),
            args,
            log,
            child: None,
            starts: 0,
        };
        p.restart();
        p
    }

    /// Starts it again (after `kill9`), appending to the same log.
    pub fn restart(&mut self) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.program.display()));
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (up to 30 s) for a graceful exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address the latest start announced (`… on http://ADDR`): processes listen on port
    /// 0, so parallel tests never race for a port.
    pub fn wait_addr(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let log = self.log_text();
            let starts = log.matches(ANNOUNCE).count();
            if starts >= self.starts
                && let Some(addr) = log
                    .rsplit(ANNOUNCE)
                    .next()
                    .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == ')').next())
            {
                return addr.to_owned();
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited ({status}):\n{log}", self.program.display());
            }
            assert!(Instant::now() < deadline, "no address announced:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What every Sluice process prints once it listens.
const ANNOUNCE: &str = " on http://";

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A nats-server with JetStream on a free loopback port and a store of its own.
pub struct NatsServer {
    pub port: u16,
    proc: Proc,
}

impl NatsServer {
    pub fn start(store: &Path) -> NatsServer {
        std::fs::create_dir_all(store).expect("store dir");
        let port = free_port();
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            store.display().to_string(),
        ];
        let server = NatsServer {
            port,
            proc: Proc::spawn(
                Path::new("/usr/sbin/nats-server"),
                args,
                store.with_extension("log"),
            ),
        };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not listen:\n{}", self.proc.log_text());
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.proc.restart();
        self.wait_listening();
    }
}

/// Sluice serving a manifest directory on one of the two buses.
pub struct System {
    pub backend: Backend,
    /// Where producers and the CLI talk to it (ingress).
    pub addr: String,
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
        std::fs::create_dir_all(data).expect("data dir");
        let addr = "127.0.0.1:0".to_owned();
        let s = |x: &Path| x.display().to_string();
        let sys = match backend {
            Backend::Embedded => System {
                backend,
                front: Proc::spawn(
                    sluice_bin(),
                    vec![
                        "dev".into(),
                        s(dir),
                        "--data-dir".into(),
                        s(&data.join("bus")),
                        "--addr".into(),
                        addr.clone(),
                    ],
                    data.join("dev.log"),
                ),
                addr,
                router: None,
                router_addr: None,
                worker: None,
                worker_addr: None,
                nats: None,
            },
            Backend::Nats => {
                let nats = NatsServer::start(&data.join("nats"));
                let url = nats.url();
                let router_addr = addr.clone();
                let worker_addr = addr.clone();
                let front = Proc::spawn(
                    sluice_bin(),
                    vec![
                        "ingress".into(),
                        "--nats".into(),
                        url.clone(),
                        "--listen".into(),
                        addr.clone(),
                    ],
                    data.join("ingress.log"),
                );
                let router = Proc::spawn(
                    sluice_bin(),
                    vec![
                        "router".into(),
                        "--nats".into(),
                        url.clone(),
                        "--manifests".into(),
                        s(dir),
                        "--listen".into(),
                        router_addr.clone(),
                    ],
                    data.join("router.log"),
                );
                let worker = Proc::spawn(
                    sluice_bin(),
                    vec![
                        "worker".into(),
                        "--nats".into(),
                        url,
                        "--function".into(),
                        function.into(),
                        "--manifests".into(),
                        s(dir),
                        "--listen".into(),
                        worker_addr.clone(),
                        "--cache-dir".into(),
                        s(&data.join("cache")),
                    ],
                    data.join("worker.log"),
                );
                System {
                    backend,
                    addr,
                    front,
                    router: Some(router),
                    router_addr: Some(router_addr),
                    worker: Some(worker),
                    worker_addr: Some(worker_addr),
                    nats: Some(nats),
                }
            }
        };
        let mut sys = sys;
        sys.refresh_addrs();
        sys.wait_ready();
        sys
    }

    /// Reads the addresses the processes announced (they change with every restart).
    fn refresh_addrs(&mut self) {
        self.addr = self.front.wait_addr();
        if let Some(r) = &mut self.router {
            self.router_addr = Some(r.wait_addr());
        }
        if let Some(w) = &mut self.worker {
            self.worker_addr = Some(w.wait_addr());
        }
    }

    /// Waits until every process answers `/readyz` with 200.
    pub fn wait_ready(&self) {
        let addrs: Vec<&String> = [Some(&self.addr), self.router_addr.as_ref()]
            .into_iter()
            .chain([self.worker_addr.as_ref()])
            .flatten()
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        for a in addrs {
            loop {
                if let Ok((200, _, _)) = http(a, "GET", "/readyz", &[], b"") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{a} did not become ready\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
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
        match &mut self.worker {
            Some(w) => {
                w.kill9();
                w.restart();
            }
            None => {
                self.front.kill9();
                self.front.restart();
            }
        }
        self.refresh_addrs();
        self.wait_ready();
    }

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
        crate::events_at(&self.addr, bus)
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
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("manifests");
        std::fs::create_dir_all(&dir).expect("manifest dir");
        crate::tester_manifests(&dir, triggers);
        let sys = System::start(backend, &dir, &tmp.path().join("data"), "e2e/tester");
        Tester { _tmp: tmp, sys }
    }
}
