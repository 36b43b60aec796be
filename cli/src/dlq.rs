//! `sluice dlq list|redrive|purge --trigger NS/NAME`: a trigger's dead letters.

use anyhow::bail;
use hyper::Method;

use super::client;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Print the dead letters as JSON lines (with sluicereason, sluiceattempts, …).
    List(Target),
    /// Put the dead letters back on the trigger's queue with fresh attempts.
    Redrive(Target),
    /// Delete the dead letters.
    Purge(Target),
}

#[derive(clap::Args, Debug)]
pub struct Target {
    /// The trigger, as NAMESPACE/NAME (or NAME in namespace `default`).
    #[arg(long)]
    pub trigger: String,
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SLUICE_URL")]
    pub url: String,
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let (method, suffix, t) = match &args.action {
        Action::List(t) => (Method::GET, "", t),
        Action::Redrive(t) => (Method::POST, "/redrive", t),
        Action::Purge(t) => (Method::DELETE, "", t),
    };
    let (ns, name) = t.trigger.split_once('/').unwrap_or(("default", &t.trigger));
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        bail!("--trigger {}: expected NAMESPACE/NAME", t.trigger);
    }
    let path = format!("/admin/triggers/{ns}/{name}/dlq{suffix}");
    let rt = client::runtime()?;
    let call = |path: String| {
        rt.block_on(client::send(
            method.clone(),
            &t.url,
            &path,
            t.token.as_deref(),
            &[],
            Vec::new(),
        ))
    };
    let resp = call(path.clone())?;
    if resp.status != 200 {
        eprintln!("dlq: {} {}", resp.status, resp.text().trim());
        return Ok(1);
    }
    let mut v: serde_json::Value = serde_json::from_slice(&resp.body)?;
    match &args.action {
        Action::List(_) => loop {
            for d in v["deadLetters"].as_array().into_iter().flatten() {
                println!("{d}");
            }
            // The server answers in pages; follow them to the end.
            let Some(next) = v["next"].as_u64() else {
                break;
            };
            let resp = call(format!("{path}?offset={next}"))?;
            if resp.status != 200 {
                eprintln!("dlq: {} {}", resp.status, resp.text().trim());
                return Ok(1);
            }
            v = serde_json::from_slice(&resp.body)?;
        },
        Action::Redrive(_) => println!("redriven {}", v["redriven"]),
        Action::Purge(_) => println!("purged {}", v["purged"]),
    }
    Ok(0)
}
