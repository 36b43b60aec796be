//! Module resolution: turns `spec.module` into a verified SHA-256 and the way a worker pod gets
//! the bytes (a ConfigMap volume, or an init container running `sluice module fetch`). The
//! same download-and-verify code runs in that init container, so the digest the operator
//! pinned is the digest the worker loads.

use std::{
    collections::HashSet,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use oci_client::{
    Reference,
    client::{ClientConfig, ClientProtocol},
    manifest::OciManifest,
    secrets::RegistryAuth,
};
use sha2::{Digest, Sha256};
use sluice_api::{Function, function::ModuleSource};

/// Where the module lands in a worker pod.
pub const MODULE_DIR: &str = "/var/run/sluice/module";
pub const MODULE_FILE: &str = "module.wasm";
pub const MODULE_PATH: &str = "/var/run/sluice/module/module.wasm";

/// Modules larger than this are refused rather than buffered (wasm32 code is far smaller).
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

/// Layer media types accepted as "the Wasm module" of an OCI artifact.
pub const WASM_MEDIA_TYPES: [&str; 3] = [
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];

/// How a worker pod receives the module bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Mount key `key` of ConfigMap `name` (same namespace) as the module file.
    ConfigMap { name: String, key: String },
    /// An init container downloads the URL and verifies the digest.
    Url(String),
    /// An init container pulls this reference, pinned to a manifest digest.
    Oci(String),
}

/// A module whose digest is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedModule {
    /// Lowercase hex SHA-256 of the module bytes.
    pub sha256: String,
    pub delivery: Delivery,
}

impl ResolvedModule {
    /// `sha256:<hex>`, as `status.digest` shows it.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.sha256)
    }

    /// Where the module came from, for the `ModuleResolved` condition message.
    pub fn origin(&self) -> String {
        match &self.delivery {
            Delivery::ConfigMap { name, key } => format!("ConfigMap {name} key {key}"),
            Delivery::Url(url) => url.clone(),
            Delivery::Oci(r) => r.clone(),
        }
    }
}

/// Why a module could not be resolved: the condition reason and a message naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModuleError {
    pub reason: &'static str,
    pub message: String,
    /// Worth retrying soon (network, a ConfigMap not created yet) rather than on change.
    pub transient: bool,
}

impl ModuleError {
    fn new(reason: &'static str, message: impl Into<String>, transient: bool) -> Self {
        Self {
            reason,
            message: message.into(),
            transient,
        }
    }
}

/// Resolves modules, remembering verified `(url, sha256)` pairs so a URL is downloaded once.
pub struct Resolver {
    http: reqwest::Client,
    oci: oci_client::Client,
    /// Hosts allowed although they are loopback or link-local (see [`NetGuard`]).
    guard: NetGuard,
    verified_urls: Mutex<HashSet<(String, String)>>,
}

impl Resolver {
    pub fn new(oci_plain_http: &[String], allow_hosts: &[String]) -> Self {
        let guard = NetGuard::new(allow_hosts, oci_plain_http);
        Self {
            http: http_client(&guard),
            oci: oci_client(oci_plain_http),
            guard,
            verified_urls: Mutex::default(),
        }
    }

