use sluice_api::manifest::{Outcome, Resource as Doc, parse};

use super::*;

pub(crate) fn function(yaml_spec: &str) -> Function {
    let mut f: Function = serde_yaml::from_str(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {{name: invoice, namespace: shop, uid: u-1, generation: 3}}\nspec:\n{yaml_spec}"
    ))
    .expect("test Function parses");
    f.metadata.namespace = Some("shop".into());
    f
}

/// A Trigger as the API server stores it: `delivery: {}` defaulted by the CRD schema (serde
/// alone would default `maxInflight` to 0 when `delivery` is omitted).
pub(crate) fn trigger(name: &str, spec: &str) -> Trigger {
    serde_yaml::from_str(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  delivery: {{}}\n{spec}"
    ))
    .expect("test Trigger parses")
}

const SHA: &str = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b";

fn cm_module() -> ResolvedModule {
    ResolvedModule {
        sha256: SHA.into(),
        delivery: Delivery::ConfigMap {
            name: "invoice-wasm".into(),
            key: "module.wasm".into(),
        },
    }
}

fn pod(d: &Deployment) -> &PodSpec {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn deployment_runs_the_worker_restricted_with_probes_and_no_replicas() {
    let f = function("  module: {configMap: {name: invoice-wasm}}\n");
    let d = worker_deployment(&f, &cm_module(), &Settings::default(), &[]);
    assert_eq!(d.metadata.name.as_deref(), Some("sluice-fn-invoice"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("shop"));
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Function", "invoice", "u-1")
    );
    assert_eq!(owner.controller, Some(true));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, None, "the autoscaler owns replicas");
    assert_eq!(
        spec.selector.match_labels.as_ref(),
        Some(&worker_labels("invoice"))
    );
    assert_eq!(
        spec.template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[DIGEST_ANNOTATION],
        SHA
    );
    let p = pod(&d);
    assert_eq!(p.automount_service_account_token, Some(false));
    assert!(p.init_containers.is_none());
    let c = &p.containers[0];
    assert_eq!(c.image.as_deref(), Some(crate::config::DEFAULT_IMAGE));
    assert_eq!(
        c.args.as_ref().unwrap(),
        &[
            "worker",
            "--nats",
            "$(SLUICE_NATS_URL)",
            "--function",
            "shop/invoice",
            "--manifests",
            "/etc/sluice/manifests",
            "--listen",
            "0.0.0.0:8080",
            "--routes-bucket",
            "sluice_routes",
            "--secrets",
            "/var/run/sluice/secrets"
        ]
    );
    let env = c.env.as_ref().unwrap();
    assert_eq!(env[0].name, "SLUICE_NATS_URL");
    assert_eq!(env[0].value.as_deref(), Some("nats://nats:4222"));
    // The pod name is the worker's identity in its route-table acknowledgements.
    assert_eq!(env[1].name, "POD_NAME");
    assert_eq!(
        env[1]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.name"
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
        &["ALL"]
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let live = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    let ready = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.path.as_deref(), Some("/healthz"));
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
    // The module is the user's ConfigMap key, mounted as module.wasm.
    let module = p
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "module")
        .unwrap();
    let cm = module.config_map.as_ref().unwrap();
    assert_eq!(cm.name, "invoice-wasm");
    assert_eq!(cm.items.as_ref().unwrap()[0].key, "module.wasm");
    assert_eq!(cm.items.as_ref().unwrap()[0].path, "module.wasm");
    let manifests = p
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "manifests")
        .unwrap();
    assert_eq!(
        manifests.config_map.as_ref().unwrap().name,
        "sluice-fn-invoice"
    );
    let mounts: Vec<_> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        ["/etc/sluice/manifests", "/var/run/sluice/module", "/tmp"]
    );
    // Default timeout 5s + 10s margin.
    assert_eq!(p.termination_grace_period_seconds, Some(15));
}

