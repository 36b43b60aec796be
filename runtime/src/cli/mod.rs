//! The `sluice` command line. Each subcommand lives in its own module and returns the process
//! exit code, so `main` stays a dispatcher.

pub mod bench;
pub mod bench_e2e;
pub mod bench_nats;
pub mod client;
pub mod crds;
pub mod dev;
pub mod distributed;
pub mod dlq;
pub mod invoke;
pub mod operator;
pub mod publish;
pub mod tail;
pub mod test_pattern;
pub mod validate;

use clap::{Parser, Subcommand};

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
    /// Send one event to a bus of a running Sluice.
    Publish(publish::Args),
    /// Follow a bus of a running Sluice, one JSON line per event.
    Tail(tail::Args),
    /// Run one event through a Wasm handler and print its reply events as JSON lines.
    Invoke(invoke::Args),
    /// Test an event pattern against an event, like EventBridge's TestEventPattern.
    TestPattern(test_pattern::Args),
    /// Check Function and Trigger manifests as the API server and Sluice would.
    Validate(validate::Args),
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Bench(cmd) => bench::run(cmd),
        Command::Crds(args) => crds::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Ingress(args) => distributed::ingress(args),
        Command::Router(args) => distributed::router(args),
        Command::Worker(args) => distributed::worker(args),
        Command::Operator(args) => operator::run_operator(args),
        Command::Uninstall(args) => operator::run_uninstall(args),
        Command::Module(cmd) => operator::run_module(cmd),
        Command::Publish(args) => publish::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Invoke(args) => invoke::run(args),
        Command::TestPattern(args) => test_pattern::run(args),
        Command::Validate(args) => validate::run(args),
    }
}
