//! Mocked API tests (controller-rs's ApiServerVerifier): each reconcile path is run against a
//! `tower_test` mock API server that asserts the exact requests, in order, with their bodies.

use std::sync::Arc;

use http::{Method, Request, Response};
use k8s_openapi::{ByteString, api::core::v1::ConfigMap};
use kube::{
    Client,
    client::Body,
    runtime::{
        events::{Recorder, Reporter},
        reflector::{self, Store},
        watcher,
    },
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_api::{Function, Trigger};
use sluice_operator::{Context, Settings, function, metrics::Metrics, module::Resolver, trigger};
use tokio::sync::Notify;
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn function(spec: &str) -> Function {
    serde_yaml::from_str(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {{name: invoice, namespace: shop, uid: u-1, generation: 2, resourceVersion: '5'}}\nspec:\n{spec}"
    ))
    .unwrap()
}

fn trigger_obj(name: &str, spec: &str) -> Trigger {
    serde_yaml::from_str(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: {name}, namespace: shop, uid: t-1, generation: 1}}\nspec:\n  delivery: {{}}\n{spec}"
    ))
    .unwrap()
}

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    // The reader needs its writer alive only for readiness, which is already signalled.
    std::mem::forget(writer);
    reader
}

fn context(functions: Vec<Function>, triggers: Vec<Trigger>) -> (Arc<Context>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice-operator".into(),
                instance: None,
            },
        ),
        client,
        settings: Arc::new(Settings::default()),
        triggers: store(triggers),
        functions: store(functions),
        schemas: store(Vec::new()),
        metrics: Arc::new(Metrics::default()),
        modules: Resolver::new(&[], &["127.0.0.1".into()]),
        queues: None,
        fence: sluice_operator::lease::Fence::open(),
        routes_changed: Arc::new(Notify::new()),
        routes: None,
    };
    (Arc::new(ctx), handle)
}

