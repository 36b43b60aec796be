//! `sluice-operator`: the Kubernetes operator binary (also `sluice operator`).

use clap::Parser;
use sluice_operator::Config;

fn main() -> anyhow::Result<()> {
    Ok(sluice_operator::run::main_with(Config::parse())?)
}
