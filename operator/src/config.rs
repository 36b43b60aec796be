//! The operator's command line (`sluice-operator --help`, also `sluice operator`) and the
//! settings the builders read from it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};

/// The image workers run unless `--image` says otherwise: the release matching this operator.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/sluice-dev/sluice:", env!("CARGO_PKG_VERSION"));

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sluice-operator",
    version,
    about = "Reconcile Sluice Functions and Triggers and scale workers by queue depth"
)]
pub struct Config {
    /// Namespace the operator runs in: the routes ConfigMap and the leader Lease live there.
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice")]
    pub namespace: String,
    /// Sluice image of the worker pods (and of their module-fetching init container).
    #[arg(long, env = "SLUICE_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// imagePullPolicy of the worker pods; omitted: Kubernetes' default for the tag.
    #[arg(long, env = "SLUICE_IMAGE_PULL_POLICY")]
    pub image_pull_policy: Option<String>,
    /// NATS server the workers (and the operator, for queue depth) connect to.
    #[arg(
        long = "nats",
        env = "SLUICE_NATS_URL",
        default_value = "nats://nats:4222"
    )]
    pub nats_url: String,
    /// NATS credentials file the operator itself connects with.
    #[arg(long, env = "SLUICE_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Secret (key `creds`, in each Function's namespace) mounted into workers as their NATS
    /// credentials, passed as `--nats-creds /etc/sluice/nats/creds`.
    #[arg(long, env = "SLUICE_NATS_CREDS_SECRET")]
    pub nats_creds_secret: Option<String>,
    /// Address of `/metrics` and `/healthz`.
    #[arg(long, env = "SLUICE_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// How often the autoscaler reads queue depth and decides replicas (per Trigger each
    /// time: its bus stream's info and a listing of that stream's consumers).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub scale_interval: Duration,
    /// Run controllers only while holding the Lease (turn off for a single local replica).
    #[arg(long, env = "SLUICE_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the coordination.k8s.io/v1 Lease in `--namespace`.
    #[arg(long, default_value = "sluice-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease; defaults to the host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// JetStream key-value bucket the route table is published in. Every publisher follows it
    /// with `--routes-bucket` (routers and ingress from the chart, workers from their
    /// Deployments) and matches the events it publishes against it.
    #[arg(long, env = "SLUICE_ROUTES_BUCKET", default_value = sluice_api::jetstream::ROUTES_BUCKET)]
    pub routes_bucket: String,
    /// OCI registries spoken to over plain HTTP (a local test registry, say). Repeatable.
    #[arg(long = "oci-plain-http", value_name = "REGISTRY")]
    pub oci_plain_http: Vec<String>,
    /// A host `spec.module` may name although it is a loopback or link-local address (refused
    /// by default, so a Function cannot make the operator or a worker reach its node's
    /// services or the cloud metadata address). Repeatable.
    #[arg(long = "module-allow-host", value_name = "HOST")]
    pub module_allow_hosts: Vec<String>,
    /// A NetworkPolicy for each Function's workers, as JSON `{"http": [PEER…], "metrics":
    /// [PEER…]}` (NetworkPolicyPeer objects; an empty list means from anywhere): who may reach
    /// the port of workers serving HTTP Triggers, and of the others (health and metrics only).
    /// Omitted: the operator makes none.
    #[arg(long = "worker-network-policy", value_name = "JSON", value_parser = parse_worker_policy)]
    pub worker_network_policy: Option<WorkerPolicy>,
}

/// Who may reach a Function's workers (`--worker-network-policy`).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerPolicy {
    /// Callers of HTTP Triggers (the workers' port serves them and metrics).
    #[serde(default)]
    pub http: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
    /// Scrapers of the metrics of workers without HTTP Triggers.
    #[serde(default)]
    pub metrics: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

fn parse_worker_policy(s: &str) -> Result<WorkerPolicy, String> {
    serde_json::from_str(s).map_err(|e| format!("not {{\"http\": [...], \"metrics\": [...]}}: {e}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<sluice_api::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

/// What the child builders need, independent of the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub namespace: String,
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub nats_url: String,
    pub nats_creds_secret: Option<String>,
    pub oci_plain_http: Vec<String>,
    /// Hosts modules may come from although loopback or link-local (`--module-allow-host`).
    pub module_allow_hosts: Vec<String>,
    /// The route table workers follow (`--routes-bucket`): they publish replies and dead
    /// letters, and a publisher stores each event once per Trigger it matches.
    pub routes_bucket: String,
    /// A NetworkPolicy per Function's workers (`--worker-network-policy`).
    pub worker_network_policy: Option<WorkerPolicy>,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Self {
            namespace: c.namespace.clone(),
            image: c.image.clone(),
            image_pull_policy: c.image_pull_policy.clone(),
            nats_url: c.nats_url.clone(),
            nats_creds_secret: c.nats_creds_secret.clone(),
            oci_plain_http: c.oci_plain_http.clone(),
            module_allow_hosts: c.module_allow_hosts.clone(),
            routes_bucket: c.routes_bucket.clone(),
            worker_network_policy: c.worker_network_policy.clone(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "sluice".into(),
            image: DEFAULT_IMAGE.into(),
            image_pull_policy: None,
            nats_url: "nats://nats:4222".into(),
            nats_creds_secret: None,
            oci_plain_http: Vec::new(),
            module_allow_hosts: Vec::new(),
            routes_bucket: sluice_api::jetstream::ROUTES_BUCKET.into(),
            worker_network_policy: None,
        }
    }
}
