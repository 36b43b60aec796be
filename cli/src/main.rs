//! The `sluice` command line, on top of every other crate: each subcommand lives in its own
//! module and returns the process exit code, so `main` stays a dispatcher. This is the one
//! crate that uses `anyhow`: the libraries below return typed errors naming the object and
//! field, and this crate only adds context and prints them.

mod bench;
mod client;
mod crds;
mod dev;
mod distributed;
mod dlq;
mod invoke;
mod operator;
mod progress;
mod project;
mod publish;
mod replay;
mod retention;
mod schema;
mod secrets;
mod tail;
mod test_pattern;
mod trace;
mod validate;

use clap::{Parser, Subcommand};

// Every event is parsed, encoded and copied at several stages by tasks on every core; glibc's
// allocator spent a quarter of the data path's CPU (arena locks, consolidation) in profiles of
// `sluice bench e2e`, mimalloc's thread-local free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Serverless WebAssembly functions driven by events", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Measure the event pattern matcher on JSON-lines corpora (one core).
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Build a handler project: check its toolchain, run build.sh, load the module.
    Build(project::build::Args),
    /// Print the CustomResourceDefinitions generated from the resource types, or write them.
    Crds(crds::Args),
    /// Run Functions and Triggers from a directory on this machine, serving HTTP.
    Dev(dev::Args),
    /// Inspect, redrive or purge a trigger's dead letters on a running Sluice.
    Dlq(dlq::Args),
    /// Distributed mode: HTTP ingress onto NATS JetStream.
    Ingress(distributed::IngressArgs),
    /// Distributed mode: route the buses named by Triggers (several routers may run).
    Router(distributed::RouterArgs),
    /// Distributed mode: run one Function's handlers from its trigger queues.
    Worker(distributed::WorkerArgs),
    /// Run the Kubernetes operator (the same program as `sluice-operator`).
    Operator(operator::OperatorArgs),
    /// Delete every Function and Trigger of the cluster and Sluice's JetStream streams (the
    /// Helm chart's pre-delete hook).
    Uninstall(operator::UninstallArgs),
    /// Fetch a module and verify its digest (the worker pods' init container).
    #[command(subcommand)]
    Module(operator::Module),
    /// Write a new handler project in one of nine languages (Function, Trigger, sample event,
    /// build script, test cases).
    New(project::new::Args),
    /// Send one event to a bus of a running Sluice.
    Publish(publish::Args),
    /// Check events against EventSchemas offline, or propose a schema from a bus's archive.
    #[command(subcommand)]
    Schema(schema::Command),
    /// Re-deliver a time range of a bus's archive to its Triggers; list or cancel replays.
    Replay(replay::Args),
    /// Follow a bus of a running Sluice, one JSON line per event.
    Tail(tail::Args),
    /// Show where one event went: routed to which Triggers, each attempt and its outcome.
    Trace(trace::Args),
    /// Run one event through a Wasm handler and print its reply events as JSON lines.
    Invoke(invoke::Args),
    /// Run a project's sample event and cases through its handler and compare the replies.
    Test(project::test::Args),
    /// Test an event pattern against an event, like EventBridge's TestEventPattern.
    TestPattern(test_pattern::Args),
    /// Check Function, Trigger and EventSchema manifests as the API server and Sluice would.
    Validate(validate::Args),
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Bench(cmd) => bench::run(cmd),
        Command::Build(args) => project::build::run(args),
        Command::Crds(args) => crds::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Ingress(args) => distributed::ingress(args),
        Command::Router(args) => distributed::router(args),
        Command::Worker(args) => distributed::worker(args),
        Command::Operator(args) => operator::run_operator(args),
        Command::Uninstall(args) => operator::run_uninstall(args),
        Command::Module(cmd) => operator::run_module(cmd),
        Command::New(args) => project::new::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Schema(cmd) => schema::run(cmd),
        Command::Replay(args) => replay::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Invoke(args) => invoke::run(args),
        Command::Test(args) => project::test::run(args),
        Command::TestPattern(args) => test_pattern::run(args),
        Command::Validate(args) => validate::run(args),
    }
}
