//! The Helm chart (`charts/sluice`) as CI and users meet it: `helm lint --strict`, every
//! rendering validated by `kubernetes-validate --strict` against Kubernetes 1.20 and 1.28, the
//! values schema refusing wrong values, the contract with the binaries (arguments, mounts,
//! RBAC), and `helm install` into a real API server with the operator reconciling the cluster
//! example. Helm and kubernetes-validate come from `scripts/helm.sh`; a missing tool fails.

use std::{
    collections::BTreeSet,
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sluice_tests::{
    control_plane::ControlPlane,
    kubectl::{helm, tools},
    nats::MACHINE_URL,
    output_text as text,
    process::Proc,
    stdout, workspace, workspace_bin,
};

const CHART: &str = "charts/sluice";
const NATS_URL: &str = "nats://nats.nats.svc.cluster.local:4222";
const IMAGE: &str = "ghcr.io/sluice-dev/sluice:0.1.0";
/// (`helm template --kube-version`, `kubernetes-validate -k`): the oldest API server the chart
/// supports (and the tests install into), and the newest kubernetes-validate 1.28.3 knows.
const KUBE_VERSIONS: [(&str, &str); 2] = [("1.20.2", "1.20.0"), ("1.28.0", "1.28.0")];

/// The values each rendering is checked with: the defaults (plus the one required value) and
/// every file in charts/sluice/ci/.
fn cases() -> Vec<(String, Vec<String>)> {
    let mut cases = vec![(
        "default".to_owned(),
        vec!["--set".to_owned(), format!("nats.url={NATS_URL}")],
    )];
    let ci = workspace().join(CHART).join("ci");
    let mut files: Vec<_> = std::fs::read_dir(&ci)
        .expect("charts/sluice/ci")
        .map(|e| e.expect("ci entry").path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        cases.push((name, vec!["-f".to_owned(), f.display().to_string()]));
    }
    cases
}

/// `helm template` with the release name `sluice` in namespace `sluice`.
fn render(values: &[String], kube_version: &str) -> String {
    let mut args = vec![
        "template",
        "sluice",
        CHART,
        "--namespace",
        "sluice",
        "--include-crds",
        "--kube-version",
        kube_version,
    ];
    args.extend(values.iter().map(String::as_str));
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        text(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

/// The documents of a multi-document YAML text as JSON, through the PyYAML pinned beside
/// kubernetes-validate (the same parser its verdicts come from).
fn documents(yaml: &str) -> Vec<Value> {
    let python = tools()
        .kubernetes_validate
        .parent()
        .expect("venv bin/")
        .join("python");
    let mut child = Command::new(python)
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write YAML");
    let out = child.wait_with_output().expect("python finishes");
    assert!(out.status.success(), "not YAML:\n{yaml}");
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

fn rendered(values: &[String], kube_version: &str) -> Vec<Value> {
    documents(&render(values, kube_version))
}

fn default_values() -> Vec<String> {
    vec!["--set".into(), format!("nats.url={NATS_URL}")]
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `args` of the first container of a Deployment.
fn args<'a>(docs: &'a [Value], deployment: &str) -> Vec<&'a str> {
    strings(
        &find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]["args"],
    )
}

/// The route table the operator published in JetStream (bucket `bucket`), if any.
fn route_table(nats: &str, bucket: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats).await.ok()?);
        let kv = js.get_key_value(bucket).await.ok()?;
        let v = kv.get(sluice_api::jetstream::ROUTES_KEY).await.ok()??;
        Some(String::from_utf8_lossy(&v).into_owned())
    })
}

fn has_pair(args: &[&str], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let crds = workspace().join("crds");
    let chart = workspace().join(CHART).join("crds");
    assert_eq!(
        names(&crds),
        names(&chart),
        "charts/sluice/crds/ must hold exactly the files of crds/ (cp crds/*.yaml charts/sluice/crds/)"
    );
    for name in names(&crds) {
        assert!(
            std::fs::read(crds.join(&name)).unwrap() == std::fs::read(chart.join(&name)).unwrap(),
            "charts/sluice/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/sluice/crds/"
        );
    }
}