/// No Deployment yet: the operator GETs it (404), creates it at the Function's initial
/// replicas, then applies the rest.
async fn expect_deployment_created(api: &mut ApiHandle) {
    expect(
        api,
        Method::GET,
        "/apis/apps/v1/namespaces/shop/deployments/sluice-fn-invoice",
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
    .await;
    let created = expect(
        api,
        Method::POST,
        "/apis/apps/v1/namespaces/shop/deployments",
        201,
        json!({}),
    )
    .await;
    assert!(
        created["spec"]["replicas"].is_i64(),
        "created with its initial replicas: {created}"
    );
}

/// Asserts the next request's method and path (query included, when `path` has one) and
/// answers it; returns the request body as JSON (Null when empty).
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
    status: u16,
    reply: Value,
) -> Value {
    let (request, send) = handle.next_request().await.expect("another request");
    assert_eq!(request.method(), method, "{}", request.uri());
    let uri = request.uri().to_string();
    if path.contains('?') {
        assert_eq!(uri, path);
    } else {
        assert_eq!(request.uri().path(), path, "{uri}");
    }
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    body
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

const APPLY: &str = "?&force=true&fieldManager=sluice-operator";

#[tokio::test]
async fn a_function_with_a_configmap_module_applies_its_children_then_status_then_events() {
    let f = function("  module: {configMap: {name: wasm}}\n");
    let (ctx, mut api) = context(vec![f.clone()], vec![]);
    let run = tokio::spawn(function::reconcile(Arc::new(f.clone()), ctx));

    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("wasm".into()),
            ..Default::default()
        },
        binary_data: Some([("module.wasm".to_string(), ByteString(MODULE.to_vec()))].into()),
        ..Default::default()
    };
    expect(
        &mut api,
        Method::GET,
        "/api/v1/namespaces/shop/configmaps/wasm",
        200,
        serde_json::to_value(&cm).unwrap(),
    )
    .await;
    let body = expect(
        &mut api,
        Method::PATCH,
        &format!("/api/v1/namespaces/shop/configmaps/sluice-fn-invoice{APPLY}"),
        200,
        json!({}),
    )
    .await;
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert!(
        body["data"]["manifests.yaml"]
            .as_str()
            .unwrap()
            .contains("path: /var/run/sluice/module/module.wasm")
    );
    expect_deployment_created(&mut api).await;
    let body = expect(
        &mut api,
        Method::PATCH,
        &format!("/apis/apps/v1/namespaces/shop/deployments/sluice-fn-invoice{APPLY}"),
        200,
        json!({}),
    )
    .await;
    assert_eq!(body["kind"], "Deployment");
    assert!(
        body["spec"].get("replicas").is_none(),
        "the autoscaler owns replicas"
    );
    expect(
        &mut api,
        Method::DELETE,
        "/api/v1/namespaces/shop/services/sluice-fn-invoice",
        404,
        not_found(),
    )
    .await;
    let body = expect(
        &mut api,
        Method::PATCH,
        &format!("/apis/sluice.dev/v1alpha1/namespaces/shop/functions/invoice/status{APPLY}"),
        200,
        serde_json::to_value(&f).unwrap(),
    )
    .await;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(MODULE)));
    assert_eq!(body["status"]["digest"], digest);
    assert_eq!(body["status"]["observedGeneration"], 2);
    assert!(
        body["status"].get("replicas").is_none(),
        "replicas belong to the autoscaler's field manager"
    );
    let conds = body["status"]["conditions"].as_array().unwrap();
    assert_eq!(
        conds
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("ModuleResolved", "True"), ("Ready", "True")]
    );
    for reason in ["Resolved", "Reconciled"] {
        let ev = expect(
            &mut api,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/shop/events",
            201,
            json!({}),
        )
        .await;
        assert_eq!(ev["reason"], reason);
        assert_eq!(ev["type"], "Normal");
    }
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_http_trigger_brings_a_service() {
    let f = function("  module: {configMap: {name: wasm}}\n");
    let web = trigger_obj("web", "  source: {http: {path: /i}}\n  function: invoice\n");
    let (ctx, mut api) = context(vec![f.clone()], vec![web]);
    let run = tokio::spawn(function::reconcile(Arc::new(f.clone()), ctx));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "wasm"}, "data": {"module.wasm": "text"}});
    expect(
        &mut api,
        Method::GET,
        "/api/v1/namespaces/shop/configmaps/wasm",
        200,
        cm,
    )
    .await;
    let body = expect(
        &mut api,
        Method::PATCH,
        "/api/v1/namespaces/shop/configmaps/sluice-fn-invoice",
        200,
        json!({}),
    )
    .await;
    assert!(
        body["data"]["manifests.yaml"]
            .as_str()
            .unwrap()
            .contains("name: web")
    );
    expect_deployment_created(&mut api).await;
    expect(
        &mut api,
        Method::PATCH,
        "/apis/apps/v1/namespaces/shop/deployments/sluice-fn-invoice",
        200,
        json!({}),
    )
    .await;
    let svc = expect(
        &mut api,
        Method::PATCH,
        &format!("/api/v1/namespaces/shop/services/sluice-fn-invoice{APPLY}"),
        200,
        json!({}),
    )
    .await;
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/sluice.dev/v1alpha1/namespaces/shop/functions/invoice/status",
        200,
        serde_json::to_value(&f).unwrap(),
    )
    .await;
    assert!(
        status["status"]["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("Service sluice-fn-invoice")
    );
    expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        201,
        json!({}),
    )
    .await;
    expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        201,
        json!({}),
    )
    .await;
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_invalid_function_gets_a_condition_and_a_warning_and_no_children() {
    let f = function("  module: {configMap: {name: wasm}}\n  limits: {memory: 8Gi}\n");
    let (ctx, mut api) = context(vec![f.clone()], vec![]);
    let run = tokio::spawn(function::reconcile(Arc::new(f.clone()), ctx));
    let body = expect(
        &mut api,
        Method::PATCH,
        "/apis/sluice.dev/v1alpha1/namespaces/shop/functions/invoice/status",
        200,
        serde_json::to_value(&f).unwrap(),
    )
    .await;
    let ready = &body["status"]["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("False"), Some("Invalid"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.limits.memory: must be between")
    );
    let ev = expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        201,
        json!({}),
    )
    .await;
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("Invalid"))
    );
    assert!(ev["note"].as_str().unwrap().contains("spec.limits.memory"));
    run.await.unwrap().unwrap();
    assert!(
        api.next_request().await.is_none(),
        "nothing else is touched"
    );
}

