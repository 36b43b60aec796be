//! Secrets a Trigger names, on both buses: bridges log in to brokers that demand a password
//! or an NKey over TLS (and, for NATS, a client certificate), using only Secrets labelled for
//! bridges;
//! HTTP Triggers with a `tokenSecret` take only its token, read at every request. The
//! Secrets are v1 Secret manifests beside the Triggers, as `kubectl apply` would take them.

use serde_json::json;
use sluice_api::credentials::{BridgeCredentials, Login};
use sluice_tests::{
    brokers::{Pki, TlsMosquitto, TlsNats},
    done_counts,
    sluice::{Backend, Tester},
    wait_for,
};

sluice_tests::both!(
    bridges_log_in_with_their_secrets_over_tls,
    http_triggers_take_only_their_token,
);

const MQTT_PASSWORD: &str = "mqtt-pa55word-not-logged";
const NATS_PASSWORD: &str = "nats-pa55word-not-logged";

/// A v1 Secret manifest in namespace `e2e`, labelled for bridges or not.
fn secret(name: &str, bridge: bool, data: &[(&str, &str)]) -> String {
    let mut s =
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: e2e\n");
    if bridge {
        s.push_str("  labels: { sluice.dev/bridge-credentials: \"true\" }\n");
    }
    s.push_str("stringData:\n");
    for (k, v) in data {
        s.push_str(&format!("  {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    s
}

fn bridges_log_in_with_their_secrets_over_tls(backend: Backend) {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(pki_dir.path());
    let mosquitto = TlsMosquitto::start(&pki, "bridge", MQTT_PASSWORD);
    let nkey = nkeys::KeyPair::new_user();
    let nats = TlsNats::start(&pki, "bridge", NATS_PASSWORD, &[nkey.public_key()]);
    let manifests = [
        secret(
            "mqtt-login",
            true,
            &[("username", "bridge"), ("password", MQTT_PASSWORD), ("ca.crt", &pki.read("ca.crt"))],
        ),
        secret(
            "nats-login",
            true,
            &[
                ("username", "bridge"),
                ("password", NATS_PASSWORD),
                ("ca.crt", &pki.read("ca.crt")),
                ("tls.crt", &pki.read("client.crt")),
                ("tls.key", &pki.read("client.key")),
            ],
        ),
        secret(
            "nats-nkey",
            true,
            &[
                ("nkey", &nkey.seed().unwrap()),
                ("ca.crt", &pki.read("ca.crt")),
                ("tls.crt", &pki.read("client.crt")),
                ("tls.key", &pki.read("client.key")),
            ],
        ),
        // The right password, but not labelled for bridges.
        secret(
            "unlabelled",
            false,
            &[("username", "bridge"), ("password", MQTT_PASSWORD), ("ca.crt", &pki.read("ca.crt"))],
        ),
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{ name: from-mqtts, namespace: e2e }}\n\
             spec:\n  source: {{ mqtt: {{ url: 'mqtts://127.0.0.1:{}', topic: 'plant/+/temp', credentialsSecret: mqtt-login }} }}\n  function: tester\n",
            mosquitto.port
        ),
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{ name: from-nats-tls, namespace: e2e }}\n\
             spec:\n  source: {{ nats: {{ url: 'tls://127.0.0.1:{}', subject: 'plant.>', credentialsSecret: nats-login }} }}\n  function: tester\n",
            nats.port
        ),
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{ name: from-nats-nkey, namespace: e2e }}\n\
             spec:\n  source: {{ nats: {{ url: 'tls://127.0.0.1:{}', subject: 'meter.>', credentialsSecret: nats-nkey }} }}\n  function: tester\n",
            nats.port
        ),
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{ name: unlabelled, namespace: e2e }}\n\
             spec:\n  source: {{ mqtt: {{ url: 'mqtts://127.0.0.1:{}', topic: 'other/#', credentialsSecret: unlabelled }} }}\n  function: tester\n",
            mosquitto.port
        ),
    ]
    .join("---\n");
    let Tester { sys, .. } = &Tester::start(backend, &manifests);
    // Messages published before a bridge's first subscription have no session to wait in.
    wait_for(30, || {
        let logs = sys.logs();
        (logs.contains("MQTT bridge subscribed")
            && logs.matches("NATS bridge subscribed").count() >= 2)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("bridges did not log in\n{}", sys.logs()));

    let ce = |id: &str| {
        json!({"specversion": "1.0", "id": id, "source": "/plant", "type": "com.example.reading", "data": {"c": 21}})
            .to_string()
    };
    assert!(
        mosquitto.publish(
            &pki,
            "bridge",
            MQTT_PASSWORD,
            "plant/boiler/temp",
            &ce("m-1")
        ),
        "mosquitto_pub over TLS:\n{}",
        mosquitto.proc.log_text()
    );
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let creds = BridgeCredentials {
            login: Login::None,
            ca: Some(pki.read("ca.crt").into_bytes()),
            client_cert: Some((
                pki.read("client.crt").into_bytes(),
                pki.read("client.key").into_bytes(),
            )),
        };
        let tls = sluice_ingress::tls::client_config(&creds).unwrap();
        let client = async_nats::ConnectOptions::new()
            .user_and_password("bridge".into(), NATS_PASSWORD.into())
            .require_tls(true)
            .tls_client_config(tls)
            .connect(format!("tls://127.0.0.1:{}", nats.port))
            .await
            .expect("the test's own client logs in");
        let reply = client
            .request("plant.boiler", ce("n-1").into())
            .await
            .expect("the bridge answers a request");
        assert_eq!(&reply.payload[..], b"accepted");
        let reply = client
            .request("meter.hall", ce("k-1").into())
            .await
            .expect("the NKey bridge answers a request");
        assert_eq!(&reply.payload[..], b"accepted");
    });
    let done = wait_for(30, || {
        let d = done_counts(&sys.events("default"));
        (d.contains_key("m-1") && d.contains_key("n-1") && d.contains_key("k-1")).then_some(d)
    })
    .unwrap_or_else(|| panic!("bridged messages not handled\n{}", sys.logs()));
    assert_eq!(done.len(), 3, "{done:?}");

    let logs = sys.logs();
    assert!(
        logs.lines().any(|l| l.contains("e2e/unlabelled")
            && l.contains("spec.source.mqtt.credentialsSecret")
            && l.contains("not labelled sluice.dev/bridge-credentials")),
        "the unlabelled Secret is refused, naming the field and the label\n{logs}"
    );
    for password in [MQTT_PASSWORD, NATS_PASSWORD] {
        assert!(!logs.contains(password), "a password reached the logs");
    }
}