#[test]
fn lint_strict_passes_for_every_values_file() {
    let cases = cases();
    assert!(
        cases.len() >= 4,
        "the defaults and at least three ci/ files"
    );
    for (name, values) in cases {
        let mut a = vec!["lint", "--strict", CHART];
        a.extend(values.iter().map(String::as_str));
        let out = helm(&a);
        assert!(
            out.status.success(),
            "helm lint --strict ({name}):\n{}",
            text(&out)
        );
    }
}

/// Every object of every rendering passes kubernetes-validate --strict (unknown fields are
/// errors). It has no schema for the Prometheus Operator's ServiceMonitor, so those are checked
/// for their shape here and must be the only kind it cannot check.
#[test]
fn renderings_validate_strictly_against_kubernetes_1_20_and_1_28() {
    let dir = tempfile::tempdir().unwrap();
    for (kube, validate_as) in KUBE_VERSIONS {
        let mut files = Vec::new();
        let mut checked = 0;
        let mut service_monitors = 0;
        for (name, values) in cases() {
            let yaml = render(&values, kube);
            for d in documents(&yaml) {
                if d["kind"] == "ServiceMonitor" {
                    service_monitors += 1;
                    assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1");
                    let endpoint = &d["spec"]["endpoints"][0];
                    assert_eq!(endpoint["port"], "http", "{d}");
                    assert_eq!(endpoint["path"], "/metrics", "{d}");
                    assert!(d["spec"]["selector"]["matchLabels"].is_object(), "{d}");
                } else {
                    checked += 1;
                }
            }
            let file = dir.path().join(format!("{kube}-{name}"));
            std::fs::write(&file, yaml).unwrap();
            files.push(file);
        }
        let out = Command::new(&tools().kubernetes_validate)
            .args(["--strict", "-k", validate_as])
            .args(&files)
            .output()
            .expect("kubernetes-validate runs");
        let report = text(&out);
        assert!(
            out.status.success(),
            "kubernetes-validate {validate_as}:\n{report}"
        );
        for line in report.lines() {
            assert!(
                line.starts_with("INFO ") || line.contains("kind ServiceMonitor"),
                "kubernetes-validate {validate_as}: {line}"
            );
        }
        let passed = report.matches(" passed for resource ").count();
        assert_eq!(
            passed, checked,
            "objects validated, {validate_as}:\n{report}"
        );
        assert!(
            service_monitors >= 1,
            "ci/metrics.yaml renders a ServiceMonitor"
        );
    }
}

#[test]
fn schema_rejects_wrong_values_naming_the_field() {
    let cases = [
        (
            "nats: { url: nats://n:4222 }\noperator: { replicas: -1 }\n",
            "at '/operator/replicas': minimum: got -1, want 0",
        ),
        (
            "nats: { url: nats://n:4222 }\nrouter: { replicas: -2 }\n",
            "at '/router/replicas': minimum: got -2, want 0",
        ),
        ("logLevel: debug\n", "at '/nats': missing property 'url'"),
        (
            "nats: { url: nats://n:4222 }\nimage: { tag: 1.2 }\n",
            "at '/image/tag': got number, want string",
        ),
        (
            "nats: { url: \"localhost:4222\" }\n",
            "at '/nats/url': 'localhost:4222' does not match pattern",
        ),
        (
            "nats: { url: nats://n:4222 }\nimage: { pullPolicy: Sometimes }\n",
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "nats: { url: nats://n:4222 }\nrouter: { replica: 3 }\n",
            "at '/router': additional properties 'replica' not allowed",
        ),
        (
            "nats: { url: nats://n:4222, retention: { buses: { orders: { maxAge: 7days, maxBytes: 1Gi } } } }\n",
            "at '/nats/retention/buses/orders/maxAge': '7days' does not match pattern",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (values, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("{i}.yaml"));
        std::fs::write(&file, values).unwrap();
        let out = helm(&["template", "sluice", CHART, "-f", file.to_str().unwrap()]);
        let report = text(&out);
        assert!(!out.status.success(), "accepted:\n{values}");
        assert!(
            report.contains("values don't meet the specifications of the schema")
                && report.contains(want),
            "values\n{values}\nwant `{want}` in:\n{report}"
        );
    }
}

/// Every pod of every rendering: non-root, read-only root, no capabilities, RuntimeDefault
/// seccomp, resources set, the chart's image.
#[test]
fn every_pod_is_locked_down() {
    for (name, values) in cases() {
        let docs = rendered(&values, "1.28.0");
        let deployments: Vec<_> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
        assert_eq!(deployments.len(), 3, "{name}: operator, router, ingress");
        for d in deployments {
            let who = format!("{name}: Deployment {}", d["metadata"]["name"]);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{who}");
            assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{who}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{who}"
            );
            for c in pod["containers"].as_array().expect("containers") {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
                assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{who}");
                assert!(
                    c["resources"]["requests"]["memory"].is_string(),
                    "{who}: requests"
                );
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{who}: limits"
                );
                assert!(
                    c["image"].as_str().is_some_and(|i| i.contains("sluice")),
                    "{who}"
                );
            }
        }
    }
}

