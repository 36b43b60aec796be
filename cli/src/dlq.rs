//! `sluice dlq list|redrive|purge --trigger NS/NAME`: a trigger's dead letters.

use anyhow::bail;
use hyper::Method;

use super::client;
use crate::progress::Progress;

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
    #[command(flatten)]
    pub server: client::Server,
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
    // A redrive of many dead letters takes a while; show it is under way.
    let mut progress = matches!(args.action, Action::Redrive(_))
        .then(|| Progress::new(&format!("dlq redrive {ns}/{name}"), None));
    if let Some(p) = &mut progress {
        p.update(0, "putting dead letters back on the queue");
    }
    // `list` answers in pages: follow `next` to the end. The other actions answer once.
    let mut page = path.clone();
    loop {
        let resp = rt.block_on(client::send(
            method.clone(),
            &t.server.url,
            &page,
            t.server.token.as_deref(),
            &[],
            Vec::new(),
        ))?;
        if resp.status != 200 {
            eprintln!("dlq: {} {}", resp.status, resp.text().trim());
            return Ok(1);
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body)?;
        match &args.action {
            Action::List(_) => {
                for d in v["deadLetters"].as_array().into_iter().flatten() {
                    println!("{d}");
                }
                match v["next"].as_u64() {
                    Some(next) => page = format!("{path}?offset={next}"),
                    None => return Ok(0),
                }
            }
            Action::Redrive(_) => {
                if let Some(p) = progress.take() {
                    p.finish("done");
                }
                println!("redriven {}", v["redriven"]);
                return Ok(0);
            }
            Action::Purge(_) => {
                println!("purged {}", v["purged"]);
                return Ok(0);
            }
        }
    }
}
