//! `sluice publish`: sends one event to a running Sluice, from flags or a JSON event.

use anyhow::{Context as _, bail};
use hyper::Method;
use serde_json::Value;

use super::client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A whole structured-mode CloudEvent: JSON text or @file. Flags below override its fields.
    #[arg(long)]
    pub event: Option<String>,
    /// Event type, e.g. com.example.order.paid.
    #[arg(long = "type")]
    pub ty: Option<String>,
    #[arg(long)]
    pub source: Option<String>,
    /// Default: a fresh UUID.
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub subject: Option<String>,
    /// JSON data: text or @file.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, default_value = "default")]
    pub bus: String,
    #[command(flatten)]
    pub server: client::Server,
}

/// JSON text, or the contents of a file named with a leading `@`.
pub fn json_arg(flag: &str, s: &str) -> anyhow::Result<Value> {
    let text = match s.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))?
        }
        None => s.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("{flag}: not valid JSON"))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut event = match &args.event {
        Some(e) => json_arg("--event", e)?,
        None => serde_json::json!({}),
    };
    let Some(obj) = event.as_object_mut() else {
        bail!("--event: must be a JSON object")
    };
    obj.entry("specversion").or_insert("1.0".into());
    for (k, v) in [
        ("type", &args.ty),
        ("source", &args.source),
        ("id", &args.id),
        ("subject", &args.subject),
    ] {
        if let Some(v) = v {
            obj.insert(k.into(), v.clone().into());
        }
    }
    obj.entry("id")
        .or_insert_with(|| uuid::Uuid::new_v4().to_string().into());
    if let Some(d) = &args.data {
        obj.insert("data".into(), json_arg("--data", d)?);
        obj.entry("datacontenttype")
            .or_insert("application/json".into());
    }
    // Check locally first so mistakes get a precise message without a round trip.
    let parsed = sluice_event::CloudEvent::from_json_value(event.clone())
        .map_err(|e| anyhow::anyhow!("the event is invalid: {e}"))?;
    let body = parsed.to_json();
    let path = format!("/buses/{}/events", args.bus);
    let resp = client::runtime()?.block_on(client::send(
        Method::POST,
        &args.server.url,
        &path,
        args.server.token.as_deref(),
        &[("content-type", "application/cloudevents+json".into())],
        body,
    ))?;
    if resp.status == 202 {
        let answer: serde_json::Value = serde_json::from_str(&resp.text()).unwrap_or_default();
        if answer["events"][0]["duplicate"] == true {
            // Said plainly: a resent (source, id) inside the bus's dedupe window is dropped.
            println!(
                "duplicate: an event with source {} and id {} is already on bus {} (within its dedupe window); not published again",
                parsed.source, parsed.id, args.bus
            );
        } else {
            println!(
                "accepted {} on bus {}: {}",
                parsed.id,
                args.bus,
                resp.text().trim()
            );
        }
        Ok(0)
    } else {
        // The ingress says why as `{"error": …}`; anything else is shown as it came.
        let answer: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        match answer["error"].as_str() {
            Some(why) => eprintln!("refused ({}): {why}", resp.status),
            None => eprintln!("refused ({}): {}", resp.status, resp.text().trim()),
        }
        Ok(1)
    }
}
