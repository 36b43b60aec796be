//! A real one-node Kubernetes cluster for the system tests: `scripts/cluster/up.sh` starts
//! etcd, the control plane, containerd, kubelet and kube-proxy on this machine, imports the
//! Sluice and NATS images, runs NATS JetStream as a StatefulSet and an OCI registry on the
//! node address; dropping [`Cluster`] runs `scripts/cluster/down.sh`, also when a test fails.

use std::{
    ops::Deref,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{kubectl::Kubectl, workspace};

/// The node's address: the API server, the registry and anything the host serves to pods.
pub const NODE_IP: &str = "10.244.0.1";
/// The OCI registry `up.sh` runs for Wasm modules.
pub const REGISTRY: &str = "10.244.0.1:5000";
/// The in-cluster NATS the chart is pointed at.
pub const NATS_URL: &str = "nats://nats.nats.svc.cluster.local:4222";

pub struct Cluster {
    pub dir: PathBuf,
    kube: Kubectl,
}

fn script(name: &str) -> PathBuf {
    workspace().join("scripts/cluster").join(name)
}

/// Prints a figure the way every benchmark line of the suite does (`FIGURE name value`).
pub fn figure(name: &str, d: Duration) {
    println!("FIGURE {name} {:.2}s", d.as_secs_f64());
}

impl Cluster {
    /// Starts the node in `dir` (a leftover node from a failed run is stopped first).
    pub fn up(dir: &Path) -> Cluster {
        let _ = Command::new(script("down.sh")).arg(dir).status();
        let started = Instant::now();
        let out = Command::new(script("up.sh"))
            .arg(dir)
            .output()
            .expect("scripts/cluster/up.sh runs");
        let cluster = Cluster {
            dir: dir.to_owned(),
            kube: Kubectl {
                kubeconfig: dir.join("kubeconfig"),
            },
        };
        assert!(
            out.status.success(),
            "scripts/cluster/up.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        figure("node_up", started.elapsed());
        cluster
    }

    /// `kubectl port-forward` as a user runs it; the forward ends when the child is dropped.
    pub fn port_forward(&self, ns: &str, target: &str, port: u16, remote: u16) -> Forward {
        let child = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args([
                "-n",
                ns,
                "port-forward",
                target,
                &format!("{port}:{remote}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl port-forward starts");
        let fwd = Forward { child, port };
        let up = crate::wait_for(30, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        assert!(
            up.is_some(),
            "port-forward {target} {port}:{remote} never listened"
        );
        fwd
    }

    /// Runs `f` until it returns Some, failing with `what` after `secs`.
    pub fn until<T>(&self, secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
        match crate::wait_for(secs, f) {
            Some(v) => v,
            None => panic!(
                "{what}: not within {secs}s\n--- pods ---\n{}\n--- events ---\n{}",
                String::from_utf8_lossy(&self.kubectl(&["get", "pods", "-A", "-o", "wide"]).stdout),
                String::from_utf8_lossy(
                    &self
                        .kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"])
                        .stdout
                )
            ),
        }
    }

    /// The host PID of a running container (by its CRI id), through containerd.
    pub fn container_pid(&self, container_id: &str) -> Option<u32> {
        let id = container_id.trim_start_matches("containerd://");
        let out = Command::new("ctr")
            .args(["-a"])
            .arg(self.dir.join("containerd.sock"))
            .args(["-n", "k8s.io", "tasks", "ls"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next()? == id).then(|| cols.next()?.parse().ok())?
        })
    }

    /// The pods of a Function's workers, whatever their phase (Terminating ones included).
    pub fn function_pods(&self, ns: &str, function: &str) -> Vec<Value> {
        let selector = format!("sluice.dev/function={function}");
        self.json(&["-n", ns, "get", "pods", "-l", &selector])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Replica and pod counts of a Function's worker Deployment: (spec, running pods).
    pub fn workers(&self, ns: &str, function: &str) -> (i64, usize) {
        let d = self.json(&["-n", ns, "get", "deploy", &format!("sluice-fn-{function}")]);
        let running = self
            .function_pods(ns, function)
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (d["spec"]["replicas"].as_i64().unwrap_or(-1), running)
    }

    /// Number of pods of a Function, whatever their phase (Terminating ones included).
    pub fn pod_count(&self, ns: &str, function: &str) -> usize {
        self.function_pods(ns, function).len()
    }

    /// The condition `type_` of a resource, as (status, reason, message).
    pub fn condition(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String, String)> {
        let v = self.json(&["-n", ns, "get", kind, name]);
        v["status"]["conditions"].as_array()?.iter().find_map(|c| {
            (c["type"] == type_).then(|| {
                (
                    c["status"].as_str().unwrap_or_default().to_owned(),
                    c["reason"].as_str().unwrap_or_default().to_owned(),
                    c["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
    }

    /// Waits until the condition's status is `status`; returns its reason and message.
    pub fn wait_condition(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        type_: &str,
        status: &str,
        secs: u64,
    ) -> (String, String) {
        self.until(
            secs,
            &format!("{kind} {ns}/{name} {type_}={status}"),
            || {
                self.condition(ns, kind, name, type_)
                    .filter(|(s, _, _)| s == status)
                    .map(|(_, r, m)| (r, m))
            },
        )
    }
}

impl Deref for Cluster {
    type Target = Kubectl;

    fn deref(&self) -> &Kubectl {
        &self.kube
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = Command::new(script("down.sh")).arg(&self.dir).output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!("down.sh: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

/// A running `kubectl port-forward`.
pub struct Forward {
    child: Child,
    pub port: u16,
}

impl Forward {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP file server on the node address (what a module `url` points at).
pub struct FileServer {
    child: Child,
    pub port: u16,
}

impl FileServer {
    pub fn start(dir: &Path) -> FileServer {
        let port = crate::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                NODE_IP,
                &port.to_string(),
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server starts");
        let up = crate::wait_for(10, || {
            std::net::TcpStream::connect((NODE_IP, port))
                .ok()
                .map(|_| ())
        });
        assert!(up.is_some(), "the module file server never listened");
        FileServer { child, port }
    }

    pub fn url(&self, file: &str) -> String {
        format!("http://{NODE_IP}:{}/{file}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