#[test]
fn components_run_the_contracted_commands() {
    let docs = rendered(&default_values(), "1.28.0");
    let operator = args(&docs, "sluice-operator");
    // One binary in the image: the operator is `sluice operator`.
    assert_eq!(operator[0], "operator", "{operator:?}");
    assert_eq!(
        find(&docs, "Deployment", "sluice-operator")["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["/usr/local/bin/sluice"])
    );
    for (flag, value) in [
        ("--nats", "$(SLUICE_NATS_URL)"),
        ("--namespace", "$(POD_NAMESPACE)"),
        ("--image", IMAGE),
        ("--image-pull-policy", "IfNotPresent"),
        ("--routes-bucket", "sluice_routes"),
    ] {
        assert!(
            has_pair(&operator, flag, value),
            "operator args {operator:?}"
        );
    }
    assert!(!operator.contains(&"--nats-creds-secret"), "{operator:?}");
    let router = args(&docs, "sluice-router");
    assert_eq!(
        router,
        [
            "router",
            "--nats",
            "$(SLUICE_NATS_URL)",
            "--routes-bucket",
            "sluice_routes",
            "--listen",
            "0.0.0.0:8080",
            "--secrets",
            "kubernetes",
            "--retention",
            "24h:1Gi"
        ]
    );
    let ingress = args(&docs, "sluice-ingress");
    assert_eq!(
        ingress,
        [
            "ingress",
            "--nats",
            "$(SLUICE_NATS_URL)",
            "--routes-bucket",
            "sluice_routes",
            "--listen",
            "0.0.0.0:8080",
            "--token-file",
            "/etc/sluice/token/token",
            "--retention",
            "24h:1Gi"
        ]
    );
    // Authentication is on by default, with a token the chart generates.
    let secret = find(&docs, "Secret", "sluice-token");
    let token = secret["data"]["token"].as_str().expect("a token");
    assert_eq!(token.len(), 56, "40 characters, base64: {token}");
    let pod = &find(&docs, "Deployment", "sluice-ingress")["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "token" && v["secret"]["secretName"] == "sluice-token"),
        "{pod}"
    );
    // NetworkPolicies: the ingress's port from anywhere, the routers' and the operator's
    // (health and metrics) from pods of the cluster only.
    for (name, from) in [
        ("sluice-ingress", Value::Null),
        (
            "sluice-router",
            serde_json::json!([{"namespaceSelector": {}}]),
        ),
        (
            "sluice-operator",
            serde_json::json!([{"namespaceSelector": {}}]),
        ),
    ] {
        let p = find(&docs, "NetworkPolicy", name);
        assert_eq!(
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            name.trim_start_matches("sluice-"),
            "{p}"
        );
        assert_eq!(p["spec"]["ingress"][0]["ports"][0]["port"], 8080, "{p}");
        assert_eq!(p["spec"]["ingress"][0]["from"], from, "{p}");
    }
    // Workers' policies are the operator's to make, per Function: it is told the peers.
    let operator = args(&docs, "sluice-operator");
    let at = operator
        .iter()
        .position(|a| *a == "--worker-network-policy")
        .unwrap_or_else(|| panic!("{operator:?}"));
    let peers: Value = serde_json::from_str(operator[at + 1]).unwrap();
    assert_eq!(
        peers,
        serde_json::json!({"http": [], "metrics": [{"namespaceSelector": {}}]})
    );
    let mut open = default_values();
    open.extend(["--set".into(), "ingress.auth.enabled=false".into()]);
    open.extend(["--set".into(), "networkPolicy.enabled=false".into()]);
    let open = rendered(&open, "1.28.0");
    assert!(
        !open.iter().any(|d| d["kind"] == "Secret"),
        "no token Secret"
    );
    assert!(!open.iter().any(|d| d["kind"] == "NetworkPolicy"));
    assert!(!args(&open, "sluice-operator").contains(&"--worker-network-policy"));
    assert!(
        !args(&open, "sluice-ingress")
            .iter()
            .any(|a| a.starts_with("--token"))
    );
    // Retention per bus: both processes that set the streams' limits get every entry.
    let mut values = default_values();
    values.extend([
        "--set".into(),
        "nats.retention.buses.orders.maxAge=7d".into(),
        "--set".into(),
        "nats.retention.buses.orders.maxBytes=10Gi".into(),
    ]);
    let kept = rendered(&values, "1.28.0");
    for name in ["sluice-ingress", "sluice-router"] {
        let a = args(&kept, name);
        assert!(
            has_pair(&a, "--retention", "24h:1Gi") && has_pair(&a, "--retention", "orders=7d:10Gi"),
            "{name} args {a:?}"
        );
    }
    // Routers follow the table in JetStream (no ConfigMap volume), and use the API only to
    // read the Secrets bridges name: `get` on Secrets, nothing else, in every namespace or
    // in those listed.
    let router_pod = &find(&docs, "Deployment", "sluice-router")["spec"]["template"]["spec"];
    assert!(
        !router_pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["configMap"].is_object()),
        "{router_pod}"
    );
    assert_eq!(router_pod["automountServiceAccountToken"], true);
    assert!(has_pair(
        &args(&docs, "sluice-router"),
        "--secrets",
        "kubernetes"
    ));
    let role = find(&docs, "ClusterRole", "sluice-router-bridge-secrets");
    assert_eq!(
        permissions(&role["rules"]),
        BTreeSet::from([("".into(), "secrets".into(), "*".into(), "get".into())])
    );
    let binding = find(&docs, "ClusterRoleBinding", "sluice-router-bridge-secrets");
    assert_eq!(binding["subjects"][0]["name"], "sluice-router");
    let narrowed = rendered(
        &[
            default_values(),
            vec![
                "--set".into(),
                "router.bridgeSecrets.namespaces={shop,iot}".into(),
            ],
        ]
        .concat(),
        "1.28.0",
    );
    assert!(
        !narrowed.iter().any(|d| d["kind"] == "ClusterRole"
            && d["metadata"]["name"] == "sluice-router-bridge-secrets")
    );
    let roles: BTreeSet<String> = narrowed
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "sluice-router-bridge-secrets")
        .map(|d| d["metadata"]["namespace"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, BTreeSet::from(["shop".into(), "iot".into()]));
    let off = rendered(
        &[
            default_values(),
            vec!["--set".into(), "router.bridgeSecrets.enabled=false".into()],
        ]
        .concat(),
        "1.28.0",
    );
    let pod = &find(&off, "Deployment", "sluice-router")["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(has_pair(&args(&off, "sluice-router"), "--secrets", "none"));
    assert!(
        !off.iter()
            .any(|d| d["metadata"]["name"] == "sluice-router-bridge-secrets")
    );
    for name in ["sluice-operator", "sluice-router", "sluice-ingress"] {
        let c = &find(&docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0];
        let env = c["env"].as_array().unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "SLUICE_NATS_URL" && e["value"] == NATS_URL),
            "{name}: SLUICE_NATS_URL"
        );
        assert_eq!(c["ports"][0]["containerPort"], 8080, "{name}");
    }
    // The ingress never talks to the API server.
    let pod = &find(&docs, "Deployment", "sluice-ingress")["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    let svc = find(&docs, "Service", "sluice-ingress");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");

    // External NATS with credentials and an ingress token.
    let values = vec![
        "-f".to_owned(),
        format!("{CHART}/ci/external-nats-credentials.yaml"),
    ];
    let docs = rendered(&values, "1.28.0");
    let operator = args(&docs, "sluice-operator");
    assert!(
        has_pair(&operator, "--nats-creds-secret", "sluice-nats"),
        "{operator:?}"
    );
    for name in ["sluice-operator", "sluice-router", "sluice-ingress"] {
        let a = args(&docs, name);
        assert!(
            has_pair(&a, "--nats-creds", "/etc/sluice/nats/creds"),
            "{name}: {a:?}"
        );
    }
    for name in ["sluice-operator", "sluice-router", "sluice-ingress"] {
        let pod = &find(&docs, "Deployment", name)["spec"]["template"]["spec"];
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "nats-creds")
            .unwrap_or_else(|| panic!("{name}: nats-creds volume"));
        assert_eq!(vol["secret"]["secretName"], "sluice-nats");
        assert_eq!(vol["secret"]["items"][0]["key"], "sluice.creds");
        assert_eq!(vol["secret"]["items"][0]["path"], "creds");
        let mount = &pod["containers"][0]["volumeMounts"];
        assert!(
            mount
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "nats-creds" && m["mountPath"] == "/etc/sluice/nats"),
            "{name}: {mount}"
        );
    }
    // The token guards the ingress; a router's port serves health and metrics only, so it
    // has no token to hold.
    let a = args(&docs, "sluice-ingress");
    assert!(
        has_pair(&a, "--token-file", "/etc/sluice/token/token"),
        "{a:?}"
    );
    for (name, holds) in [("sluice-ingress", true), ("sluice-router", false)] {
        let pod = &find(&docs, "Deployment", name)["spec"]["template"]["spec"];
        let has = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "token" && v["secret"].is_object());
        assert_eq!(has, holds, "{name}: {pod}");
    }
    assert!(
        !args(&docs, "sluice-router")
            .iter()
            .any(|a| a.starts_with("--token"))
    );
    // Workers mount their credentials by Secret name: nothing but the routers' bridges reads
    // Secrets through the API.
    for d in docs.iter().filter(|d| {
        (d["kind"] == "Role" || d["kind"] == "ClusterRole")
            && d["metadata"]["name"] != "sluice-router-bridge-secrets"
    }) {
        assert!(
            !permissions(&d["rules"]).iter().any(|p| p.1 == "secrets"),
            "{d}"
        );
    }
}

