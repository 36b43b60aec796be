//! `sluice trace EVENT_ID`: where one event went, from the steps the buses recorded: accepted
//! and routed to which Triggers, then each delivery attempt with its worker, duration and
//! outcome (replies, a retry, a dead letter). No collector needed: the embedded bus keeps the
//! newest steps in memory, the NATS bus in its `sluice_trace` stream for a day.

use hyper::Method;
use sluice_bus::trace::{Outcome, Step, StepKind};

use super::client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The event's `id`.
    pub id: String,
    /// Print the steps as JSON lines instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: client::Server,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let path = format!("/admin/events/{}/trace", crate::tail::encode(&args.id));
    let resp = client::runtime()?.block_on(client::send(
        Method::GET,
        &args.server.url,
        &path,
        args.server.token.as_deref(),
        &[],
        Vec::new(),
    ))?;
    if resp.status != 200 {
        eprintln!("trace: {} {}", resp.status, resp.text().trim());
        return Ok(1);
    }
    let v: serde_json::Value = serde_json::from_slice(&resp.body)?;
    let steps: Vec<Step> = serde_json::from_value(v["steps"].clone())?;
    if steps.is_empty() {
        eprintln!(
            "no recorded steps for event {:?}: it is not known, is older than the trace log, or \
             matched no Trigger (such events are archived only: sluice tail --after 0)",
            args.id
        );
        return Ok(1);
    }
    if args.json {
        for s in &steps {
            println!("{}", serde_json::to_string(s)?);
        }
        return Ok(0);
    }
    let first = &steps[0];
    println!(
        "event {} ({} from {})",
        first.event_id, first.event_type, first.event_source
    );
    for s in &steps {
        println!("{}  {}", time(s.at_ms), describe(s));
    }
    Ok(0)
}

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// One step as a line.
pub fn describe(s: &Step) -> String {
    match &s.kind {
        StepKind::Routed { bus, triggers } if triggers.is_empty() => {
            format!("accepted on bus {bus}, matched no Trigger")
        }
        StepKind::Routed { bus, triggers } => {
            format!("accepted on bus {bus}, routed to {}", triggers.join(", "))
        }
        StepKind::Expired { trigger, to_bus } => format!(
            "{trigger}: expired before an attempt (older than maxAge); dead-lettered{}",
            to_bus
                .as_deref()
                .map(|b| format!(" to bus {b}"))
                .unwrap_or_default()
        ),
        StepKind::Attempt {
            trigger,
            attempt,
            worker,
            duration_us,
            outcome,
        } => {
            let took = if *duration_us >= 1_000_000 {
                format!("{:.2} s", *duration_us as f64 / 1e6)
            } else {
                format!("{:.1} ms", *duration_us as f64 / 1e3)
            };
            let what = match outcome {
                Outcome::Ok { replies } if replies.is_empty() => "ok, no replies".to_string(),
                Outcome::Ok { replies } => {
                    let r: Vec<String> = replies
                        .iter()
                        .map(|r| format!("{} {}", r.ty, r.id))
                        .collect();
                    format!("ok, replied {}", r.join(", "))
                }
                Outcome::Retry {
                    error, retry_in_ms, ..
                } => format!(
                    "failed: {error}; retry in {:.1} s",
                    *retry_in_ms as f64 / 1e3
                ),
                Outcome::DeadLetter {
                    reason,
                    error,
                    to_bus,
                } => format!(
                    "failed: {error}; dead-lettered ({reason}){}",
                    to_bus
                        .as_deref()
                        .map(|b| format!(" to bus {b}"))
                        .unwrap_or_default()
                ),
            };
            format!("{trigger}: attempt {attempt} on {worker} in {took}: {what}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_bus::trace::Reply;

    fn step(kind: StepKind) -> Step {
        Step {
            at_ms: 0,
            event_id: "e1".into(),
            event_source: "/s".into(),
            event_type: "t".into(),
            kind,
        }
    }

    #[test]
    fn each_step_reads_as_a_sentence() {
        let routed = step(StepKind::Routed {
            bus: "default".into(),
            triggers: vec!["shop/paid".into(), "shop/audit".into()],
        });
        assert_eq!(
            describe(&routed),
            "accepted on bus default, routed to shop/paid, shop/audit"
        );
        let retry = step(StepKind::Attempt {
            trigger: "shop/paid".into(),
            attempt: 1,
            worker: "w-1".into(),
            duration_us: 3200,
            outcome: Outcome::Retry {
                reason: "retryable".into(),
                error: "retryable: exit status 3".into(),
                retry_in_ms: 1500,
            },
        });
        assert_eq!(
            describe(&retry),
            "shop/paid: attempt 1 on w-1 in 3.2 ms: failed: retryable: exit status 3; retry in 1.5 s"
        );
        let dead = step(StepKind::Attempt {
            trigger: "shop/paid".into(),
            attempt: 3,
            worker: "w-1".into(),
            duration_us: 2_500_000,
            outcome: Outcome::DeadLetter {
                reason: "exhausted".into(),
                error: "timeout after 2s".into(),
                to_bus: Some("dead-letter".into()),
            },
        });
        assert!(describe(&dead).ends_with(
            "in 2.50 s: failed: timeout after 2s; dead-lettered (exhausted) to bus dead-letter"
        ));
        let ok = step(StepKind::Attempt {
            trigger: "shop/paid".into(),
            attempt: 1,
            worker: "w".into(),
            duration_us: 10,
            outcome: Outcome::Ok {
                replies: vec![Reply {
                    id: "r1".into(),
                    ty: "com.example.done".into(),
                }],
            },
        });
        assert!(
            describe(&ok).ends_with("ok, replied com.example.done r1"),
            "{}",
            describe(&ok)
        );
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
