//! NATS JetStream, the distributed bus: Debian's nats-server (2.9.10), either the machine's own
//! on 127.0.0.1:4222 (`scripts/setup.sh` starts it; tests that share it keep their streams and
//! buckets apart by name) or a private one [`NatsServer::start`] runs on a free port with a
//! store of its own, for tests that crash and restart it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{free_port, process::Proc};

/// The machine's nats-server with JetStream, which `scripts/setup.sh` starts.
pub const MACHINE_URL: &str = "nats://127.0.0.1:4222";

/// The Debian package's server binary.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

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
            proc: Proc::spawn(Path::new(NATS_SERVER), args, store.with_extension("log")),
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
