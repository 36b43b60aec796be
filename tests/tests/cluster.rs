//! The README's "On a cluster" walkthrough, run as a user would, on a real one-node
//! Kubernetes v1.20.2 (kubelet, containerd, runc, kube-proxy; `scripts/cluster/`): the chart
//! installed with Helm from the locally built image, NATS JetStream 2.15 as a StatefulSet,
//! Functions whose modules come from a ConfigMap, a URL and an OCI registry, events through
//! the ingress Service, dead letters and redrive, scaling 0 → N → 0, faults mid-load, bad
//! input, and `helm uninstall` leaving nothing behind.
//!
//! Built only with `--features cluster` (`make e2e-cluster`, which `make test` runs after
//! building the images): it needs root, iptables and the images. Prints `FIGURE` lines (the
//! cluster benchmark, `make bench-cluster`); it asserts no timing.

use std::{
    collections::HashSet,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sluice_tests::{
    brokers::{Pki, TlsMosquitto},
    cluster::{Cluster, FileServer, NATS_URL, REGISTRY, figure},
    done_counts, events_at, free_port, http, sluice, tester_wasm, try_events_at, workspace,
};

/// The image `scripts/cluster/up.sh` imported: `SLUICE_IMAGE`, as `make image` and `up.sh`
/// read it, else their default; split into the chart's `image.repository` and `image.tag`.
fn image() -> (String, String) {
    let reference = std::env::var("SLUICE_IMAGE")
        .unwrap_or_else(|_| format!("ghcr.io/sluice-dev/sluice:{}", env!("CARGO_PKG_VERSION")));
    let (repo, tag) = reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .unwrap_or((reference.as_str(), "latest"));
    (repo.to_owned(), tag.to_owned())
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

/// The first `curl -i …/buses/default/events` command of `text` with its continuation lines
/// (a shell command as a user pastes it).
fn curl_command(text: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("curl -i http://127.0.0.1:8080/buses/default/events"));
    let mut cmd = lines.next()?.to_owned();
    while cmd.ends_with('\\') {
        cmd.push('\n');
        cmd.push_str(lines.next()?);
    }
    Some(cmd)
}

/// Publishes a batch of CloudEvents to `bus`; the ids the ingress accepted as new.
fn publish_batch(addr: &str, bus: &str, events: &[Value]) -> Option<Vec<String>> {
    publish_batch_with(addr, bus, events, |e| e["position"].is_u64())
}

/// Publishes a batch; the ids whose answer entry passes `keep`.
fn publish_batch_with(
    addr: &str,
    bus: &str,
    events: &[Value],
    keep: fn(&Value) -> bool,
) -> Option<Vec<String>> {
    let body = serde_json::to_vec(events).ok()?;
    let (status, _, answer) = http(
        addr,
        "POST",
        &format!("/buses/{bus}/events"),
        &[("content-type", "application/cloudevents-batch+json")],
        &body,
    )
    .ok()?;
    if status != 202 {
        return None;
    }
    let v: Value = serde_json::from_slice(&answer).ok()?;
    Some(
        v["events"]
            .as_array()?
            .iter()
            .filter(|e| keep(e))
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect(),
    )
}

fn work(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/e2e", "type": "com.example.work",
           "datacontenttype": "application/json", "data": data})
}

/// The chart's pods run as the chart says, checked on the running processes (not the YAML):
/// uid 65532, no capabilities, no_new_privs, seccomp filtering, a read-only root.
fn assert_locked_down(c: &Cluster, ns: &str, selector: &str) {
    let pods = c.json(&["-n", ns, "get", "pods", "-l", selector]);
    let pods = pods["items"].as_array().expect("pods");
    assert!(!pods.is_empty(), "no pods match {selector} in {ns}");
    for p in pods {
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        for cs in p["status"]["containerStatuses"]
            .as_array()
            .expect("container statuses")
        {
            let id = cs["containerID"].as_str().expect("a running container");
            let pid = c
                .container_pid(id)
                .unwrap_or_else(|| panic!("{ns}/{name}: no task for {id}"));
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            assert!(
                field("Uid:").split_whitespace().all(|u| u == "65532"),
                "{ns}/{name}: runs as uid {}",
                field("Uid:")
            );
            assert_eq!(
                field("CapEff:"),
                "0000000000000000",
                "{ns}/{name}: effective capabilities"
            );
            assert_eq!(
                field("CapPrm:"),
                "0000000000000000",
                "{ns}/{name}: permitted capabilities"
            );
            assert_eq!(field("NoNewPrivs:"), "1", "{ns}/{name}: no_new_privs");
            assert_eq!(field("Seccomp:"), "2", "{ns}/{name}: seccomp filter mode");
            let mounts =
                std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
            let root = mounts
                .lines()
                .find(|l| l.split_whitespace().nth(4) == Some("/"))
                .expect("a root mount");
            let opts = root.split_whitespace().nth(5).unwrap_or_default();
            assert!(
                opts.split(',').any(|o| o == "ro"),
                "{ns}/{name}: root filesystem mounted {opts}"
            );
        }
    }
}

