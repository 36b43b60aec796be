//! Brokers that demand a login over TLS, for the bridges' credentials: a certificate
//! authority made with Debian's `openssl`, a Mosquitto with a password file and a TLS
//! listener, and a nats-server requiring TLS, a client certificate and a password.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{free_port, nats::nats_server_bin, process::Proc};

/// A CA, a server certificate for 127.0.0.1 and the test node's bridge address 10.244.0.1,
/// and a client certificate, as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn create(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl runs (scripts/setup.sh installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=sluice test CA",
            ],
        ]
        .concat());
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,IP:10.244.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
            ),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let crt = format!("{name}.crt");
            let extfile = format!("{name}.ext");
            let subj = format!("/CN=sluice test {name}");
            run(&[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ]
            .concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &extfile,
            ]);
        }
        Pki {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).expect("read pki file")
    }
}

fn wait_listening(host: &str, port: u16, proc: &Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen:\n{}", proc.log_text());
}

/// Mosquitto with TLS only, and one user.
pub struct TlsMosquitto {
    pub host: String,
    pub port: u16,
    pub proc: Proc,
}

impl TlsMosquitto {
    /// On 127.0.0.1.
    pub fn start(pki: &Pki, user: &str, password: &str) -> TlsMosquitto {
        Self::start_at(pki, "127.0.0.1", user, password)
    }

    /// On `host`, one of this machine's addresses (the test node's bridge, for pods).
    pub fn start_at(pki: &Pki, host: &str, user: &str, password: &str) -> TlsMosquitto {
        let port = free_port();
        let passwd = pki.dir.join("mosquitto.passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([user, password])
            .output()
            .expect("mosquitto_passwd runs");
        assert!(out.status.success(), "mosquitto_passwd: {out:?}");
        let conf = pki.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings true\nlistener {port} {host}\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 allow_anonymous false\npassword_file {}\npersistence false\n\
                 # Stay root when started as root: the files are in a private temporary dir.\nuser root\n",
                pki.path("ca.crt"),
                pki.path("server.crt"),
                pki.path("server.key"),
                passwd.display()
            ),
        )
        .expect("write mosquitto.conf");
        let proc = Proc::spawn(
            Path::new("/usr/sbin/mosquitto"),
            vec!["-c".into(), conf.display().to_string(), "-v".into()],
            pki.dir.join("mosquitto.log"),
        );
        wait_listening(host, port, &proc, "mosquitto");
        TlsMosquitto {
            host: host.into(),
            port,
            proc,
        }
    }

    /// Publishes one QoS 1 message with `mosquitto_pub`, as a device would; true once the
    /// broker acknowledged it.
    pub fn publish(&self, pki: &Pki, user: &str, password: &str, topic: &str, body: &str) -> bool {
        Command::new("mosquitto_pub")
            .args(["-h", &self.host, "-p", &self.port.to_string(), "--cafile"])
            .arg(pki.path("ca.crt"))
            .args([
                "-u", user, "-P", password, "-q", "1", "-t", topic, "-m", body,
            ])
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// A nats-server on 127.0.0.1 that requires TLS with a client certificate, and a login: a
/// password, or the NKey of one of `nkey_users` (public keys, `U…`).
pub struct TlsNats {
    pub port: u16,
    pub proc: Proc,
}

impl TlsNats {
    pub fn start(pki: &Pki, user: &str, password: &str, nkey_users: &[String]) -> TlsNats {
        let port = free_port();
        let conf = pki.dir.join("nats.conf");
        let nkeys: String = nkey_users
            .iter()
            .map(|k| format!(", {{ nkey: \"{k}\" }}"))
            .collect();
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n\
                 authorization {{\n  users: [ {{ user: \"{user}\", password: \"{password}\" }}{nkeys} ]\n}}\n",
                pki.path("server.crt"),
                pki.path("server.key"),
                pki.path("ca.crt"),
            ),
        )
        .expect("write nats.conf");
        let proc = Proc::spawn(
            &nats_server_bin(),
            vec!["-c".into(), conf.display().to_string()],
            pki.dir.join("nats.log"),
        );
        wait_listening("127.0.0.1", port, &proc, "nats-server");
        TlsNats { port, proc }
    }
}
