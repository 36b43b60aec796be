//! Module resolution and `sluice module fetch` against local servers: an HTTP file server and
//! a minimal OCI distribution registry (the three endpoints a pull uses).

use std::time::Duration;

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_operator::module::{FetchSource, NetGuard, download, fetch, resolve_oci};

const MODULE: &[u8] = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

fn registry() -> Router {
    let config = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v1+json", "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.wasm.content.layer.v1+wasm", "digest": format!("sha256:{}", sha(MODULE)), "size": MODULE.len()}],
    })
    .to_string();
    let manifest_digest = format!("sha256:{}", sha(manifest.as_bytes()));
    Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route(
            "/v2/shop/invoice/manifests/{reference}",
            get(move |Path(_r): Path<String>| {
                let (m, d) = (manifest.clone(), manifest_digest.clone());
                async move {
                    let mut h = HeaderMap::new();
                    h.insert(
                        header::CONTENT_TYPE,
                        "application/vnd.oci.image.manifest.v1+json"
                            .parse()
                            .unwrap(),
                    );
                    h.insert("docker-content-digest", d.parse().unwrap());
                    (h, m)
                }
            }),
        )
        .route(
            "/v2/shop/invoice/blobs/{digest}",
            get(move |Path(d): Path<String>| async move {
                if d == format!("sha256:{}", sha(MODULE)) {
                    MODULE.to_vec().into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
}

#[tokio::test]
async fn url_modules_are_verified_and_written_atomically() {
    sluice_operator::install_crypto_provider();
    let addr = serve(Router::new().route("/m.wasm", get(|| async { MODULE.to_vec() }))).await;
    let url = format!("http://{addr}/m.wasm");
    let http = reqwest::Client::new();
    let local = NetGuard::new(&["127.0.0.1".into()], &[]);
    assert_eq!(
        download(&http, &local, &url, &sha(MODULE)).await.unwrap(),
        MODULE
    );
    let e = download(&http, &local, &url, &"0".repeat(64))
        .await
        .unwrap_err();
    assert_eq!(e.reason, "DigestMismatch");
    assert!(
        e.message.starts_with("spec.module.sha256: "),
        "{}",
        e.message
    );
    let e = download(
        &http,
        &local,
        &format!("http://{addr}/missing"),
        &sha(MODULE),
    )
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.transient), ("DownloadFailed", true));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("module/module.wasm");
    let n = fetch(
        &FetchSource::Url(url.clone()),
        &sha(MODULE),
        &out,
        &[],
        &["127.0.0.1".into()],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(n, MODULE.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), MODULE);
    assert!(!out.with_extension("partial").exists());
}

/// Loopback and link-local module sources are refused unless allowed, by address or by a
/// name resolving there, and a redirect may not change the scheme.
#[tokio::test]
async fn module_sources_on_loopback_or_link_local_and_scheme_changes_are_refused() {
    sluice_operator::install_crypto_provider();
    let addr = serve(
        Router::new()
            .route("/m.wasm", get(|| async { MODULE.to_vec() }))
            .route(
                "/to-https",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, "https://example.invalid/m.wasm")],
                    )
                }),
            ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.wasm");
    let fetch_from = |url: String, allow: Vec<String>| {
        let out = out.clone();
        async move {
            fetch(
                &FetchSource::Url(url),
                &sha(MODULE),
                &out,
                &[],
                &allow,
                Duration::from_secs(1),
            )
            .await
        }
    };
    let port = addr.rsplit_once(':').unwrap().1.to_owned();
    for url in [
        format!("http://{addr}/m.wasm"),
        format!("http://localhost:{port}/m.wasm"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/m.wasm".to_owned(),
    ] {
        let e = fetch_from(url.clone(), Vec::new()).await.unwrap_err();
        assert_eq!(
            (e.reason, e.transient),
            ("ForbiddenAddress", false),
            "{url}: {}",
            e.message
        );
        assert!(e.message.contains("--allow-host"), "{}", e.message);
    }
    assert!(
        fetch_from(format!("http://{addr}/m.wasm"), vec!["127.0.0.1".into()])
            .await
            .is_ok()
    );
    let e = fetch_from(format!("http://{addr}/to-https"), vec!["127.0.0.1".into()])
        .await
        .unwrap_err();
    assert!(
        e.message.contains("redirect to another scheme"),
        "{}",
        e.message
    );
    let e = fetch(
        &FetchSource::Oci(format!("127.0.0.1:{port}/shop/invoice:1.0")),
        &sha(MODULE),
        &out,
        &[],
        &[],
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason, "ForbiddenAddress", "{}", e.message);
}

#[tokio::test]
async fn oci_modules_are_pinned_to_the_manifest_digest_and_pulled() {
    sluice_operator::install_crypto_provider();
    let addr = serve(registry()).await;
    let plain = vec![addr.clone()];
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(plain.clone()),
        ..Default::default()
    });
    let (pinned, layer) = resolve_oci(&client, &format!("{addr}/shop/invoice:1.0"))
        .await
        .unwrap();
    assert_eq!(layer, sha(MODULE));
    assert!(
        pinned.starts_with(&format!("{addr}/shop/invoice@sha256:")),
        "{pinned}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("module.wasm");
    fetch(
        &FetchSource::Oci(pinned.clone()),
        &layer,
        &out,
        &plain,
        &[],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), MODULE);
    let e = fetch(
        &FetchSource::Oci(pinned),
        &"0".repeat(64),
        &out,
        &plain,
        &[],
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason, "DigestMismatch");
}
