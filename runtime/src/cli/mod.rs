//! The `sluice` command line. Each subcommand lives in its own module and returns the process
//! exit code, so `main` stays a dispatcher.

pub mod crds;
pub mod invoke;
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
    /// Print the CustomResourceDefinitions generated from the resource types, or write them.
    Crds(crds::Args),
    /// Run one event through a Wasm handler and print its reply events as JSON lines.
    Invoke(invoke::Args),
    /// Check Function and Trigger manifests as the API server and Sluice would.
    Validate(validate::Args),
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Crds(args) => crds::run(args),
        Command::Invoke(args) => invoke::run(args),
        Command::Validate(args) => validate::run(args),
    }
}