#[test]
fn url_and_oci_modules_are_fetched_by_an_init_container() {
    let f = function(&format!(
        "  module: {{url: 'https://example.com/i.wasm', sha256: {SHA}}}\n"
    ));
    let m = ResolvedModule {
        sha256: SHA.into(),
        delivery: Delivery::Url("https://example.com/i.wasm".into()),
    };
    let d = worker_deployment(
        &f,
        &m,
        &Settings {
            image: "img:1".into(),
            ..Default::default()
        },
        &[],
    );
    let init = &pod(&d).init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image.as_deref(), Some("img:1"));
    assert_eq!(
        init.args.as_ref().unwrap(),
        &[
            "module",
            "fetch",
            "--url",
            "https://example.com/i.wasm",
            "--sha256",
            SHA,
            "--out",
            "/var/run/sluice/module/module.wasm"
        ]
    );
    assert_eq!(
        init.volume_mounts.as_ref().unwrap()[0].read_only,
        Some(false)
    );
    let module = pod(&d)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "module")
        .unwrap();
    assert!(module.empty_dir.is_some());

    let m = ResolvedModule {
        sha256: SHA.into(),
        delivery: Delivery::Oci("reg.local:5000/shop/i@sha256:ab".into()),
    };
    let s = Settings {
        oci_plain_http: vec!["reg.local:5000".into()],
        module_allow_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let d = worker_deployment(&f, &m, &s, &[]);
    let args = pod(&d).init_containers.as_ref().unwrap()[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(&args[2..4], ["--oci", "reg.local:5000/shop/i@sha256:ab"]);
    assert_eq!(
        &args[8..],
        [
            "--oci-plain-http",
            "reg.local:5000",
            "--allow-host",
            "127.0.0.1"
        ],
        "the init container allows what the operator allows"
    );
}

#[test]
fn secret_env_becomes_sluice_env_vars_and_nats_creds_are_mounted() {
    let f = function(
        "  module: {configMap: {name: w}}\n  env:\n  - {name: CURRENCY, value: EUR}\n  - {name: TOKEN, valueFrom: {secretKeyRef: {name: api, key: token}}}\n  - {name: MODE, valueFrom: {configMapKeyRef: {name: cfg, key: mode}}}\n",
    );
    let s = Settings {
        nats_creds_secret: Some("nats-user".into()),
        routes_bucket: "team_routes".into(),
        ..Default::default()
    };
    let d = worker_deployment(&f, &cm_module(), &s, &[]);
    let c = &pod(&d).containers[0];
    let env = c.env.as_ref().unwrap();
    let names: Vec<_> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SLUICE_NATS_URL",
            "POD_NAME",
            "SLUICE_ENV_TOKEN",
            "SLUICE_ENV_MODE"
        ]
    );
    let token = env[2]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((token.name.as_str(), token.key.as_str()), ("api", "token"));
    let mode = env[3]
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((mode.name.as_str(), mode.key.as_str()), ("cfg", "mode"));
    let args = c.args.as_ref().unwrap();
    assert_eq!(
        &args[args.len() - 6..],
        [
            "--routes-bucket",
            "team_routes",
            "--secrets",
            "/var/run/sluice/secrets",
            "--nats-creds",
            "/etc/sluice/nats/creds"
        ]
    );
    let v = pod(&d)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "nats-creds")
        .unwrap();
    assert_eq!(
        v.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("nats-user")
    );
    assert!(
        c.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/etc/sluice/nats")
    );
}

#[test]
fn resources_follow_memory_times_concurrency_plus_base() {
    let f = function(
        "  module: {configMap: {name: w}}\n  limits: {memory: 32Mi, timeout: 30s}\n  concurrency: 8\n",
    );
    let r = resources(&f);
    assert_eq!(
        r.requests.as_ref().unwrap()["memory"],
        Quantity("160Mi".into())
    );
    assert_eq!(r.requests.as_ref().unwrap()["cpu"], Quantity("100m".into()));
    assert_eq!(
        r.limits.as_ref().unwrap()["memory"],
        Quantity("384Mi".into())
    );
    assert!(!r.limits.as_ref().unwrap().contains_key("cpu"));
    let d = worker_deployment(&f, &cm_module(), &Settings::default(), &[]);
    assert_eq!(pod(&d).termination_grace_period_seconds, Some(40));
}

#[test]
fn service_targets_the_worker_port() {
    let f = function("  module: {configMap: {name: w}}\n");
    let s = worker_service(&f);
    assert_eq!(s.metadata.name.as_deref(), Some("sluice-fn-invoice"));
    let spec = s.spec.unwrap();
    assert_eq!(spec.selector.as_ref(), Some(&worker_labels("invoice")));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.target_port.clone()),
        (Some("http"), 80, Some(IntOrString::Int(8080)))
    );
}

#[test]
fn selector_string_lists_the_worker_labels() {
    assert_eq!(
        selector_string("invoice"),
        "app.kubernetes.io/instance=invoice,app.kubernetes.io/managed-by=sluice-operator,app.kubernetes.io/name=sluice-worker,sluice.dev/function=invoice"
    );
}

