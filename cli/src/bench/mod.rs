//! `sluice bench match --patterns P.jsonl --events E.jsonl`: builds one matcher from every
//! pattern (one per line, ids are line numbers) and matches the events on this thread as the
//! router does (the JSON Sluice writes for each, read until every key a pattern names is
//! decided), then prints build time, memory, matches per event and events per second.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, bail};
use sluice_pattern::{Matcher, Pattern};

pub mod contracts;
pub mod e2e;
pub mod nats;

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// Throughput of the compiled event pattern matcher on one core.
    Match(MatchArgs),
    /// The whole local data path: HTTP ingress → match → Wasm handler → ack.
    E2e(e2e::E2eArgs),
    /// Distributed mode on NATS JetStream next to a raw JetStream baseline.
    Nats(nats::NatsBenchArgs),
    /// EventSchema checks and Trigger transforms per event, next to parsing the event.
    Contracts(contracts::ContractsArgs),
}

#[derive(clap::Args, Debug)]
pub struct MatchArgs {
    /// Patterns, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub patterns: PathBuf,
    /// Events (CloudEvents in structured JSON), one per line.
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// How long to keep matching, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
}

pub fn run(cmd: Bench) -> anyhow::Result<i32> {
    match cmd {
        Bench::Match(args) => run_match(args),
        Bench::E2e(args) => e2e::run(args),
        Bench::Nats(args) => nats::run(args),
        Bench::Contracts(args) => contracts::run(args),
    }
}

/// Resident set size from /proc (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn lines(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

fn run_match(args: MatchArgs) -> anyhow::Result<i32> {
    let mut patterns = Vec::new();
    for (i, line) in lines(&args.patterns)?.iter().enumerate() {
        let p = Pattern::parse_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", args.patterns.display(), i + 1))?;
        patterns.push(p);
    }
    // The router matches the bytes Sluice stored, not what the producer sent.
    let mut events = Vec::new();
    for (i, line) in lines(&args.events)?.iter().enumerate() {
        let e = sluice_event::CloudEvent::from_json(line.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", args.events.display(), i + 1))?;
        events.push(e.to_json());
    }
    if events.is_empty() {
        bail!("{} holds no events", args.events.display());
    }

    let rss_before = rss_bytes();
    let start = Instant::now();
    let mut m = Matcher::new();
    for (i, p) in patterns.iter().enumerate() {
        m.insert(i as u64, p);
    }
    let build = start.elapsed();
    let rss_after = rss_bytes();
    let start = Instant::now();
    let snapshot = m.clone();
    let clone = start.elapsed();
    drop(snapshot);

    let mut out = Vec::new();
    let mut matched = 0usize;
    for e in &events {
        out.clear();
        m.matches_valid_json_into(e, &mut out)?;
        matched += out.len();
    }
    let mut n = 0u64;
    let start = Instant::now();
    'outer: loop {
        for e in &events {
            out.clear();
            m.matches_valid_json_into(e, &mut out)?;
            n += 1;
        }
        if start.elapsed().as_secs_f64() >= args.seconds {
            break 'outer;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes: usize = events.iter().map(Vec::len).sum();
    println!("patterns:          {}", patterns.len());
    println!("build:             {:.1} ms", build.as_secs_f64() * 1e3);
    match (rss_before, rss_after) {
        (Some(a), Some(b)) => println!(
            "memory (RSS delta): {:.1} MiB",
            b.saturating_sub(a) as f64 / (1 << 20) as f64
        ),
        _ => println!("memory (RSS delta): n/a"),
    }
    println!("snapshot clone:    {:.1} ms", clone.as_secs_f64() * 1e3);
    println!(
        "events:            {} (mean {} bytes)",
        events.len(),
        bytes / events.len()
    );
    println!(
        "matches per event: {:.2}",
        matched as f64 / events.len() as f64
    );
    println!(
        "throughput:        {:.0} events/s (one core)",
        n as f64 / secs
    );
    Ok(0)
}
