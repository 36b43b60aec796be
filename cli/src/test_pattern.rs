//! `sluice test-pattern --pattern P --event E [--transform T]`: EventBridge's TestEventPattern
//! for Sluice, and a way to try a Trigger's transform. Prints `match` (exit 0), then the `data`
//! the transform builds when one is given, or `no match` (exit 1); an invalid pattern, event or
//! transform is an error (exit 2). P, E and T are JSON text (T may be YAML), or `@file`.

use anyhow::{Context, anyhow};
use sluice_api::trigger::InputTransform;
use sluice_pattern::Pattern;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The event pattern: JSON text, or @FILE. Omitted: every event matches, as for a Trigger
    /// without one.
    #[arg(long, value_name = "JSON|@FILE")]
    pub pattern: Option<String>,
    /// The event (a CloudEvent in structured JSON form, `data` inline): JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub event: String,
    /// A Trigger's `spec.transform` (`{inputPaths: {...}, template: ...}`), JSON or YAML text,
    /// or @FILE: prints what the handler would get as the event's data.
    #[arg(long, value_name = "JSON|YAML|@FILE")]
    pub transform: Option<String>,
}

fn read(what: &str, arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {what} file {path}"))
        }
        None => Ok(arg.to_string()),
    }
}

fn load(what: &str, arg: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(&read(what, arg)?).with_context(|| format!("{what} is not valid JSON"))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let event = load("event", &args.event)?;
    let transform = match &args.transform {
        None => None,
        Some(arg) => {
            let spec: InputTransform = serde_yaml::from_str(&read("transform", arg)?)
                .map_err(|e| anyhow!("invalid transform: {e}"))?;
            let compiled = spec.compile("transform").map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow!("invalid transform:\n  {}", lines.join("\n  "))
            })?;
            Some(compiled)
        }
    };
    if let Some(p) = &args.pattern {
        let pattern = load("pattern", p)?;
        let pattern = Pattern::parse(&pattern).map_err(|e| match e.path.as_str() {
            "" => anyhow!("invalid pattern: {}", e.reason),
            _ => anyhow!("invalid pattern: {e}"),
        })?;
        if !sluice_pattern::matches(&pattern, &event) {
            println!("no match");
            return Ok(1);
        }
    }
    println!("match");
    if let Some(t) = transform {
        let out = t
            .apply(
                &event,
                sluice_transform::Context {
                    trigger: "test/test-pattern",
                },
            )
            .map_err(|e| anyhow!("the transform failed on this event: transform.{e}"))?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(0)
}