const TOKEN: &str = "first-token-0123456789";
const ROTATED: &str = "second-token-9876543210";

fn http_triggers_take_only_their_token(backend: Backend) {
    let manifests = |token: &str| {
        [
            secret("web-token", false, &[("token", token)]),
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: { name: hook, namespace: e2e }\n\
             spec:\n  source: { http: { path: /hook, tokenSecret: web-token } }\n  function: tester\n"
                .to_owned(),
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: { name: no-secret, namespace: e2e }\n\
             spec:\n  source: { http: { path: /orphan, tokenSecret: never-created } }\n  function: tester\n"
                .to_owned(),
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: { name: open, namespace: e2e }\n\
             spec:\n  source: { http: { path: /open } }\n  function: tester\n"
                .to_owned(),
        ]
        .join("---\n")
    };
    let tester = Tester::start(backend, &manifests(TOKEN));
    let sys = &tester.sys;
    let addr = sys.worker_addr.clone().unwrap_or_else(|| sys.addr.clone());
    let call = |path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        sluice_tests::http(&addr, "POST", &format!("/fn/e2e{path}"), &headers, b"{}")
            .unwrap()
            .0
    };
    assert_eq!(call("/hook", None), 401);
    assert_eq!(
        call("/hook", Some("first-token-012345678")),
        401,
        "a prefix"
    );
    assert_eq!(call("/hook", Some(TOKEN)), 200);
    assert_eq!(call("/open", None), 200, "no tokenSecret: open");
    assert_eq!(
        call("/orphan", Some(TOKEN)),
        503,
        "closed while its Secret is missing"
    );
    assert!(
        sys.logs().lines().any(|l| l.contains("e2e/no-secret")
            && l.contains("spec.source.http.tokenSecret")
            && l.contains("never-created")),
        "the missing Secret is logged with the Trigger and field\n{}",
        sys.logs()
    );

    // A rotated token takes over as soon as the Secret changes; the old one stops working.
    std::fs::write(tester.manifests().join("triggers.yaml"), manifests(ROTATED)).unwrap();
    wait_for(20, || (call("/hook", Some(ROTATED)) == 200).then_some(()))
        .unwrap_or_else(|| panic!("the rotated token was not taken\n{}", sys.logs()));
    assert_eq!(call("/hook", Some(TOKEN)), 401);
}

/// `sluice dev` takes a Function's `secretKeyRef` env from the Secret manifests beside it, as
/// the operator takes it from the namespace; a changed Secret reloads the Function.
#[test]
fn dev_reads_function_env_from_secret_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let trigger = sluice_tests::tester_trigger("env", "com.example.env", &[]);
    sluice_tests::tester_manifests(&dir, &trigger);
    let function = std::fs::read_to_string(dir.join("function.yaml")).unwrap()
        + "  env:\n    - name: GREETING\n      valueFrom: { secretKeyRef: { name: app-secrets, key: greeting } }\n";
    std::fs::write(dir.join("function.yaml"), function).unwrap();
    let write_secret = |greeting: &str| {
        std::fs::write(
            dir.join("secrets.yaml"),
            secret("app-secrets", false, &[("greeting", greeting)]),
        )
        .unwrap()
    };
    write_secret("hello from a Secret");
    let sys = sluice_tests::sluice::System::start(
        Backend::Embedded,
        &dir,
        &tmp.path().join("data"),
        "e2e/tester",
    );
    let greeting_of = |id: &str| {
        let event = json!({"specversion": "1.0", "id": id, "source": "/e2e",
            "type": "com.example.env", "data": {"env": "GREETING"}});
        let (status, _) = sys.post_batch(&[event]);
        assert_eq!(status, 202);
        wait_for(20, || {
            sys.events("default")
                .into_iter()
                .find(|e| e["type"] == "com.example.done" && e["data"]["of"] == id)
        })
        .unwrap_or_else(|| panic!("{id} not handled\n{}", sys.logs()))["data"]["env"]
            .clone()
    };
    assert_eq!(greeting_of("g-1"), "hello from a Secret");
    write_secret("hello again");
    let mut n = 1;
    let changed = wait_for(20, || {
        n += 1;
        let g = greeting_of(&format!("g-{n}"));
        (g == "hello again").then_some(g)
    });
    assert!(
        changed.is_some(),
        "the changed Secret reached the Function\n{}",
        sys.logs()
    );
}
