//! `sluice test-pattern --pattern P --event E`: EventBridge's TestEventPattern for Sluice.
//! Prints `match` (exit 0) or `no match` (exit 1); an invalid pattern or event is an error
//! (exit 2). P and E are JSON text, or `@file` to read it from a file.

use anyhow::{Context, anyhow};
use sluice_pattern::Pattern;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The event pattern: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub pattern: String,
    /// The event (a CloudEvent in structured JSON form, `data` inline): JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub event: String,
}

fn load(what: &str, arg: &str) -> anyhow::Result<serde_json::Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} file {path}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let pattern = load("pattern", &args.pattern)?;
    let event = load("event", &args.event)?;
    let pattern = Pattern::parse(&pattern).map_err(|e| match e.path.as_str() {
        "" => anyhow!("invalid pattern: {}", e.reason),
        _ => anyhow!("invalid pattern: {e}"),
    })?;
    if sluice_pattern::matches(&pattern, &event) {
        println!("match");
        Ok(0)
    } else {
        println!("no match");
        Ok(1)
    }
}