#[test]
fn the_readme_cluster_walkthrough_on_a_real_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::var_os("SLUICE_NODE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("node"));
    let c = Cluster::up(&dir);
    let (image_repo, tag) = image();

    // --- helm install, as the README, with the locally built image --------------------
    let started = Instant::now();
    let install = c.helm(&[
        "install",
        "sluice",
        "charts/sluice",
        "--namespace",
        "sluice",
        "--create-namespace",
        "--set",
        &format!("nats.url={NATS_URL}"),
        "--set",
        &format!("image.repository={image_repo}"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
        "--set",
        &format!("operator.extraArgs={{--oci-plain-http,{REGISTRY},--scale-interval,500ms}}"),
        "--wait",
        "--timeout",
        "180s",
    ]);
    ok(&install, "helm install");
    figure("helm_install_to_ready", started.elapsed());
    let deploys = c.json(&["-n", "sluice", "get", "deploy"]);
    let names: HashSet<&str> = deploys["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"]["availableReplicas"].as_i64() == d["spec"]["replicas"].as_i64())
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["sluice-operator", "sluice-router", "sluice-ingress"]),
        "every component available"
    );
    assert_locked_down(&c, "sluice", "app.kubernetes.io/instance=sluice");
    // The ingress requires the token the chart generated, as docs/cluster.md has users
    // export SLUICE_TOKEN from Secret sluice-token: every request below sends it.
    let token = c.ok(&[
        "-n",
        "sluice",
        "get",
        "secret",
        "sluice-token",
        "-o",
        "go-template={{.data.token | base64decode}}",
    ]);
    assert_eq!(token.trim().len(), 40, "a generated token: {token:?}");
    sluice_tests::use_bearer_token(token.trim());

    // --- the README's example Function, module from a ConfigMap -----------------------
    let invoice = workspace().join("functions/rust/invoice/invoice.wasm");
    assert!(invoice.exists(), "make -C functions rust first");
    c.create_invoice_module_configmap();
    let applied = Instant::now();
    c.ok(&["apply", "-f", "functions/cluster/invoice.yaml"]);
    let (_, msg) = c.wait_condition("shop", "fn", "invoice", "Ready", "True", 60);
    let digest = sha256_hex(&invoice);
    let fnv = c.json(&["-n", "shop", "get", "fn", "invoice"]);
    assert_eq!(fnv["status"]["digest"], format!("sha256:{digest}"), "{msg}");
    let (reason, msg) = c.wait_condition("shop", "trg", "paid-orders", "Ready", "True", 60);
    assert_eq!(reason, "Routed", "{msg}");
    assert!(
        msg.contains("publisher(s)"),
        "Ready names the routers' acknowledgement: {msg}"
    );
    figure("trigger_apply_to_ready", applied.elapsed());
    // minReplicas 0: the Deployment is created at zero; no pod idles for a cooldown.
    assert_eq!(
        c.workers("shop", "invoice"),
        (0, 0),
        "worker created at 0 replicas"
    );
    let wide = c.ok(&["-n", "shop", "get", "fn,trg", "-o", "wide"]);
    assert!(
        wide.contains(&digest[..12]) || wide.contains("sha256:"),
        "{wide}"
    );

    let fwd = c.port_forward("sluice", "svc/sluice-ingress", free_port(), 80);
    let refused = http(
        &fwd.addr(),
        "POST",
        "/buses/default/events",
        &[
            ("authorization", "Bearer not-the-token"),
            ("content-type", "application/cloudevents+json"),
        ],
        br#"{"specversion":"1.0","id":"x","source":"/x","type":"x"}"#,
    )
    .expect("POST");
    assert_eq!(
        refused.0, 401,
        "the ingress takes no event without the token"
    );
    // --- an EventSchema reaches the ingress through the route table --------------------
    c.ok(&["apply", "-f", "functions/examples/order-paid.yaml"]);
    let (reason, msg) = c.wait_condition("shop", "evs", "order-paid", "Ready", "True", 60);
    assert_eq!(reason, "Accepted", "{msg}");
    let mut tries = 0;
    let body = c.until(60, "the ingress refusing an order its EventSchema refuses", || {
        // Until the ingress loads the table an invalid order is stored; it matches no Trigger
        // (total under 100), and each try has its own id.
        tries += 1;
        let event = format!(
            r#"{{"specversion":"1.0","id":"bad-{tries}","source":"/shop","type":"com.example.order.paid","data":{{"orderId":"b","country":"NL","total":-5,"items":[]}}}}"#
        );
        let (status, _, body) = http(
            &fwd.addr(),
            "POST",
            "/buses/default/events",
            &[("content-type", "application/cloudevents+json")],
            event.as_bytes(),
        )
        .ok()?;
        (status == 400).then(|| serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
    });
    assert_eq!(body["schema"], "shop/order-paid", "{body}");
    assert_eq!(body["failures"][0]["path"], "$.data.total", "{body}");
    assert_eq!(body["failures"][0]["rule"], "minimum", "{body}");

    let sent = Instant::now();
    let sent_at = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let out = sluice(&[
        "publish",
        "--url",
        &fwd.url(),
        "--event",
        "@functions/rust/invoice/event.json",
    ]);
    assert!(ok(&out, "sluice publish").starts_with("accepted pay-evt-9c20"));
    let invoice_for = |order: &str| {
        events_at(&fwd.addr(), "default")
            .into_iter()
            .find(|e| e["type"] == "com.example.invoice.created" && e["data"]["orderId"] == order)
    };
    let reply = c.until(120, "the invoice reply", || invoice_for("o-2077"));
    figure("cold_start_reply_seen_by_the_test", sent.elapsed());
    assert_eq!(reply["data"]["orderId"], "o-2077", "{reply}");
    // The handler's reply is stamped when the worker emits it: publish → handled, without the
    // test's polling through port-forward (the same clock: every pod runs on this machine).
    let replied = reply["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("the reply carries its time: {reply}"));
    let cold = (replied.with_timezone(&chrono::Utc) - sent_at)
        .to_std()
        .expect("the reply was emitted after the event was sent");
    figure("cold_start_publish_to_reply_from_zero_pods", cold);
    // The curl lines of docs/cluster.md and of the chart's NOTES, verbatim.
    let page = std::fs::read_to_string(workspace().join("docs/cluster.md")).unwrap();
    let notes = ok(
        &c.helm(&["get", "notes", "sluice", "--namespace", "sluice"]),
        "helm get notes",
    );
    // The same event twice would be a duplicate: the NOTES' copy gets its own id and order.
    let notes = notes
        .replace("ce-id: order-1", "ce-id: order-notes-1")
        .replace(r#""orderId":"o-1""#, r#""orderId":"o-notes""#);
    for (what, text, order) in [
        ("docs/cluster.md", &page, "o-1"),
        ("NOTES.txt", &notes, "o-notes"),
    ] {
        let curl = curl_command(text).unwrap_or_else(|| panic!("{what}: no curl line"));
        // As a user runs it: with SLUICE_TOKEN exported.
        let out = Command::new("sh")
            .args(["-c", &curl.replace("127.0.0.1:8080", &fwd.addr())])
            .env("SLUICE_TOKEN", token.trim())
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(" 202 "),
            "{what} curl: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let reply = c.until(60, &format!("the {what} curl event's invoice"), || {
            events_at(&fwd.addr(), "default").into_iter().find(|e| {
                e["type"] == "com.example.invoice.created" && e["data"]["orderId"] == order
            })
        });
        assert!(reply["data"]["total"].is_number(), "{what}: {reply}");
    }
    let logs = c.ok(&["-n", "shop", "logs", "deploy/sluice-fn-invoice"]);
    assert!(
        logs.contains("o-2077"),
        "the handler's log lines in kubectl logs:\n{logs}"
    );
    assert_locked_down(&c, "shop", "sluice.dev/function=invoice");

    // --- a resent event after delete + re-apply: an explicit outcome ------------------
    c.ok(&["delete", "-f", "functions/cluster/invoice.yaml", "--wait"]);
    c.ok(&["apply", "-f", "functions/cluster/invoice.yaml"]);
    c.wait_condition("shop", "trg", "paid-orders", "Ready", "True", 60);
    let out = ok(
        &sluice(&[
            "publish",
            "--url",
            &fwd.url(),
            "--event",
            "@functions/rust/invoice/event.json",
        ]),
        "resend",
    );
    assert!(
        out.starts_with("duplicate:"),
        "a resent (source, id) is reported as a duplicate: {out}"
    );
    let out = ok(
        &sluice(&[
            "publish",
            "--url",
            &fwd.url(),
            "--type",
            "com.example.order.paid",
            "--source",
            "https://shop.example.com",
            "--id",
            "order-after-reapply",
            "--data",
            r#"{"orderId":"o-9","country":"NL","total":150,"items":[{"sku":"A","qty":1,"unitPrice":150}]}"#,
        ]),
        "publish after re-apply",
    );
    assert!(out.starts_with("accepted order-after-reapply"), "{out}");
    c.until(120, "the reply after delete and re-apply", || {
        events_at(&fwd.addr(), "default")
            .into_iter()
            .find(|e| e["type"] == "com.example.invoice.created" && e["data"]["orderId"] == "o-9")
    });

    // --- the tester handler from a URL and from an OCI registry -----------------------
    let tester = tester_wasm();
    let served = tempfile::tempdir().unwrap();
    std::fs::copy(tester, served.path().join("tester.wasm")).unwrap();
    let files = FileServer::start(served.path());
    let tester_sha = sha256_hex(tester);
    let oci_ref = format!("{REGISTRY}/sluice/tester:1");
    ok(
        &sluice(&[
            "module",
            "push",
            &tester.display().to_string(),
            "--oci",
            &oci_ref,
            "--oci-plain-http",
            REGISTRY,
        ]),
        "sluice module push",
    );
    c.ok(&["create", "namespace", "e2e"]);
    let manifests = format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {{name: tester, namespace: e2e}}
spec:
  module: {{url: "{url}", sha256: {tester_sha}}}
  abi: command
  concurrency: 16
  limits: {{timeout: 5s}}
  scaling: {{minReplicas: 0, maxReplicas: 3, targetPendingPerReplica: 40, cooldown: 5s}}
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{name: work, namespace: e2e}}
spec:
  source: {{bus: default}}
  pattern: {{type: [com.example.work]}}
  function: tester
  delivery:
    retry: {{maxAttempts: 3, backoff: constant, initialDelay: 200ms}}
    deadLetter: {{bus: dead-letter}}
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{name: fragile, namespace: e2e}}
spec:
  source: {{bus: default}}
  pattern: {{type: [com.example.fragile]}}
  function: tester
  delivery:
    retry: {{maxAttempts: 1}}
    circuitBreaker: {{consecutiveFailures: 2, coolOff: 1h}}