    /// Resolves `f.spec.module`; `client` reads ConfigMaps in the Function's namespace.
    pub async fn resolve(
        &self,
        client: &Client,
        f: &Function,
    ) -> Result<ResolvedModule, ModuleError> {
        let m = &f.spec.module;
        let ns = f.metadata.namespace.as_deref().unwrap_or("default");
        match m {
            ModuleSource {
                url: Some(url),
                sha256: Some(sha),
                ..
            } => {
                let key = (url.clone(), sha.clone());
                let known = self
                    .verified_urls
                    .lock()
                    .map(|v| v.contains(&key))
                    .unwrap_or(false);
                if !known {
                    download(&self.http, &self.guard, url, sha).await?;
                    if let Ok(mut v) = self.verified_urls.lock() {
                        v.insert(key);
                    }
                }
                Ok(ResolvedModule {
                    sha256: sha.clone(),
                    delivery: Delivery::Url(url.clone()),
                })
            }
            ModuleSource {
                config_map: Some(cm),
                ..
            } => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
                let found = api.get_opt(&cm.name).await.map_err(|e| {
                    ModuleError::new(
                        "ConfigMapUnreadable",
                        format!(
                            "spec.module.configMap: reading ConfigMap {ns}/{}: {e}",
                            cm.name
                        ),
                        true,
                    )
                })?;
                let Some(found) = found else {
                    return Err(ModuleError::new(
                        "ConfigMapNotFound",
                        format!(
                            "spec.module.configMap.name: ConfigMap {ns}/{} does not exist",
                            cm.name
                        ),
                        true,
                    ));
                };
                // binaryData normally; data too, since kubectl puts a module that happens to be
                // valid UTF-8 there, and the ConfigMap volume projects either.
                let bytes = found
                    .binary_data
                    .as_ref()
                    .and_then(|d| d.get(&cm.key))
                    .map(|b| b.0.clone())
                    .or_else(|| {
                        found
                            .data
                            .as_ref()
                            .and_then(|d| d.get(&cm.key))
                            .map(|s| s.clone().into_bytes())
                    });
                let Some(bytes) = bytes else {
                    return Err(ModuleError::new(
                        "ConfigMapKeyNotFound",
                        format!(
                            "spec.module.configMap.key: ConfigMap {ns}/{} has no key {:?} in binaryData or data",
                            cm.name, cm.key
                        ),
                        true,
                    ));
                };
                Ok(ResolvedModule {
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    delivery: Delivery::ConfigMap {
                        name: cm.name.clone(),
                        key: cm.key.clone(),
                    },
                })
            }
            ModuleSource {
                oci: Some(reference),
                ..
            } => {
                check_registry(&self.guard, reference).await?;
                let (pinned, layer_sha) = resolve_oci(&self.oci, reference).await?;
                Ok(ResolvedModule {
                    sha256: layer_sha,
                    delivery: Delivery::Oci(pinned),
                })
            }
            ModuleSource { path: Some(_), .. } => Err(ModuleError::new(
                "UnsupportedSource",
                "spec.module.path: only `sluice dev` reads files; in a cluster use url (with sha256), oci or configMap",
                false,
            )),
            _ => Err(ModuleError::new(
                "InvalidSource",
                "spec.module: exactly one of url (with sha256), oci, configMap is required",
                false,
            )),
        }
    }
}

/// Where modules may be fetched from. Loopback, link-local (the cloud metadata service at
/// 169.254.169.254), unspecified and multicast addresses are refused unless their host is
/// allowed (`--allow-host`, and the registries given as plain-HTTP ones): a Function's
/// `spec.module.url` must not make the operator or a worker pod reach their own node's
/// services. Private ranges are allowed: in-cluster registries and file servers live there.
#[derive(Clone, Debug, Default)]
pub struct NetGuard {
    allowed: Vec<String>,
}

impl NetGuard {
    pub fn new(allow_hosts: &[String], plain_http: &[String]) -> Self {
        Self {
            allowed: allow_hosts
                .iter()
                .chain(plain_http)
                .map(|h| host_and_port(h).0)
                .collect(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        self.allowed.contains(&host_and_port(host).0)
    }

    /// Refuses `host` when it is, or resolves only to, an address modules may not come from.
    pub async fn check(&self, host: &str, port: u16) -> Result<(), String> {
        if self.allows(host) {
            return Ok(());
        }
        let bare = host_and_port(host).0;
        let bare = bare.as_str();
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return refuse_internal(host, ip);
        }
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect();
        match addrs.iter().find(|a| !internal(a.ip())) {
            Some(_) => Ok(()),
            None => refuse_internal(
                host,
                addrs
                    .first()
                    .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
            ),
        }
    }
}

/// `host[:port]` (an IPv6 address in brackets when a port follows) → the bare, lowercase host
/// and the port.
fn host_and_port(s: &str) -> (String, Option<u16>) {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if (!h.contains(':') || h.ends_with(']')) && p.parse::<u16>().is_ok() => {
            (h, p.parse().ok())
        }
        _ => (s, None),
    };
    (host.trim_matches(['[', ']']).to_ascii_lowercase(), port)
}

