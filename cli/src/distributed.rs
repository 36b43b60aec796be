//! `sluice router`, `sluice worker`, `sluice ingress`: distributed mode on NATS JetStream.

use std::{net::SocketAddr, path::PathBuf};

use sluice_bus::nats::NatsConfig;
use sluice_ingress::IngressConfig;
use sluice_process::distributed::RouteSource;

use crate::retention::RetentionArgs;

/// Where JetStream is.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL.
    #[arg(
        long = "nats",
        env = "SLUICE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// NATS credentials file (JWT + NKey seed).
    #[arg(long = "nats-creds", env = "SLUICE_NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

impl NatsArgs {
    fn config(&self) -> anyhow::Result<NatsConfig> {
        Ok(NatsConfig {
            credentials: self.creds.clone(),
            retention: self.retention.config()?,
            enforce_retention: !self.retention.retention.is_empty(),
            ..NatsConfig::new(self.url.clone())
        })
    }
}

/// The bearer token every write and admin call on this process's HTTP port must carry.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TokenArgs {
    /// Require `Authorization: Bearer TOKEN` on writes and admin calls (also read from
    /// SLUICE_TOKEN); /healthz, /readyz and /metrics stay open.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from this file (a mounted Secret).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    fn token(&self) -> anyhow::Result<Option<String>> {
        Ok(match &self.token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => self.token.clone(),
        })
    }
}

/// Where a publisher's route table comes from.
#[derive(clap::Args, Debug)]
pub struct RoutesArgs {
    /// Directory of Trigger manifests (searched recursively, re-read on change).
    #[arg(long, value_name = "DIR", required_unless_present = "routes_bucket")]
    pub manifests: Option<PathBuf>,
    /// Follow the route table the operator publishes in this JetStream key-value bucket
    /// (`sluice_routes` on a cluster) instead of a directory, acknowledging each revision.
    #[arg(long, value_name = "BUCKET", conflicts_with = "manifests")]
    pub routes_bucket: Option<String>,
    /// This process's name in its acknowledgements (default: the host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

impl RoutesArgs {
    fn source(self, what: &str) -> anyhow::Result<RouteSource> {
        route_source(self.routes_bucket, self.manifests, self.identity, what)
    }
}

fn route_source(
    bucket: Option<String>,
    dir: Option<PathBuf>,
    identity: Option<String>,
    what: &str,
) -> anyhow::Result<RouteSource> {
    Ok(match (bucket, dir) {
        (Some(bucket), _) => RouteSource::Bucket {
            bucket,
            identity: identity.unwrap_or_else(default_identity),
        },
        (None, Some(dir)) => RouteSource::Dir(dir),
        (None, None) => anyhow::bail!("{what}: give --manifests DIR or --routes-bucket BUCKET"),
    })
}

#[derive(clap::Args, Debug)]
pub struct RouterArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub routes: RoutesArgs,
    /// Serve /healthz, /readyz and /metrics here (nothing else: a router's port takes no
    /// events and no admin calls, so it needs no token).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the bridges' `credentialsSecret`s are read: `manifests` (v1 Secrets among
    /// --manifests), `kubernetes` (the API, with the pod's service account), `none`, or a
    /// directory of mounted Secrets (DIR/NAME/KEY).
    #[arg(long, default_value = "manifests", value_name = "SOURCE")]
    pub secrets: String,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The Function to run, NAMESPACE/NAME.
    #[arg(long)]
    pub function: String,
    /// Directory holding the Function's manifest and its Triggers (re-read on change); also
    /// the route table replies are routed with, unless --routes-bucket is given.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Route replies and dead letters with the table the operator publishes in this
    /// key-value bucket (every Trigger of the cluster), acknowledging each revision.
    #[arg(long, value_name = "BUCKET")]
    pub routes_bucket: Option<String>,
    /// This worker's name in its acknowledgements (default: the host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Serve HTTP-source Triggers (/fn/...), /healthz, /readyz and /metrics here.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Compiled-module cache.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub auth: TokenArgs,
    /// Where the HTTP Triggers' `tokenSecret`s are read: `manifests` (v1 Secrets among
    /// --manifests), or a directory of mounted Secrets (DIR/NAME/KEY), as the operator
    /// mounts them.
    #[arg(long, default_value = "manifests", value_name = "SOURCE")]
    pub secrets: String,
}

#[derive(clap::Args, Debug)]
pub struct IngressArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub routes: RoutesArgs,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub auth: TokenArgs,
    /// Largest accepted event in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_event_bytes: usize,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    crate::dev::init_logging();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn router(args: RouterArgs) -> anyhow::Result<i32> {
    let source = args.routes.source("sluice router")?;
    runtime()?.block_on(sluice_process::distributed::run_router(
        args.nats.config()?,
        source,
        args.listen,
        crate::secrets::parse(&args.secrets)?,
    ))?;
    Ok(0)
}

/// A name unique among a cluster's publishers: the host name (a pod's name) and process id.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "router".into());
    format!("{host}-{}", std::process::id())
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<i32> {
    let routes = route_source(
        args.routes_bucket,
        Some(args.manifests.clone()),
        args.identity,
        "sluice worker",
    )?;
    runtime()?.block_on(sluice_process::distributed::run_worker_process(
        sluice_process::distributed::WorkerOptions {
            nats: args.nats.config()?,
            function: args.function,
            manifests: args.manifests,
            routes,
            listen: args.listen,
            cache_dir: args.cache_dir,
            token: args.auth.token()?,
            secrets: crate::secrets::parse(&args.secrets)?,
        },
    ))?;
    Ok(0)
}

pub fn ingress(args: IngressArgs) -> anyhow::Result<i32> {
    let routes = args.routes.source("sluice ingress")?;
    let cfg = IngressConfig {
        token: args.auth.token()?,
        max_event_bytes: args.max_event_bytes,
        ..IngressConfig::default()
    };
    runtime()?.block_on(sluice_process::distributed::run_ingress(
        args.nats.config()?,
        routes,
        args.listen,
        cfg,
    ))?;
    Ok(0)
}