---
apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {{name: from-oci, namespace: e2e}}
spec:
  module: {{oci: "{oci_ref}"}}
  abi: command
  scaling: {{minReplicas: 0, maxReplicas: 1, cooldown: 5s}}
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{name: oci-work, namespace: e2e}}
spec:
  source: {{bus: default}}
  pattern: {{type: [com.example.oci]}}
  function: from-oci
"#,
        url = files.url("tester.wasm")
    );
    let mpath = served.path().join("e2e.yaml");
    std::fs::write(&mpath, &manifests).unwrap();
    c.ok(&["apply", "-f", &mpath.display().to_string()]);
    for f in ["tester", "from-oci"] {
        let (_, msg) = c.wait_condition("e2e", "fn", f, "Ready", "True", 90);
        let v = c.json(&["-n", "e2e", "get", "fn", f]);
        assert_eq!(
            v["status"]["digest"],
            format!("sha256:{tester_sha}"),
            "{f}: {msg}"
        );
    }
    for t in ["work", "oci-work"] {
        c.wait_condition("e2e", "trg", t, "Ready", "True", 60);
    }
    let ingress_ip = c.ok(&[
        "-n",
        "sluice",
        "get",
        "svc",
        "sluice-ingress",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let svc = format!("{ingress_ip}:80");
    let accepted = publish_batch(
        &svc,
        "default",
        &[
            json!({"specversion": "1.0", "id": "oci-1", "source": "/e2e",
        "type": "com.example.oci", "data": {}}),
        ],
    )
    .expect("publish through the ClusterIP");
    assert_eq!(accepted, vec!["oci-1".to_owned()]);
    c.until(120, "the OCI module's reply", || {
        done_counts(&events_at(&svc, "default"))
            .get("oci-1")
            .copied()
    });

    // --- a new Trigger is Ready only once every router routes with it -----------------
    let fresh = r#"apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {name: late, namespace: e2e}
spec:
  source: {bus: default}
  pattern: {type: [com.example.late]}
  function: tester
"#;
    let fpath = served.path().join("late.yaml");
    std::fs::write(&fpath, fresh).unwrap();
    let applied = Instant::now();
    c.ok(&["apply", "-f", &fpath.display().to_string()]);
    // Poll as a user's `kubectl wait` would; the first event goes the moment it is Ready.
    c.until(30, "Trigger e2e/late Ready", || {
        c.condition("e2e", "trg", "late", "Ready")
            .filter(|(s, _, _)| s == "True")
    });
    figure("new_trigger_to_ready", applied.elapsed());
    publish_batch(
        &svc,
        "default",
        &[
            json!({"specversion": "1.0", "id": "late-1", "source": "/e2e",
        "type": "com.example.late", "data": {}}),
        ],
    )
    .expect("publish");
    c.until(60, "the event sent right after Ready", || {
        done_counts(&events_at(&svc, "default"))
            .get("late-1")
            .copied()
    });

    // --- Secrets a Trigger names: an HTTP Trigger's token, a bridge's broker login -----
    // The token is mounted into the Function's workers (no Secrets RBAC); the bridge's
    // Secret is read by the routers through the API, only because it is labelled for bridges.
    let hook_token = "hook-token-0123456789abcdef";
    c.ok(&[
        "-n",
        "e2e",
        "create",
        "secret",
        "generic",
        "hook-token",
        &format!("--from-literal=token={hook_token}"),
    ]);
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(pki_dir.path());
    let broker_password = "plant-pa55word";
    let plant = TlsMosquitto::start_at(&pki, "10.244.0.1", "bridge", broker_password);
    let secrets_yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: plant-broker
  namespace: e2e
  labels: {{sluice.dev/bridge-credentials: "true"}}
stringData:
  username: bridge
  password: {broker_password}
  ca.crt: {ca}
---
apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {{name: web, namespace: e2e}}
spec:
  module: {{url: "{url}", sha256: {tester_sha}}}
  abi: command
  scaling: {{minReplicas: 1, maxReplicas: 1}}
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{name: hook, namespace: e2e}}
spec:
  source: {{http: {{path: /hook, tokenSecret: hook-token}}}}
  function: web
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{name: from-plant, namespace: e2e}}
spec:
  source: {{mqtt: {{url: "mqtts://10.244.0.1:{port}", topic: "plant/+/temp", credentialsSecret: plant-broker}}}}
  function: tester
