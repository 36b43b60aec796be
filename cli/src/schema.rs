//! `sluice schema check EVENT.json`: validates an event offline against the EventSchemas in
//! manifests, as a publisher would. `sluice schema infer --from-bus B --type T`: proposes an
//! EventSchema manifest from the archived events of one type.

use std::path::PathBuf;

use anyhow::Context as _;
use hyper::Method;
use serde_json::{Value, json};
use sluice_api::{Outcome, Resource};

use super::client;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Validate events (a file holding one CloudEvent, a batch array, or JSON lines) against
    /// the EventSchemas in manifests.
    Check(CheckArgs),
    /// Propose an EventSchema from the events of one type archived on a bus.
    Infer(InferArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The event file; `-` reads standard input.
    pub file: PathBuf,
    /// Where the EventSchema manifests are (files or directories).
    #[arg(long, short = 'f', default_value = ".")]
    pub manifests: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// The bus whose archive is read.
    #[arg(long = "from-bus", default_value = "default")]
    pub bus: String,
    /// The event `type` to describe.
    #[arg(long = "type")]
    pub ty: String,
    /// Read from the first event accepted at or after this RFC 3339 time; default: the whole
    /// archive.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// The most events to learn from (the first ones found).
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// `metadata.name` of the proposed EventSchema; default: from the type.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub server: client::Server,
}

pub fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Check(a) => check(a),
        Command::Infer(a) => infer(a),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<i32> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let mut events = parse_events(&text).with_context(|| args.file.display().to_string())?;
    let mut defs = Vec::new();
    let mut broken = 0;
    for file in sluice_process::manifests::load(&args.manifests) {
        let Ok(docs) = file.documents else { continue };
        for doc in docs {
            match doc.outcome {
                Outcome::Valid(Resource::EventSchema(s)) => {
                    defs.push(s.spec.to_def(&doc.object.namespace, &doc.object.name));
                }
                Outcome::Invalid(errors) if doc.object.kind == "EventSchema" => {
                    broken += 1;
                    for e in errors {
                        eprintln!("{}: {}: {e}", file.path.display(), doc.object);
                    }
                }
                _ => {}
            }
        }
    }
    if broken > 0 {
        eprintln!("{broken} EventSchema manifest(s) invalid; fix them first (sluice validate)");
        return Ok(2);
    }
    let (registry, problems) = sluice_schema::Registry::new(&defs);
    for p in &problems {
        eprintln!("{p}");
    }
    let mut failed = 0;
    for (i, e) in events.iter_mut().enumerate() {
        let name = if e.id.is_empty() {
            format!("event {i}")
        } else {
            format!("event {i} ({})", e.id)
        };
        match registry.check(e) {
            Ok(Some(stamp)) => println!(
                "{name}: ok, {} passes EventSchema {} v{}",
                e.ty, stamp.schema, stamp.version
            ),
            Ok(None) => println!("{name}: no EventSchema describes type {:?}", e.ty),
            Err(invalid) => {
                failed += 1;
                println!("{name}: invalid: {invalid}");
            }
        }
    }
    Ok(i32::from(failed > 0))
}

/// One structured-mode event, a batch array, or JSON lines.
fn parse_events(text: &str) -> anyhow::Result<Vec<sluice_event::CloudEvent>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return sluice_event::from_batch_json(trimmed.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"));
    }
    if let Ok(e) = sluice_event::CloudEvent::from_json(trimmed.as_bytes()) {
        return Ok(vec![e]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            sluice_event::CloudEvent::from_json(l.as_bytes())
                .map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))
        })
        .collect()
}

fn infer(args: InferArgs) -> anyhow::Result<i32> {
    let samples = client::runtime()?.block_on(read_samples(&args))?;
    if samples.is_empty() {
        eprintln!(
            "no events of type {:?} in the archive of bus {}{}",
            args.ty,
            args.bus,
            args.since
                .as_deref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default()
        );
        return Ok(1);
    }
    let schema = sluice_schema::infer::infer(&samples);
    let name = args.name.clone().unwrap_or_else(|| name_of(&args.ty));
    let manifest = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "EventSchema",
        "metadata": {"name": name},
        "spec": {"type": args.ty, "versions": [{"version": 1, "schema": schema}]},
    });
    println!(
        "# Proposed from {} event(s) of type {} on bus {}: every property they all had is required.\n# Review it before applying: it knows only these samples.",
        samples.len(),
        args.ty,
        args.bus
    );
    print!("{}", serde_yaml::to_string(&manifest)?);
    Ok(0)
}

/// The `data` of up to `samples` archived events of the type, oldest first.
async fn read_samples(args: &InferArgs) -> anyhow::Result<Vec<Value>> {
    let pattern = json!({"type": [args.ty]}).to_string();
    let mut position = match &args.since {
        Some(t) => Err(t.clone()),
        None => Ok(0u64),
    };
    let mut out = Vec::new();
    while out.len() < args.samples {
        let at = match &position {
            Ok(after) => format!("after={after}"),
            Err(t) => format!("since={}", super::tail::encode(t)),
        };
        let resp = client::send(
            Method::GET,
            &args.server.url,
            &format!(
                "/buses/{}/events?{at}&wait_ms=0&limit=1000&pattern={}",
                args.bus,
                super::tail::encode(&pattern)
            ),
            args.server.token.as_deref(),
            &[],
            Vec::new(),
        )
        .await?;
        anyhow::ensure!(
            resp.status == 200,
            "reading bus {}: {} {}",
            args.bus,
            resp.status,
            resp.text().trim()
        );
        for line in resp.text().lines().filter(|l| !l.is_empty()) {
            let event = sluice_event::CloudEvent::from_json(line.as_bytes())
                .map_err(|e| anyhow::anyhow!("an archived event: {e}"))?;
            if let Some(data) = event.data_json() {
                out.push(data);
            }
            if out.len() == args.samples {
                break;
            }
        }
        let next: Option<u64> = resp
            .headers
            .get("x-sluice-next")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match next {
            Some(n) if position.as_ref().ok() != Some(&n) => position = Ok(n),
            _ => break,
        }
    }
    Ok(out)
}

/// A DNS label from an event type: `com.example.order.paid` → `com-example-order-paid`.
fn name_of(ty: &str) -> String {
    let mut s: String = ty
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "events".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_event_files() {
        assert_eq!(name_of("com.example.Order_Paid"), "com-example-order-paid");
        assert_eq!(name_of("..."), "events");
        let one = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
        assert_eq!(parse_events(one).unwrap().len(), 1);
        assert_eq!(parse_events(&format!("[{one},{one}]")).unwrap().len(), 2);
        assert_eq!(parse_events(&format!("{one}\n\n{one}\n")).unwrap().len(), 2);
        let err = parse_events(&format!("{one}\n{{}}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
