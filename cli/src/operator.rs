//! `sluice operator` runs the Kubernetes operator (the same program as `sluice-operator`);
//! `sluice module fetch` is what a worker pod's init container runs: download a module by URL
//! or OCI reference, verify its SHA-256, and write it where the worker loads it.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};
use sluice_operator::module::{FetchSource, fetch};

use crate::progress::Progress;

pub use sluice_operator::Config as OperatorArgs;

pub fn run_operator(config: OperatorArgs) -> anyhow::Result<i32> {
    sluice_operator::run::main_with(config)?;
    Ok(0)
}

/// `sluice uninstall`: what the chart's pre-delete hook runs.
#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// NATS JetStream the release used.
    #[arg(
        long = "nats",
        env = "SLUICE_NATS_URL",
        default_value = "nats://nats:4222"
    )]
    pub nats_url: String,
    /// NATS credentials file.
    #[arg(long = "nats-creds", env = "SLUICE_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// Keep the buses, dead letters and route buckets in JetStream.
    #[arg(long)]
    pub keep_streams: bool,
    /// Seconds the operator gets to finalize Triggers before this command does.
    #[arg(long, default_value_t = 30)]
    pub finalize_wait_secs: u64,
    /// The route table's key-value bucket.
    #[arg(long, env = "SLUICE_ROUTES_BUCKET", default_value = sluice_api::jetstream::ROUTES_BUCKET)]
    pub routes_bucket: String,
}

/// Deletes every Function and Trigger (and, unless kept, Sluice's JetStream streams).
pub fn run_uninstall(args: UninstallArgs) -> anyhow::Result<i32> {
    crate::dev::init_logging();
    let opts = sluice_operator::uninstall::Options {
        nats_url: args.nats_url,
        nats_creds: args.nats_creds,
        keep_streams: args.keep_streams,
        finalize_wait: Duration::from_secs(args.finalize_wait_secs),
        routes_bucket: args.routes_bucket,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(sluice_operator::uninstall::run(opts))?;
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum Module {
    /// Download a module, verify its digest, write it atomically.
    Fetch(FetchArgs),
    /// Push a .wasm file to an OCI registry as a Wasm artifact (for `spec.module.oci`).
    Push(PushArgs),
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The .wasm file.
    pub file: PathBuf,
    /// Where to push it: registry/repository:tag.
    #[arg(long)]
    pub oci: String,
    /// OCI registries spoken to over plain HTTP. Repeatable.
    #[arg(long = "oci-plain-http", value_name = "REGISTRY")]
    pub oci_plain_http: Vec<String>,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// HTTP(S) address of the .wasm file.
    #[arg(long, required_unless_present = "oci", conflicts_with = "oci")]
    pub url: Option<String>,
    /// OCI reference of a Wasm artifact (best pinned: registry/repo@sha256:…).
    #[arg(long)]
    pub oci: Option<String>,
    /// Hex SHA-256 the module must have.
    #[arg(long)]
    pub sha256: String,
    /// Where to write the module.
    #[arg(long)]
    pub out: PathBuf,
    /// OCI registries spoken to over plain HTTP. Repeatable.
    #[arg(long = "oci-plain-http", value_name = "REGISTRY")]
    pub oci_plain_http: Vec<String>,
    /// A host modules may come from although it is a loopback or link-local address (those
    /// are refused by default, as are redirects to another scheme). Repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Keep retrying network failures this long (seconds).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

fn push(args: PushArgs) -> anyhow::Result<i32> {
    let wasm =
        std::fs::read(&args.file).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    anyhow::ensure!(
        wasm.starts_with(b"\0asm"),
        "{}: not a WebAssembly module or component (no \\0asm header)",
        args.file.display()
    );
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(sluice_operator::module::push_oci(
        &args.oci,
        wasm,
        &args.oci_plain_http,
    )) {
        Ok(url) => {
            println!("pushed {} to {url}", args.file.display());
            println!("sha256: {sha}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("sluice module push: {} ({})", e.message, e.reason);
            Ok(1)
        }
    }
}

pub fn run_module(cmd: Module) -> anyhow::Result<i32> {
    let args = match cmd {
        Module::Fetch(args) => args,
        Module::Push(args) => return push(args),
    };
    sluice_operator::install_crypto_provider();
    let source = match (args.url, args.oci) {
        (Some(url), _) => FetchSource::Url(url),
        (None, Some(r)) => FetchSource::Oci(r),
        (None, None) => anyhow::bail!("one of --url or --oci is required"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Duration::from_secs(args.timeout_secs);
    let mut progress = Progress::new("module fetch", None);
    let what = match &source {
        FetchSource::Url(u) => format!("downloading {u}"),
        FetchSource::Oci(r) => format!("pulling {r}"),
    };
    progress.update(0, &what);
    let fetched = runtime.block_on(fetch(
        &source,
        &args.sha256,
        &args.out,
        &args.oci_plain_http,
        &args.allow_hosts,
        deadline,
    ));
    progress.finish(if fetched.is_ok() { "done" } else { "failed" });
    match fetched {
        Ok(bytes) => {
            eprintln!(
                "wrote {} ({bytes} bytes, sha256 {})",
                args.out.display(),
                args.sha256
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("sluice module fetch: {} ({})", e.message, e.reason);
            Ok(1)
        }
    }
}