/// Loopback, link-local, unspecified or multicast.
pub fn internal(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| internal(IpAddr::V4(v4)))
        }
    }
}

fn refuse_internal(host: &str, ip: std::net::IpAddr) -> Result<(), String> {
    if internal(ip) {
        Err(format!(
            "{host} is {ip}, a loopback or link-local address modules may not come from \
             (allow it with --allow-host {host})"
        ))
    } else {
        Ok(())
    }
}

fn http_client(guard: &NetGuard) -> reqwest::Client {
    crate::install_crypto_provider();
    let guard = guard.clone();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("sluice-operator/", env!("CARGO_PKG_VERSION")))
        // At most 5 redirects, never to another scheme (an https URL must not be served over
        // plain HTTP) nor to a refused address written as an IP.
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let first = attempt.previous().first().map(|u| u.scheme().to_owned());
            let to = attempt.url();
            if attempt.previous().len() >= 5 {
                return attempt.error("more than 5 redirects");
            }
            if first.as_deref().is_some_and(|s| s != to.scheme()) {
                let msg = format!("redirect to another scheme: {to}");
                return attempt.error(msg);
            }
            let literal = to.host_str().and_then(|h| {
                h.trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .ok()
            });
            if let Some(ip) = literal
                && internal(ip)
                && !guard.allows(to.host_str().unwrap_or_default())
            {
                let msg = format!("redirect to {ip}, a loopback or link-local address");
                return attempt.error(msg);
            }
            attempt.follow()
        }))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn oci_client(plain_http: &[String]) -> oci_client::Client {
    crate::install_crypto_provider();
    let protocol = if plain_http.is_empty() {
        ClientProtocol::Https
    } else {
        ClientProtocol::HttpsExcept(plain_http.to_vec())
    };
    oci_client::Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
}

/// Downloads `url`, refusing anything over [`MAX_MODULE_BYTES`] or whose SHA-256 is not `sha`.
pub async fn download(
    http: &reqwest::Client,
    guard: &NetGuard,
    url: &str,
    sha: &str,
) -> Result<Vec<u8>, ModuleError> {
    let fail = |reason, msg: String, transient| ModuleError::new(reason, msg, transient);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| fail("InvalidUrl", format!("spec.module.url: {url}: {e}"), false))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(fail(
            "InvalidUrl",
            format!("spec.module.url: {url}: only http and https"),
            false,
        ));
    }
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port_or_known_default().unwrap_or(443);
    // Resolved addresses are checked here; an address reached through DNS rebinding after
    // this check is the gap left (NetworkPolicies close it on a cluster).
    guard
        .check(host, port)
        .await
        .map_err(|e| fail("ForbiddenAddress", format!("spec.module.url: {e}"), false))?;
    let mut resp = http.get(url).send().await.map_err(|e| {
        // The reason sits in the error's sources (a refused redirect says why there).
        let mut msg = format!("spec.module.url: GET {url}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        if e.is_redirect() {
            fail("ForbiddenRedirect", msg, false)
        } else {
            fail("DownloadFailed", msg, true)
        }
    })?;
    if !resp.status().is_success() {
        return Err(fail(
            "DownloadFailed",
            format!("spec.module.url: GET {url}: HTTP {}", resp.status()),
            true,
        ));
    }
    let mut body = Vec::new();
    let mut hasher = Sha256::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        fail(
            "DownloadFailed",
            format!("spec.module.url: GET {url}: {e}"),
            true,
        )
    })? {
        if (body.len() + chunk.len()) as u64 > MAX_MODULE_BYTES {
            return Err(fail(
                "ModuleTooLarge",
                format!("spec.module.url: {url} is larger than {MAX_MODULE_BYTES} bytes"),
                false,
            ));
        }
        hasher.update(&chunk);
        body.extend_from_slice(&chunk);
    }
    let got = hex::encode(hasher.finalize());
    if got != sha {
        return Err(fail(
            "DigestMismatch",
            format!("spec.module.sha256: {url} has sha256 {got}, the manifest pins {sha}"),
            false,
        ));
    }
    Ok(body)
}