#[tokio::test]
async fn a_missing_configmap_is_a_module_condition() {
    let f = function("  module: {configMap: {name: wasm}}\n");
    let (ctx, mut api) = context(vec![f.clone()], vec![]);
    let run = tokio::spawn(function::reconcile(Arc::new(f.clone()), ctx));
    expect(
        &mut api,
        Method::GET,
        "/api/v1/namespaces/shop/configmaps/wasm",
        404,
        not_found(),
    )
    .await;
    let body = expect(
        &mut api,
        Method::PATCH,
        "/apis/sluice.dev/v1alpha1/namespaces/shop/functions/invoice/status",
        200,
        serde_json::to_value(&f).unwrap(),
    )
    .await;
    let reasons: Vec<_> = body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["ConfigMapNotFound", "ModuleNotResolved"]);
    expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        201,
        json!({}),
    )
    .await;
    expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        201,
        json!({}),
    )
    .await;
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_trigger_reports_its_missing_function_and_an_unchanged_status_is_not_rewritten() {
    let t = trigger_obj("paid", "  source: {bus: default}\n  function: invoice\n");
    let (ctx, mut api) = context(vec![], vec![t.clone()]);
    let run = tokio::spawn(trigger::reconcile(Arc::new(t.clone()), ctx.clone()));
    let body = expect(
        &mut api,
        Method::PATCH,
        &format!("/apis/sluice.dev/v1alpha1/namespaces/shop/triggers/paid/status{APPLY}"),
        200,
        serde_json::to_value(&t).unwrap(),
    )
    .await;
    let ready = &body["status"]["conditions"][0];
    assert_eq!(ready["reason"], "FunctionNotFound");
    assert_eq!(
        ready["message"],
        "spec.function: Function shop/invoice does not exist"
    );
    let ev = expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        201,
        json!({}),
    )
    .await;
    assert_eq!(ev["reason"], "FunctionNotFound");
    run.await.unwrap().unwrap();

    // Reconciled again with that status in place: no request at all.
    let mut seen = t.clone();
    seen.status = Some(serde_json::from_value(body["status"].clone()).unwrap());
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        trigger::reconcile(Arc::new(seen), ctx),
    );
    again.await.expect("no request was made").unwrap();
    drop(api);
}

#[tokio::test]
async fn an_invalid_pattern_names_the_field() {
    let t = trigger_obj(
        "paid",
        "  source: {bus: default}\n  function: invoice\n  pattern: {data: {total: [{numeric: ['>']}]}}\n",
    );
    let (ctx, mut api) = context(
        vec![function("  module: {configMap: {name: wasm}}\n")],
        vec![t.clone()],
    );
    let run = tokio::spawn(trigger::reconcile(Arc::new(t.clone()), ctx));
    let body = expect(
        &mut api,
        Method::PATCH,
        "/apis/sluice.dev/v1alpha1/namespaces/shop/triggers/paid/status",
        200,
        serde_json::to_value(&t).unwrap(),
    )
    .await;
    let ready = &body["status"]["conditions"][0];
    assert_eq!(ready["reason"], "InvalidPattern");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.pattern.data.total[0].numeric"),
        "{ready}"
    );
    let ev = expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events",
        201,
        json!({}),
    )
    .await;
    assert_eq!(ev["type"], "Warning");
    run.await.unwrap().unwrap();
}
