//! `sluice dev DIR`: the whole system in one process on the embedded bus.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use sluice_ingress::IngressConfig;
use sluice_process::dev::DevOptions;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of Function and Trigger manifests (searched recursively).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Where the bus and the compiled-module cache live (default: DIR/.sluice).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Require `Authorization: Bearer TOKEN` on writes (also read from SLUICE_TOKEN).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest accepted event in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_event_bytes: usize,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub retention: crate::retention::RetentionArgs,
    /// Open the bus even though a journal segment has damaged bytes with valid records after
    /// them (the start refuses and names them otherwise): read on past the damage, logging
    /// each skipped range. What was recorded in those bytes is lost.
    #[arg(long)]
    pub journal_skip_damaged: bool,
    /// Free space kept on the data dir's disk: below it, publishing answers 503 and /readyz
    /// fails, while deliveries in progress finish; both recover once space is freed.
    #[arg(long, value_name = "SIZE", default_value = "64Mi")]
    pub disk_reserve: sluice_api::quantity::ByteSize,
}

/// One readable line per delivery: no targets, no span noise; RUST_LOG overrides.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,wasmtime=warn,cranelift=warn,wasmtime_wasi=warn,async_nats=warn",
                )
            }),
        )
        .try_init();
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    init_logging();
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| args.dir.join(".sluice"));
    let opts = DevOptions {
        dir: args.dir,
        addr: args.addr,
        data_dir,
        ingress: IngressConfig {
            token: args.token,
            max_event_bytes: args.max_event_bytes,
            ..IngressConfig::default()
        },
        poll: Duration::from_millis(500),
        retention: args.retention.config()?,
        skip_damaged: args.journal_skip_damaged,
        disk_reserve: args.disk_reserve.bytes(),
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all()
        .build()?
        .block_on(sluice_process::dev::run(opts))?;
    Ok(0)
}
