//! An API-server-only Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager v1.20.2 on loopback, built once and cached under /var/cache/sluice
//! and started by `scripts/control-plane.sh` (which wraps `scripts/cluster/`). There is no
//! kubelet: pods are created, never run. The operator's component test and the chart's system
//! test each start one of their own; it stops when dropped.

use std::{
    ops::Deref,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{kubectl::Kubectl, output_text, workspace};

/// A local control plane; stopped when dropped.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    kube: Kubectl,
}

fn script() -> std::path::PathBuf {
    workspace().join("scripts/control-plane.sh")
}

impl ControlPlane {
    /// `control-plane.sh build`: builds the binaries unless cached (minutes the first time)
    /// and installs kubectl and etcd if missing.
    pub fn build() {
        let build = Command::new(script())
            .arg("build")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", script().display()));
        assert!(
            build.status.success(),
            "control-plane.sh build:\n{}",
            output_text(&build)
        );
    }

    /// `control-plane.sh start DIR` on a temporary directory; the binaries must be built
    /// ([`ControlPlane::build`], or `make control-plane`).
    pub fn start() -> ControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("sluice-k8s-")
            .tempdir()
            .expect("temp dir");
        let start = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("control-plane.sh runs");
        let cp = ControlPlane {
            kube: Kubectl {
                kubeconfig: dir.path().join("kubeconfig"),
            },
            dir,
        };
        assert!(
            start.status.success() && cp.kubeconfig.exists(),
            "the control plane did not start ({}); run `make control-plane` first:\n{}",
            start.status,
            output_text(&start)
        );
        cp
    }

    /// Its directory: kubeconfig, keys, pids and the logs (`kcm.log`, …).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's address, from the admin kubeconfig.
    pub fn server(&self) -> String {
        let config = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let at = config.find("server: \"").expect("server in kubeconfig") + 9;
        config[at..]
            .split('"')
            .next()
            .expect("server address")
            .to_owned()
    }
}

impl Deref for ControlPlane {
    type Target = Kubectl;

    fn deref(&self) -> &Kubectl {
        &self.kube
    }
}

impl Drop for ControlPlane {
    /// Stops kube-controller-manager, kube-apiserver, then etcd (the reverse of their start:
    /// an API server whose etcd went first can hang in its graceful shutdown), each with
    /// SIGKILL after 5 s.
    fn drop(&mut self) {
        let pids = std::fs::read_to_string(self.dir.path().join("pids")).unwrap_or_default();
        for pid in pids.split_whitespace().rev() {
            let alive = || {
                Command::new("kill")
                    .args(["-0", pid])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let _ = Command::new("kill").arg(pid).stderr(Stdio::null()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }
}