"#,
        url = files.url("tester.wasm"),
        ca = serde_json::to_string(&pki.read("ca.crt")).unwrap(),
        port = plant.port,
    );
    let spath = served.path().join("secrets.yaml");
    std::fs::write(&spath, &secrets_yaml).unwrap();
    c.ok(&["apply", "-f", &spath.display().to_string()]);
    c.wait_condition("e2e", "fn", "web", "Ready", "True", 90);
    c.wait_condition("e2e", "trg", "from-plant", "Ready", "True", 60);
    let web_ip = c.ok(&[
        "-n",
        "e2e",
        "get",
        "svc",
        "sluice-fn-web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let web = format!("{web_ip}:80");
    let call = |token: &str| {
        http(
            &web,
            "POST",
            "/fn/e2e/hook",
            &[("authorization", &format!("Bearer {token}"))],
            b"{}",
        )
        .map(|r| r.0)
        .unwrap_or(0)
    };
    // The last status seen says why, when it never answers 200 (0: no answer at all).
    let last = std::cell::Cell::new(0);
    sluice_tests::wait_for(120, || {
        last.set(call(hook_token));
        (last.get() == 200).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the HTTP Trigger answering with its token: not within 120s (last answer {}); web's logs:\n{}",
            last.get(),
            String::from_utf8_lossy(
                &c.kubectl(&["-n", "e2e", "logs", "deploy/sluice-fn-web", "--tail", "40"])
                    .stdout
            )
        )
    });
    // An answer, whatever it is (the Deployment may still be rolling to the pod template
    // with the token mounted: a connection to a leaving pod fails, and a pod from before the
    // token was mounted refuses everyone with 503, "cannot check tokens right now").
    let answer = |t: &str| {
        c.until(60, "an answer from the HTTP Trigger", || {
            Some(call(t)).filter(|s| *s != 0 && *s != 503)
        })
    };
    assert_eq!(answer("not-the-hook-token"), 401);
    // The ingress's token opens the front door, not a Function's HTTP Trigger.
    assert_eq!(answer(token.trim()), 401);
    assert_eq!(answer(hook_token), 200);
    // Each Function's workers have a NetworkPolicy: HTTP callers from anywhere where an HTTP
    // Trigger is, scrapers from the cluster's pods elsewhere.
    for (f, from) in [
        ("web", Value::Null),
        ("tester", json!([{"namespaceSelector": {}}])),
    ] {
        let p = c.json(&[
            "-n",
            "e2e",
            "get",
            "networkpolicy",
            &format!("sluice-fn-{f}"),
        ]);
        assert_eq!(p["spec"]["ingress"][0]["from"], from, "{f}: {p}");
        assert_eq!(
            p["spec"]["podSelector"]["matchLabels"]["sluice.dev/function"], f,
            "{p}"
        );
    }
    // Until a router's bridge has subscribed, a message has no session to wait in: send one
    // every two seconds until one is handled.
    let mut sent_plant = 0;
    c.until(120, "a message from the TLS broker handled", || {
        sent_plant += 1;
        let id = format!("plant-{sent_plant}");
        let ce = json!({"specversion": "1.0", "id": id, "source": "/plant",
            "type": "com.example.reading", "data": {}});
        plant.publish(
            &pki,
            "bridge",
            broker_password,
            "plant/boiler/temp",
            &ce.to_string(),
        );
        std::thread::sleep(Duration::from_secs(2));
        done_counts(&events_at(&svc, "default"))
            .keys()
            .find(|k| k.starts_with("plant-"))
            .cloned()
    });

    // --- a poison event: dead-lettered after exactly maxAttempts; redrive -------------
    publish_batch(&svc, "default", &[work("poison-1", json!({"fail": true}))])
        .expect("publish poison");
    let dlq = c.until(90, "the poison event's dead letter", || {
        let out = sluice(&["dlq", "list", "--trigger", "e2e/work", "--url", &fwd.url()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|d| d["id"] == "poison-1")
    });
    assert_eq!(
        dlq["sluiceattempts"].as_u64(),
        Some(3),
        "dead-lettered after exactly maxAttempts: {dlq}"
    );
    let on_dl_bus = c.until(30, "the dead letter on bus dead-letter", || {
        events_at(&svc, "dead-letter")
            .into_iter()
            .find(|e| e["id"] == "poison-1")
    });
    assert_eq!(on_dl_bus["sluicereason"], "exhausted", "{on_dl_bus}");
    let out = ok(
        &sluice(&[
            "dlq",
            "redrive",
            "--trigger",
            "e2e/work",
            "--url",
            &fwd.url(),
        ]),
        "dlq redrive",
    );
    assert!(out.contains("redriven 1"), "{out}");
    // Redriven, it fails again three times and is dead-lettered once more.
    c.until(
        90,
        "the redriven poison event back in the dead letters",
        || {
            let out = sluice(&["dlq", "list", "--trigger", "e2e/work", "--url", &fwd.url()]);
            let n = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("poison-1"))
                .count();
            (n == 1).then_some(())
        },
    );

    // --- two failures in a row open Trigger fragile's breaker: kubectl get trg shows it ----
    let frail: Vec<Value> = (0..2)
        .map(|i| {
            let mut e = work(&format!("frail-{i}"), json!({"fail": true}));
            e["type"] = json!("com.example.fragile");
            e
        })
        .collect();
    publish_batch(&svc, "default", &frail).expect("publish to fragile");
    let table = c.until(
        60,
        "Trigger fragile's circuit open in kubectl get trg",
        || {
            let out = c.ok(&["get", "trg", "-n", "e2e", "fragile"]);
            let mut lines = out.lines();
            let header = lines
                .next()?
                .split_whitespace()
                .position(|h| h == "CIRCUIT")?;
            let row = lines.next()?.split_whitespace().nth(header)?.to_owned();
            (row == "open").then_some(out)
        },
    );
    let status = c.json(&["get", "trg", "-n", "e2e", "fragile"]);
    assert_eq!(
        status["status"]["circuit"]["failures"], 2,
        "{table}\n{status}"
    );
    assert!(
        status["status"]["circuit"]["openUntil"].is_string(),
        "{status}"
    );

    // --- scale 0 → N → 0 on a backlog --------------------------------------------------
    c.until(120, "tester back at zero workers", || {
        (c.pod_count("e2e", "tester") == 0).then_some(())
    });
    let burst: Vec<Value> = (0..600)
        .map(|i| work(&format!("burst-{i}"), json!({"n": i})))
        .collect();
    let t0 = Instant::now();
    let mut accepted_burst = Vec::new();
    for chunk in burst.chunks(100) {
        accepted_burst.extend(publish_batch(&svc, "default", chunk).expect("burst publish"));
    }
    let published = t0.elapsed();
    let peak = c.until(60, "scaled above one worker", || {
        let (replicas, _) = c.workers("e2e", "tester");
        (replicas > 1).then_some(replicas)
    });
    figure("backlog_to_scale_up", t0.elapsed());
    println!("FIGURE scale_up_replicas {peak}");
    c.until(180, "every burst event handled", || {
        let done = done_counts(&events_at(&svc, "default"));
        accepted_burst
            .iter()
            .all(|id| done.contains_key(id))
            .then_some(())
    });
    let handled = t0.elapsed();
    println!(
        "FIGURE burst_events_per_second {:.0} (600 events, publish {:.2}s, all handled {:.2}s, from zero workers)",
        600.0 / handled.as_secs_f64(),
        published.as_secs_f64(),
        handled.as_secs_f64()
    );
    let idle = Instant::now();
    c.until(90, "scaled back to zero replicas", || {
        (c.workers("e2e", "tester").0 == 0).then_some(())
    });
    figure("idle_to_zero_replicas_cooldown_5s", idle.elapsed());
    c.until(120, "every tester pod gone", || {
        (c.pod_count("e2e", "tester") == 0).then_some(())
    });
    figure("idle_to_zero_pods", idle.elapsed());

    // --- faults mid-load: a worker pod force-deleted, the operator and NATS restarted --
    let load = std::thread::spawn({
        let svc = svc.clone();
        move || {
            let mut accepted = Vec::new();
            for round in 0..60 {
                let batch: Vec<Value> = (0..20)
                    .map(|i| work(&format!("fault-{round}-{i}"), json!({"n": i})))
                    .collect();
                // A producer retries until the ingress answers (NATS may be restarting). An
                // event stored before an answer was lost comes back as a duplicate: stored
                // all the same, so it must be handled too.
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let stored = |e: &Value| e["position"].is_u64() || e["duplicate"] == true;
                    if let Some(ids) = publish_batch_with(&svc, "default", &batch, stored) {
                        accepted.extend(ids);
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the ingress never accepted round {round}"
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            accepted
        }
    });
    c.until(60, "a tester pod running under load", || {
        (c.workers("e2e", "tester").1 > 0).then_some(())
    });
    let pod = c.ok(&[
        "-n",
        "e2e",
        "get",
        "pods",
        "-l",
        "sluice.dev/function=tester",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    c.ok(&[
        "-n",
        "e2e",
        "delete",
        "pod",
        &pod,
        "--grace-period=0",
        "--force",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    c.ok(&[
        "-n",
        "sluice",
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/component=operator",
        // A pod the node cannot tear down fails here, not at CI's own time limit.
        "--timeout=120s",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    c.ok(&["-n", "nats", "delete", "pod", "nats-0", "--timeout=120s"]);
    let accepted_fault = load.join().expect("the load thread");
    assert!(!accepted_fault.is_empty());
    c.until(240, "every accepted event handled after the faults", || {
        // The ingress is not ready while NATS restarts, so its Service refuses for a while.
        let done = done_counts(&try_events_at(&svc, "default").ok()?);
        let missing = accepted_fault
            .iter()
            .filter(|id| !done.contains_key(*id))
            .count();
        (missing == 0).then_some(())
    });
    assert_eq!(
        accepted_fault.iter().collect::<HashSet<_>>().len(),
        1200,
        "every event of the fault run stored"
    );
    println!(
        "FIGURE fault_run_events {} stored, all handled",
        accepted_fault.len()
    );

    // --- bad input: each ends in a condition naming the field, no crash-looping pod ---
    let bad = format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {{name: url-404, namespace: e2e}}
spec:
  module: {{url: "{missing}", sha256: {tester_sha}}}
  abi: command
---
apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {{name: bad-digest, namespace: e2e}}
spec:
  module: {{url: "{url}", sha256: "{wrong}"}}
  abi: command
---
apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {{name: no-tag, namespace: e2e}}
spec:
  module: {{oci: "{REGISTRY}/sluice/tester:missing"}}
  abi: command
---
apiVersion: sluice.dev/v1alpha1
kind: Trigger
metadata: {{name: bad-pattern, namespace: e2e}}
spec:
  source: {{bus: default}}
  pattern: {{data: {{total: [{{numeric: [">", "ten"]}}]}}}}
  function: tester
"#,
        missing = files.url("missing.wasm"),
        url = files.url("tester.wasm"),
        wrong = "0".repeat(64),
    );
    let bpath = served.path().join("bad.yaml");
    std::fs::write(&bpath, bad).unwrap();
    c.ok(&["apply", "-f", &bpath.display().to_string()]);
    for (kind, name, type_, want_reason, field) in [
        (
            "fn",
            "url-404",
            "ModuleResolved",
            "DownloadFailed",
            "spec.module.url",
        ),
        (
            "fn",
            "bad-digest",
            "ModuleResolved",
            "DigestMismatch",
            "sha256",
        ),
        (
            "fn",
            "no-tag",
            "ModuleResolved",
            "PullFailed",
            "spec.module.oci",
        ),
        (
            "trg",
            "bad-pattern",
            "Ready",
            "InvalidPattern",
            "spec.pattern",
        ),
    ] {
        let (reason, msg) = c.wait_condition("e2e", kind, name, type_, "False", 90);
        assert_eq!(reason, want_reason, "{kind} {name}: {msg}");
        assert!(
            msg.contains(field),
            "{kind} {name}: the message names {field}: {msg}"
        );
        let described = c.ok(&["-n", "e2e", "describe", kind, name]);
        assert!(
            described.contains(want_reason),
            "kubectl describe {kind} {name}:\n{described}"
        );
    }
    for f in ["url-404", "bad-digest", "no-tag"] {
        assert_eq!(
            c.pod_count("e2e", f),
            0,
            "Function {f} with no module must run no pod"
        );
    }
    let restarts: Vec<String> = c.json(&["get", "pods", "-A"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|s| s["state"]["waiting"]["reason"] == "CrashLoopBackOff")
                })
        })
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert!(restarts.is_empty(), "crash-looping pods: {restarts:?}");

    // --- helm uninstall leaves nothing; the CRDs then delete at once ------------------
    drop(fwd);
    let started = Instant::now();
    ok(
        &c.helm(&[
            "uninstall",
            "sluice",
            "--namespace",
            "sluice",
            "--wait",
            "--timeout",
            "180s",
        ]),
        "helm uninstall",
    );
    figure("helm_uninstall", started.elapsed());
    for (ns, kinds) in [
        (
            "sluice",
            "deploy,svc,pods,configmaps,serviceaccounts,roles,rolebindings,jobs",
        ),
        ("shop", "deploy,svc,pods"),
        ("e2e", "deploy,svc,pods"),
    ] {
        c.until(120, &format!("nothing left in {ns}"), || {
            let left = c.ok(&["-n", ns, "get", kinds, "-o", "name"]);
            let left: Vec<&str> = left
                .lines()
                .filter(|l| {
                    !l.ends_with("/kube-root-ca.crt") && !l.ends_with("serviceaccount/default")
                })
                .collect();
            left.is_empty().then_some(())
        });
    }
    let cluster_rbac = c.ok(&["get", "clusterroles,clusterrolebindings", "-o", "name"]);
    assert!(
        !cluster_rbac.contains("sluice"),
        "cluster RBAC left: {cluster_rbac}"
    );
    assert_eq!(
        c.ok(&["get", "fn,trg", "-A", "-o", "name"]).trim(),
        "",
        "Functions or Triggers left"
    );
    let deleted = Instant::now();
    let out = Command::new("timeout")
        .args([
            "60",
            "kubectl",
            "delete",
            "crd",
            "functions.sluice.dev",
            "triggers.sluice.dev",
            "eventschemas.sluice.dev",
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .output()
        .unwrap();
    ok(&out, "kubectl delete crd");
    figure("crd_delete", deleted.elapsed());
    // JetStream: the chart's streams and route buckets are gone.
    let nats_ip = c.ok(&[
        "-n",
        "nats",
        "get",
        "svc",
        "nats",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let (_, _, body) = http(
        &format!("{nats_ip}:8222"),
        "GET",
        "/jsz?streams=true",
        &[],
        b"",
    )
    .expect("NATS monitoring");
    let jsz: Value = serde_json::from_slice(&body).unwrap_or_default();
    let streams: Vec<String> = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !streams
            .iter()
            .any(|s| s.starts_with("sluice_") || s.starts_with("KV_sluice")),
        "JetStream streams left: {streams:?}"
    );
}