/// Refuses an OCI reference whose registry is a loopback or link-local address (see
/// [`NetGuard`]).
async fn check_registry(guard: &NetGuard, reference: &str) -> Result<(), ModuleError> {
    let r = parse_reference(reference)?;
    let (host, port) = host_and_port(r.resolve_registry());
    guard
        .check(&host, port.unwrap_or(443))
        .await
        .map_err(|e| ModuleError::new("ForbiddenAddress", format!("spec.module.oci: {e}"), false))
}

fn parse_reference(reference: &str) -> Result<Reference, ModuleError> {
    reference.parse::<Reference>().map_err(|e| {
        ModuleError::new(
            "InvalidReference",
            format!("spec.module.oci: {reference:?}: {e}"),
            false,
        )
    })
}

/// Resolves an OCI reference to `(registry/repository@<manifest digest>, <module sha256 hex>)`
/// from the manifest alone: the Wasm layer's descriptor carries the module's digest.
pub async fn resolve_oci(
    client: &oci_client::Client,
    reference: &str,
) -> Result<(String, String), ModuleError> {
    let r = parse_reference(reference)?;
    let (manifest, manifest_digest) = client
        .pull_manifest(&r, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| {
            ModuleError::new(
                "PullFailed",
                format!("spec.module.oci: pulling the manifest of {reference}: {e}"),
                true,
            )
        })?;
    let layer = wasm_layer(&manifest, reference)?;
    let sha = layer_sha256(&layer.digest, reference)?;
    let pinned = format!("{}/{}@{}", r.registry(), r.repository(), manifest_digest);
    Ok((pinned, sha))
}

fn wasm_layer(
    manifest: &OciManifest,
    reference: &str,
) -> Result<oci_client::manifest::OciDescriptor, ModuleError> {
    let OciManifest::Image(image) = manifest else {
        return Err(ModuleError::new(
            "NotAWasmArtifact",
            format!(
                "spec.module.oci: {reference} is an image index; push a single Wasm artifact (application/vnd.wasm.content.layer.v1+wasm)"
            ),
            false,
        ));
    };
    let wasm: Vec<_> = image
        .layers
        .iter()
        .filter(|l| WASM_MEDIA_TYPES.contains(&l.media_type.as_str()))
        .collect();
    match wasm.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(ModuleError::new(
            "NotAWasmArtifact",
            format!(
                "spec.module.oci: {reference} must have exactly one layer of type {}, found {}",
                WASM_MEDIA_TYPES[0],
                wasm.len()
            ),
            false,
        )),
    }
}

fn layer_sha256(digest: &str, reference: &str) -> Result<String, ModuleError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64)
        .map(str::to_owned)
        .ok_or_else(|| {
            ModuleError::new(
                "NotAWasmArtifact",
                format!("spec.module.oci: {reference}: layer digest {digest:?} is not sha256"),
                false,
            )
        })
}