#[test]
fn optional_objects_follow_their_settings() {
    let default = rendered(&default_values(), "1.28.0");
    assert!(!default.iter().any(|d| d["kind"] == "ServiceMonitor"));
    // One PDB per component with more than one replica: router and ingress by default.
    let pdbs: BTreeSet<_> = default
        .iter()
        .filter(|d| d["kind"] == "PodDisruptionBudget")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        pdbs,
        BTreeSet::from(["sluice-router".into(), "sluice-ingress".into()])
    );
    for (kube, api) in [
        ("1.20.2", "policy/v1beta1"),
        ("1.21.0", "policy/v1"),
        ("1.28.0", "policy/v1"),
    ] {
        let docs = rendered(&default_values(), kube);
        assert_eq!(
            find(&docs, "PodDisruptionBudget", "sluice-router")["apiVersion"],
            api,
            "{kube}"
        );
    }
    let metrics = rendered(&["-f".into(), format!("{CHART}/ci/metrics.yaml")], "1.28.0");
    let sm = find(&metrics, "ServiceMonitor", "sluice");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    // It selects exactly the three Services.
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let selected = metrics
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter(|d| {
            selector
                .iter()
                .all(|(k, v)| &d["metadata"]["labels"][k] == v)
        })
        .count();
    assert_eq!(selected, 3);
    assert!(
        metrics
            .iter()
            .any(|d| d["kind"] == "PodDisruptionBudget"
                && d["metadata"]["name"] == "sluice-operator")
    );
}

