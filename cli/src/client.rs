//! A small HTTP/1 client for the commands that talk to a running Sluice (`publish`, `tail`,
//! `dlq`). Plain `http://` only: the dev server and in-cluster ingress speak it; put a TLS
//! proxy in front for anything else.

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, body::Bytes};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// Where a running Sluice answers (`sluice dev`, or a cluster's ingress) and the token it asks
/// for: the flags of every command that talks to one.
#[derive(clap::Args, Debug, Clone)]
pub struct Server {
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SLUICE_URL")]
    pub url: String,
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `base` + `path` and reads the whole response.
pub async fn send(
    method: Method,
    base: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> anyhow::Result<Response> {
    let base = base.trim_end_matches('/');
    if !base.starts_with("http://") {
        bail!("--url {base}: only http:// is supported; put a TLS proxy in front for https");
    }
    let uri = format!("{base}{path}");
    let mut req = Request::builder().method(method).uri(&uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("building request to {uri}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.with_context(|| {
        format!(
            "cannot reach {uri}: is `sluice dev` running there, or, on a cluster, \
                 `kubectl -n sluice port-forward svc/sluice-ingress 8080:80`?"
        )
    })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of {uri}"))?
        .to_bytes();
    Ok(Response {
        status,
        headers,
        body,
    })
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
