//! `sluice operator` runs the Kubernetes operator (the same program as `sluice-operator`);
//! `sluice module fetch` is what a worker pod's init container runs: download a module by URL
//! or OCI reference, verify its SHA-256, and write it where the worker loads it.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};
use sluice_operator::module::{FetchSource, fetch};

pub use sluice_operator::Config as OperatorArgs;

pub fn run_operator(config: OperatorArgs) -> anyhow::Result<i32> {
    sluice_operator::run::main_with(config)?;
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum Module {
    /// Download a module, verify its digest, write it atomically.
    Fetch(FetchArgs),
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
    /// Keep retrying network failures this long (seconds).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

pub fn run_module(cmd: Module) -> anyhow::Result<i32> {
    let Module::Fetch(args) = cmd;
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
    match runtime.block_on(fetch(
        &source,
        &args.sha256,
        &args.out,
        &args.oci_plain_http,
        deadline,
    )) {
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