/// The chart grants the operator exactly what its own manifest, operator/rbac.yaml, says its
/// code calls. Rules are compared as sets of (apiGroup, resource, resourceName, verb), so
/// grouping and order do not matter. When operator/rbac.yaml also has a Role, ClusterRole and
/// Role are compared each to each; when it is one ClusterRole, the chart may still narrow some
/// of it (the leader Lease) to a Role in its namespace, so the union is compared.
#[test]
fn operator_rbac_matches_operator_rbac_yaml() {
    let path = workspace().join("operator/rbac.yaml");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the operator's RBAC manifest is the source of the chart's rules",
            path.display()
        )
    });
    let theirs = documents(&source);
    // The uninstall hook's rights are its own (a Job run by `helm uninstall`), checked below.
    let is_hook = |d: &Value| !d["metadata"]["annotations"]["helm.sh/hook"].is_null();
    // The routers' `get` on Secrets (router-rbac.yaml) is theirs, checked in
    // components_run_the_contracted_commands.
    let (hooks, ours): (Vec<Value>, Vec<Value>) = rendered(&default_values(), "1.28.0")
        .into_iter()
        .filter(|d| d["metadata"]["name"] != "sluice-router-bridge-secrets")
        .partition(is_hook);
    let grants = |docs: &[Value], kinds: &[&str]| {
        let mut out = BTreeSet::new();
        for d in docs
            .iter()
            .filter(|d| kinds.iter().any(|k| d["kind"] == *k))
        {
            out.extend(permissions(&d["rules"]));
        }
        out
    };
    assert!(
        theirs.iter().any(|d| d["kind"] == "ClusterRole"),
        "operator/rbac.yaml holds no ClusterRole"
    );
    let kinds: &[&[&str]] = if theirs.iter().any(|d| d["kind"] == "Role") {
        &[&["ClusterRole"], &["Role"]]
    } else {
        &[&["ClusterRole", "Role"]]
    };
    for k in kinds {
        let (o, t) = (grants(&ours, k), grants(&theirs, k));
        assert!(
            o == t,
            "{k:?}: the chart grants more: {:?}\nthe chart lacks: {:?}",
            o.difference(&t).collect::<Vec<_>>(),
            t.difference(&o).collect::<Vec<_>>()
        );
    }
    // The uninstall hook deletes Functions and Triggers and clears a Trigger's finalizer,
    // which the operator never does, and waits for the worker pods to go: its rights are
    // exactly those, on nothing else.
    let hook = grants(&hooks, &["ClusterRole", "Role"]);
    let mut want = BTreeSet::new();
    for (resource, verbs) in [
        ("functions", &["list", "delete"][..]),
        ("triggers", &["list", "delete", "patch"]),
    ] {
        for v in verbs {
            want.insert((
                "sluice.dev".into(),
                resource.into(),
                "*".into(),
                v.to_string(),
            ));
        }
    }
    want.insert(("".into(), "pods".into(), "*".into(), "list".into()));
    assert_eq!(hook, want, "the uninstall hook's rights");
}

