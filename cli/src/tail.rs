//! `sluice tail BUS`: follows a bus, printing each event as one JSON line.

use hyper::Method;

use super::client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The bus to follow.
    #[arg(default_value = "default")]
    pub bus: String,
    /// Start after this position (0: from the oldest retained event); default: only new events.
    #[arg(long)]
    pub after: Option<u64>,
    /// Start at the first event accepted at or after this RFC 3339 time (the bus's archive).
    #[arg(long, value_name = "TIME", conflicts_with = "after")]
    pub since: Option<String>,
    /// Stop after printing this many events.
    #[arg(long)]
    pub count: Option<usize>,
    #[command(flatten)]
    pub server: client::Server,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    client::runtime()?.block_on(async move {
        let mut after = args.after;
        let mut since = args.since;
        let mut printed = 0usize;
        loop {
            let q = match (after, since.take()) {
                (Some(a), _) => format!("?after={a}&wait_ms=20000"),
                (None, Some(t)) => format!("?since={}&wait_ms=20000", encode(&t)),
                (None, None) => "?wait_ms=0".to_string(),
            };
            let resp = client::send(
                Method::GET,
                &args.server.url,
                &format!("/buses/{}/events{q}", args.bus),
                args.server.token.as_deref(),
                &[],
                Vec::new(),
            )
            .await?;
            if resp.status != 200 {
                eprintln!("tail {}: {} {}", args.bus, resp.status, resp.text().trim());
                return Ok(1);
            }
            for line in resp.text().lines().filter(|l| !l.is_empty()) {
                println!("{line}");
                printed += 1;
                if args.count.is_some_and(|c| printed >= c) {
                    return Ok(0);
                }
            }
            let next = resp
                .headers
                .get("x-sluice-next")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            after = next.or(after).or(Some(0));
        }
    })
}

/// Percent-encodes what a query value may not hold as is (`+` of a time zone, `:`).
pub(crate) fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