#[test]
fn worker_manifests_are_valid_pinned_and_keep_env_refs() {
    let f = function(
        "  module: {configMap: {name: w}}\n  env:\n  - {name: CURRENCY, value: EUR}\n  - {name: TOKEN, valueFrom: {secretKeyRef: {name: api, key: token}}}\n",
    );
    let b = trigger(
        "b-paid",
        "  source: {bus: default}\n  function: invoice\n  pattern: {type: [paid]}\n",
    );
    let a = trigger(
        "a-web",
        "  source: {http: {path: /invoice}}\n  function: invoice\n",
    );
    let text = worker_manifests(&f, &cm_module(), &[&b, &a]).unwrap();
    let docs = parse(&text);
    assert_eq!(docs.len(), 3, "{text}");
    let Outcome::Valid(Doc::Function(func)) = &docs[0].outcome else {
        panic!("{:?}", docs[0])
    };
    assert_eq!(func.spec.module.path.as_deref(), Some(MODULE_PATH));
    assert_eq!(func.spec.module.sha256.as_deref(), Some(SHA));
    assert_eq!(func.spec.module.config_map, None);
    assert_eq!(
        func.spec.env, f.spec.env,
        "literal values and valueFrom are kept"
    );
    let names: Vec<_> = docs[1..]
        .iter()
        .map(|d| match &d.outcome {
            Outcome::Valid(Doc::Trigger(t)) => t.metadata.name.clone().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["a-web", "b-paid"]);
    let cm = manifests_configmap(&f, text.clone());
    assert_eq!(cm.data.unwrap()[MANIFESTS_KEY], text);
}

#[test]
fn routes_hold_the_routed_triggers_sorted() {
    let t1 = trigger(
        "z",
        "  source: {schedule: '*/5 * * * *'}\n  function: invoice\n",
    );
    let t2 = trigger("a", "  source: {bus: default}\n  function: invoice\n");
    let web = trigger("web", "  source: {http: {path: /x}}\n  function: invoice\n");
    let schema: sluice_api::EventSchema = serde_yaml::from_str(
        "apiVersion: sluice.dev/v1alpha1\nkind: EventSchema\nmetadata: {name: paid, namespace: shop}\nspec: {type: t, versions: [{version: 1, schema: {type: object}}]}\n",
    )
    .unwrap();
    let text = routes(&[&t1, &web, &t2], &[&schema]).unwrap();
    let names: Vec<_> = parse(&text).iter().map(|d| d.object.name.clone()).collect();
    assert_eq!(names, ["a", "z", "paid"]);
    assert!(
        parse(&text)
            .iter()
            .all(|d| matches!(d.outcome, Outcome::Valid(_)))
    );
    assert!(routes(&[], &[]).unwrap().starts_with("# Generated"));
}

#[test]
fn workers_mount_only_the_token_of_each_http_trigger_secret() {
    let f = function("  module: {configMap: {name: invoice-wasm}}\n");
    let triggers = [
        trigger(
            "a",
            "  function: invoice\n  source: {http: {path: /a, tokenSecret: web-token}}\n",
        ),
        trigger(
            "b",
            "  function: invoice\n  source: {http: {path: /b, tokenSecret: web-token}}\n",
        ),
        trigger(
            "c",
            "  function: invoice\n  source: {http: {path: /c, tokenSecret: admin.token}}\n",
        ),
        trigger("d", "  function: invoice\n  source: {http: {path: /d}}\n"),
    ];
    let refs: Vec<&Trigger> = triggers.iter().collect();
    let secrets = token_secrets(&refs);
    assert_eq!(secrets, ["admin.token", "web-token"], "sorted, once each");
    let d = worker_deployment(&f, &cm_module(), &Settings::default(), &secrets);
    let p = pod(&d);
    let volumes: Vec<_> = p
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| Some((v.name.as_str(), v.secret.as_ref()?)))
        .collect();
    assert_eq!(volumes.len(), 2);
    for (name, s) in &volumes {
        assert!(name.starts_with("http-token-"), "{name}");
        assert_eq!(s.optional, Some(true));
        let items = s.items.as_ref().unwrap();
        assert_eq!((items.len(), items[0].key.as_str()), (1, "token"));
    }
    let c = &p.containers[0];
    let mounts: Vec<_> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.name.starts_with("http-token-"))
        .map(|m| (m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/var/run/sluice/secrets/admin.token", Some(true)),
            ("/var/run/sluice/secrets/web-token", Some(true))
        ]
    );
    let args = c.args.as_ref().unwrap();
    let at = args.iter().position(|a| a == "--secrets").unwrap();
    assert_eq!(args[at + 1], SECRETS_DIR);
}

#[test]
fn worker_network_policies_admit_callers_only_where_http_triggers_are() {
    use crate::config::WorkerPolicy;
    let f = function("  module: {configMap: {name: invoice-wasm}}\n");
    let policy: WorkerPolicy = serde_json::from_value(json!({
        "http": [],
        "metrics": [{"namespaceSelector": {"matchLabels": {"monitoring": "true"}}}],
    }))
    .unwrap();
    let rule = |http: bool| {
        let p = serde_json::to_value(worker_network_policy(&f, &policy, http)).unwrap();
        assert_eq!(p["metadata"]["name"], "sluice-fn-invoice");
        assert_eq!(p["metadata"]["namespace"], "shop");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Function");
        assert_eq!(
            p["spec"]["podSelector"]["matchLabels"],
            serde_json::to_value(worker_labels("invoice")).unwrap()
        );
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress"]));
        let rules = p["spec"]["ingress"].as_array().unwrap().clone();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0]["ports"],
            json!([{"port": 8080, "protocol": "TCP"}])
        );
        rules[0].clone()
    };
    // HTTP Triggers: their callers from anywhere (no `from`).
    assert!(rule(true).get("from").is_none());
    // Health and metrics only: the scrapers.
    assert_eq!(
        rule(false)["from"],
        json!([{"namespaceSelector": {"matchLabels": {"monitoring": "true"}}}])
    );
}