fn permissions(rules: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() { vec!["*"] } else { names };
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for n in &names {
                    for v in strings(&rule["verbs"]) {
                        out.insert((g.into(), r.into(), n.to_string(), v.into()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn permissions_ignore_how_rules_are_grouped() {
    let grouped = serde_json::json!([
        { "apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["get", "patch"] }
    ]);
    let split = serde_json::json!([
        { "apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch", "get"] },
        { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"] },
        { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"] }
    ]);
    assert_eq!(permissions(&grouped), permissions(&split));
    assert_eq!(permissions(&grouped).len(), 4);
    let named = serde_json::json!([
        { "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"] }
    ]);
    let any =
        serde_json::json!([{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }]);
    assert_ne!(permissions(&named), permissions(&any));
}

/// Polls `f` every 200 ms until it returns Some, or panics with `what` after `timeout`.
fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `helm install` into a real API server (v1.20.2); the operator, run locally with its
/// ServiceAccount's own token (so the chart's RBAC is what it gets), reconciles the cluster
/// example applied with kubectl into a worker Deployment and the routers' ConfigMap;
/// `helm uninstall` then removes every object the chart created.
#[test]
fn helm_install_reconcile_and_uninstall_on_a_real_api_server() {
    let wasm = workspace().join("functions/rust/invoice/invoice.wasm");
    assert!(
        wasm.exists(),
        "{} is not built: run `make functions` (or `make -C functions rust`)",
        wasm.display()
    );
    let sluice = workspace_bin("sluice");
    ControlPlane::build();
    let cp = ControlPlane::start();

    // Install, as the README says.
    let nats = MACHINE_URL;
    let started = Instant::now();
    let out = cp.helm(&[
        "install",
        "sluice",
        CHART,
        "--namespace",
        "sluice",
        "--create-namespace",
        "--set",
        &format!("nats.url={nats}"),
        // No kubelet here to run the pre-delete hook's Job; the cluster test runs it.
        "--set",
        "uninstall.enabled=false",
    ]);
    let notes = text(&out);
    assert!(out.status.success(), "helm install:\n{notes}");
    eprintln!("helm install: {:?}", started.elapsed());
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(
        notes.contains("kubectl apply -f functions/cluster/invoice.yaml"),
        "NOTES tell what to apply next:\n{notes}"
    );
    cp.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout",
        "60s",
        "crd/functions.sluice.dev",
        "crd/triggers.sluice.dev",
        "crd/eventschemas.sluice.dev",
    ]);
    let manifest = cp.helm(&["get", "manifest", "sluice", "--namespace", "sluice"]);
    assert!(manifest.status.success(), "{}", text(&manifest));
    let created: Vec<(String, String, String)> = documents(&stdout(&manifest))
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_owned();
            let ns = d["metadata"]["namespace"].as_str().unwrap_or("").to_owned();
            (kind, ns, d["metadata"]["name"].as_str().unwrap().to_owned())
        })
        .collect();
    let kinds: BTreeSet<_> = created.iter().map(|c| c.0.as_str()).collect();
    for kind in [
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "the release has no {kind}: {kinds:?}");
    }
    let pdb = cp.ok(&[
        "-n",
        "sluice",
        "get",
        "pdb",
        "sluice-router",
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(
        pdb, "policy/v1beta1",
        "1.20 has no policy/v1 PodDisruptionBudget"
    );

    // The operator runs with the token of the ServiceAccount the chart created.
    let secret = eventually(
        Duration::from_secs(60),
        "a token for sluice-operator",
        || {
            let name = stdout(&cp.kubectl(&[
                "-n",
                "sluice",
                "get",
                "sa",
                "sluice-operator",
                "-o",
                "jsonpath={.secrets[0].name}",
            ]));
            (!name.is_empty()).then_some(name)
        },
    );
    let token = cp.ok(&[
        "-n",
        "sluice",
        "get",
        "secret",
        &secret,
        "-o",
        "go-template={{.data.token | base64decode}}",
    ]);
    let sa_kubeconfig = cp.dir().join("operator.kubeconfig");
    std::fs::write(
        &sa_kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: local, cluster: {{server: \"{}\", insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: sluice-operator, user: {{token: \"{token}\"}}}}]\n\
             contexts: [{{name: local, context: {{cluster: local, user: sluice-operator, namespace: sluice}}}}]\n\
             current-context: local\n",
            cp.server()
        ),
    )
    .unwrap();
    let port = sluice_tests::free_port();
    // Its own route table: other tests share this NATS.
    let routes_bucket = format!("sluice_routes_chart_{}", std::process::id());
    let log = cp.dir().join("operator.log");
    let op = Proc::spawn_with_env(
        &sluice,
        [
            "operator",
            "--nats",
            nats,
            "--namespace",
            "sluice",
            "--image",
            IMAGE,
            "--routes-bucket",
            &routes_bucket,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]
        .map(str::to_owned)
        .to_vec(),
        &[
            ("KUBECONFIG", sa_kubeconfig.as_os_str()),
            ("RUST_LOG", "info".as_ref()),
        ],
        log,
    );
    let addr = format!("127.0.0.1:{port}");
    eventually(Duration::from_secs(60), "the operator's /healthz", || {
        matches!(
            sluice_tests::http(&addr, "GET", "/healthz", &[], b""),
            Ok((200, _, _))
        )
        .then_some(())
    });

    // The cluster example, as the README applies it.
    cp.create_invoice_module_configmap();
    let applied = Instant::now();
    cp.ok(&["apply", "-f", "functions/cluster/invoice.yaml"]);
    let worker = eventually(
        Duration::from_secs(60),
        "the worker Deployment of shop/invoice",
        || {
            let out = cp.kubectl(&["-n", "shop", "get", "deployments", "-o", "json"]);
            let list: Value = serde_json::from_slice(&out.stdout).ok()?;
            list["items"]
                .as_array()?
                .iter()
                .find(|d| {
                    d["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|o| {
                            o.iter()
                                .any(|r| r["kind"] == "Function" && r["name"] == "invoice")
                        })
                })
                .cloned()
        },
    );
    eprintln!(
        "worker Deployment {} after {:?}",
        worker["metadata"]["name"],
        applied.elapsed()
    );
    let containers = &worker["spec"]["template"]["spec"]["containers"];
    assert!(
        containers
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["image"] == IMAGE),
        "worker image: {containers}\noperator log:\n{}",
        op.log_text()
    );
    let routes = eventually(
        Duration::from_secs(60),
        "the route table with shop/paid-orders",
        || {
            let t = route_table(nats, &routes_bucket)?;
            t.contains("paid-orders").then_some(t)
        },
    );
    assert!(routes.contains("invoice"), "{routes}");
    let fn_status = cp.ok(&[
        "-n",
        "shop",
        "get",
        "fn",
        "invoice",
        "-o",
        "jsonpath={.status}",
    ]);
    assert!(
        fn_status.contains("sha256:"),
        "Function status: {fn_status}\n{}",
        op.log_text()
    );
    // Everything it did, it was allowed to do with the chart's RBAC.
    let log = op.log_text();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
    drop(op);

    // Uninstall: every object of the release is gone; the CRDs (and so the Functions) stay.
    let started = Instant::now();
    let out = cp.helm(&[
        "uninstall",
        "sluice",
        "--namespace",
        "sluice",
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(out.status.success(), "helm uninstall:\n{}", text(&out));
    eprintln!("helm uninstall --wait: {:?}", started.elapsed());
    for (kind, ns, name) in &created {
        let mut args = vec![
            "get",
            kind.as_str(),
            name.as_str(),
            "--ignore-not-found",
            "-o",
            "name",
        ];
        if !ns.is_empty() {
            args.extend(["-n", ns.as_str()]);
        }
        let left = cp.ok(&args);
        assert!(
            left.trim().is_empty(),
            "{kind} {ns}/{name} is still there after helm uninstall"
        );
    }
    eventually(
        Duration::from_secs(60),
        "no ReplicaSets or Pods of the release",
        || {
            let left = cp.ok(&[
                "get",
                "replicasets,pods,secrets",
                "-A",
                "-l",
                "app.kubernetes.io/instance=sluice",
                "-o",
                "name",
            ]);
            left.trim().is_empty().then_some(())
        },
    );
    let releases = cp.ok(&[
        "-n",
        "sluice",
        "get",
        "secrets",
        "-l",
        "owner=helm",
        "-o",
        "name",
    ]);
    assert!(
        releases.trim().is_empty(),
        "Helm release records left: {releases}"
    );
    cp.ok(&[
        "get",
        "crd",
        "functions.sluice.dev",
        "triggers.sluice.dev",
        "eventschemas.sluice.dev",
    ]);
    cp.ok(&["-n", "shop", "get", "fn", "invoice"]);
}
