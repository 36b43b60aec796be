//! `sluice replay --bus B --from T1 [--to T2] [--trigger NS/NAME] [--pattern P] [--dry-run]`:
//! re-delivers archived events of a time range, following the replay's progress to its end;
//! `sluice replay list|status|cancel` for the replays a running Sluice holds.

use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper::Method;
use serde_json::{Value, json};

use super::client::{self, Server};
use crate::progress::Progress;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub start: Start,
    #[command(flatten)]
    pub server: Server,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Print every replay as one JSON line.
    List(Server),
    /// Print one replay as JSON.
    Status(Named),
    /// Stop a running replay; what it already re-delivered stays delivered.
    Cancel(Named),
}

#[derive(clap::Args, Debug)]
pub struct Start {
    /// The bus whose archive to replay.
    #[arg(long, required = true)]
    pub bus: Option<String>,
    /// Events accepted at or after this time: RFC 3339 (2026-12-06T10:00:00Z) or an age
    /// (90m, 2h, 1d: that long ago).
    #[arg(long, required = true, value_name = "TIME")]
    pub from: Option<String>,
    /// …and at or before this time (same forms; default: now).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only to this Trigger, NAMESPACE/NAME (or NAME in namespace `default`); default: every
    /// Trigger of the bus whose pattern matches the event now.
    #[arg(long)]
    pub trigger: Option<String>,
    /// Only archived events this EventBridge pattern (JSON) matches.
    #[arg(long)]
    pub pattern: Option<String>,
    /// Count what would be re-delivered; deliver nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The replay's name (default: the bus and the start time).
    #[arg(long)]
    pub name: Option<String>,
    /// Print the started replay and return instead of following it.
    #[arg(long)]
    pub detach: bool,
}

#[derive(clap::Args, Debug)]
pub struct Named {
    pub name: String,
    #[command(flatten)]
    pub server: Server,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    client::runtime()?.block_on(async move {
        match args.action {
            Some(Action::List(s)) => {
                let v = call(&s, Method::GET, "/admin/replays", Vec::new()).await?;
                for r in v["replays"].as_array().into_iter().flatten() {
                    println!("{r}");
                }
                Ok(0)
            }
            Some(Action::Status(n)) => {
                let v = call(&n.server, Method::GET, &path_of(&n.name), Vec::new()).await?;
                println!("{v}");
                Ok(0)
            }
            Some(Action::Cancel(n)) => {
                let v = call(&n.server, Method::DELETE, &path_of(&n.name), Vec::new()).await?;
                println!("{}", summary(&v));
                Ok(0)
            }
            None => start(args.start, args.server).await,
        }
    })
}

async fn start(a: Start, server: Server) -> anyhow::Result<i32> {
    let bus = a.bus.context("--bus is required")?;
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let from = time_arg(
        "--from",
        a.from.as_deref().context("--from is required")?,
        now,
    )?;
    let to =
        a.to.as_deref()
            .map(|t| time_arg("--to", t, now))
            .transpose()?;
    let trigger = a.trigger.map(|t| {
        if t.contains('/') {
            t
        } else {
            format!("default/{t}")
        }
    });
    let pattern: Option<Value> = a
        .pattern
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--pattern: not JSON")?;
    let body = json!({
        "name": a.name,
        "from": from,
        "to": to,
        "trigger": trigger,
        "pattern": pattern,
        "dryRun": a.dry_run,
    });
    let started = call(
        &server,
        Method::POST,
        &format!("/admin/buses/{bus}/replays"),
        serde_json::to_vec(&body)?,
    )
    .await?;
    let name = started["name"].as_str().unwrap_or_default().to_owned();
    if a.detach {
        println!("{started}");
        return Ok(0);
    }
    eprintln!(
        "replay {name}: bus {bus} from {} to {}{}",
        started["from"].as_str().unwrap_or("?"),
        started["to"].as_str().unwrap_or("?"),
        if a.dry_run { " (dry run)" } else { "" }
    );
    let mut progress = Progress::new(&format!("replay {name}"), Some(1000));
    loop {
        let v = call(&server, Method::GET, &path_of(&name), Vec::new()).await?;
        let line = summary(&v);
        if v["state"] != "Running" {
            progress.finish(v["state"].as_str().unwrap_or("?"));
            println!("{line}");
            return Ok(if v["state"] == "Completed" { 0 } else { 1 });
        }
        let permille = (v["progress"].as_f64().unwrap_or(0.0) * 1000.0) as u64;
        progress.update(permille, &line);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn path_of(name: &str) -> String {
    format!("/admin/replays/{name}")
}

/// One line: state, progress and counts.
fn summary(v: &Value) -> String {
    let mut line = format!(
        "replay {} {} {:.0}%: {} scanned, {} matched, {} {}",
        v["name"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        v["progress"].as_f64().unwrap_or(0.0) * 100.0,
        v["scanned"],
        v["matched"],
        v["delivered"],
        if v["dryRun"] == true {
            "would be delivered"
        } else {
            "delivered"
        },
    );
    if let Some(per) = v["deliveredPerTrigger"].as_object()
        && !per.is_empty()
    {
        let parts: Vec<String> = per.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        line.push_str(&format!(" ({})", parts.join(", ")));
    }
    if let Some(e) = v["error"].as_str() {
        line.push_str(&format!("; error: {e}"));
    }
    line
}

async fn call(s: &Server, method: Method, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
    let headers = [("content-type", "application/json".to_string())];
    let resp = client::send(method, &s.url, path, s.token.as_deref(), &headers, body).await?;
    if !(200..300).contains(&resp.status) {
        let msg = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| resp.text());
        bail!("{} ({})", msg.trim(), resp.status);
    }
    Ok(serde_json::from_slice(&resp.body)?)
}

/// RFC 3339, or an age such as `90m`, `2h` or `1d` meaning that long before `now`.
fn time_arg(flag: &str, t: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<String> {
    if t == "now" {
        return Ok(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    if let Ok(d) = t.parse::<sluice_api::duration::Duration>() {
        let ago = chrono::Duration::from_std(d.as_std()).context("too long ago")?;
        return Ok((now - ago).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => Ok(d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        Err(_) => bail!(
            "{flag} {t}: expected an RFC 3339 time (2026-12-06T10:00:00Z), `now`, or an age (90m, 2h, 1d)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_now_or_an_age_ago() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            time_arg("--from", "90m", now).unwrap(),
            "2026-12-06T08:30:00.000Z"
        );
        assert_eq!(
            time_arg("--from", "2026-12-06T11:00:00+01:00", now).unwrap(),
            "2026-12-06T11:00:00.000+01:00"
        );
        assert_eq!(
            time_arg("--to", "now", now).unwrap(),
            "2026-12-06T10:00:00.000Z"
        );
        let e = time_arg("--from", "yesterday", now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--from yesterday"), "{e}");
    }
}
