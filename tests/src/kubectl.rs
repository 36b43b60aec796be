//! The clients tests drive a Kubernetes API server with, as users do: kubectl (Debian's
//! `kubernetes-client`), and Helm with kubernetes-validate from `scripts/helm.sh` (installed
//! under /var/cache/sluice, keyed by version). [`Kubectl`] is bound to one API server's admin
//! kubeconfig; the API-server-only [`crate::control_plane::ControlPlane`] and the one-node
//! [`crate::cluster::Cluster`] both hand one out.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use serde_json::Value;

use crate::{output_text, stdout, workspace};

/// The tools `scripts/helm.sh` installs.
pub struct Tools {
    pub helm: PathBuf,
    pub kubernetes_validate: PathBuf,
}

/// Installs (once per test process, cached under /var/cache/sluice) and locates the tools.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let out = Command::new(workspace().join("scripts/helm.sh"))
            .output()
            .expect("scripts/helm.sh runs");
        assert!(
            out.status.success(),
            "scripts/helm.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = stdout(&out);
        let find = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("scripts/helm.sh printed no {key}= line:\n{text}"))
        };
        Tools {
            helm: find("helm"),
            kubernetes_validate: find("kubernetes-validate"),
        }
    })
}

/// `helm ARGS` from the workspace root, talking to no cluster unless ARGS name one.
pub fn helm(args: &[&str]) -> Output {
    Command::new(&tools().helm)
        .current_dir(workspace())
        .args(args)
        .output()
        .expect("helm runs")
}

/// kubectl and Helm against one API server, as its admin; run from the workspace root.
pub struct Kubectl {
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// `kubectl ARGS`, with `input` on its stdin.
    pub fn run(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(workspace())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (Debian package kubernetes-client)");
        let mut stdin = child.stdin.take().expect("kubectl's stdin");
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).expect("write to kubectl");
        }
        drop(stdin);
        child.wait_with_output().expect("kubectl finishes")
    }

    /// `kubectl ARGS`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.run(args, None)
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, None)
    }

    /// `kubectl ARGS` with `input` on its stdin, which must succeed; its stdout.
    pub fn ok_with_input(&self, args: &[&str], input: Option<&str>) -> String {
        let out = self.run(args, input);
        assert!(
            out.status.success(),
            "kubectl {}:\n{}",
            args.join(" "),
            output_text(&out)
        );
        stdout(&out)
    }

    /// `kubectl apply -f -` of `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) -> String {
        self.ok_with_input(&["apply", "-f", "-"], Some(yaml))
    }

    /// `kubectl ARGS -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl printed JSON")
    }

    /// `helm ARGS` against this API server.
    pub fn helm(&self, args: &[&str]) -> Output {
        let mut a = args.to_vec();
        let kubeconfig = self.kubeconfig.to_str().expect("a UTF-8 kubeconfig path");
        a.extend(["--kubeconfig", kubeconfig]);
        helm(&a)
    }

    /// The first steps of the README's "On a cluster", before `kubectl apply -f
    /// functions/cluster/invoice.yaml`: namespace `shop` and the built invoice module in
    /// ConfigMap `invoice-wasm`.
    pub fn create_invoice_module_configmap(&self) {
        self.ok(&["create", "namespace", "shop"]);
        self.ok(&[
            "-n",
            "shop",
            "create",
            "configmap",
            "invoice-wasm",
            "--from-file=module.wasm=functions/rust/invoice/invoice.wasm",
        ]);
    }
}