/// Pushes `wasm` to `reference` as a Wasm OCI artifact (one layer of type
/// `application/vnd.wasm.content.layer.v1+wasm`, the layout `wkg oci push` and
/// `wasm-to-oci` write, and what [`pull_oci`] accepts); returns the manifest URL. Anonymous:
/// log in to a registry that wants credentials with its own tool.
pub async fn push_oci(
    reference: &str,
    wasm: Vec<u8>,
    oci_plain_http: &[String],
) -> Result<String, ModuleError> {
    let r = parse_reference(reference)?;
    let client = oci_client(oci_plain_http);
    let layer = oci_client::client::ImageLayer::new(
        wasm,
        oci_client::manifest::WASM_LAYER_MEDIA_TYPE.into(),
        None,
    );
    let config = oci_client::client::Config::new(
        b"{}".to_vec(),
        oci_client::manifest::WASM_CONFIG_MEDIA_TYPE.into(),
        None,
    );
    client
        .push(&r, &[layer], config, &RegistryAuth::Anonymous, None)
        .await
        .map(|p| p.manifest_url)
        .map_err(|e| ModuleError::new("PushFailed", format!("pushing {reference}: {e}"), true))
}

/// Pulls the Wasm layer of `reference` and checks it against `sha` (hex).
pub async fn pull_oci(
    client: &oci_client::Client,
    reference: &str,
    sha: &str,
) -> Result<Vec<u8>, ModuleError> {
    let r = parse_reference(reference)?;
    let (manifest, _) = client
        .pull_manifest(&r, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| {
            ModuleError::new(
                "PullFailed",
                format!("pulling the manifest of {reference}: {e}"),
                true,
            )
        })?;
    let layer = wasm_layer(&manifest, reference)?;
    if layer.size < 0 || layer.size as u64 > MAX_MODULE_BYTES {
        return Err(ModuleError::new(
            "ModuleTooLarge",
            format!("{reference}: the Wasm layer is {} bytes", layer.size),
            false,
        ));
    }
    let mut body = Vec::with_capacity(layer.size as usize);
    client.pull_blob(&r, &layer, &mut body).await.map_err(|e| {
        ModuleError::new(
            "PullFailed",
            format!("pulling the Wasm layer of {reference}: {e}"),
            true,
        )
    })?;
    let got = hex::encode(Sha256::digest(&body));
    if got != sha {
        return Err(ModuleError::new(
            "DigestMismatch",
            format!("{reference}: the Wasm layer has sha256 {got}, expected {sha}"),
            false,
        ));
    }
    Ok(body)
}

/// What `sluice module fetch` downloads.
#[derive(Clone, Debug)]
pub enum FetchSource {
    Url(String),
    Oci(String),
}

/// `sluice module fetch`: download, verify against `sha`, write `out` atomically (a temporary
/// file renamed into place, so a worker never sees half a module). Retries transient failures
/// for up to `deadline`, since an init container failing fast only gets restarted anyway.
pub async fn fetch(
    source: &FetchSource,
    sha: &str,
    out: &Path,
    plain_http: &[String],
    allow_hosts: &[String],
    deadline: Duration,
) -> Result<u64, ModuleError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(500);
    let guard = NetGuard::new(allow_hosts, plain_http);
    let bytes = loop {
        let attempt = match source {
            FetchSource::Url(url) => download(&http_client(&guard), &guard, url, sha).await,
            FetchSource::Oci(r) => match check_registry(&guard, r).await {
                Ok(()) => pull_oci(&oci_client(plain_http), r, sha).await,
                Err(e) => Err(e),
            },
        };
        match attempt {
            Ok(b) => break b,
            Err(e) if e.transient && started.elapsed() + delay < deadline => {
                tracing::warn!(error = %e, "module fetch failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    };
    let io = |e: std::io::Error| {
        ModuleError::new(
            "WriteFailed",
            format!("writing {}: {e}", out.display()),
            false,
        )
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let tmp = out.with_extension("partial");
    tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
    tokio::fs::rename(&tmp, out).await.map_err(io)?;
    Ok(bytes.len() as u64)
}
