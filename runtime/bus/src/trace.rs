//! The journey of each event, step by step, for `sluice trace EVENT_ID` and the console's
//! recent deliveries: where it was accepted and which Triggers it was routed to, then every
//! delivery attempt with its worker, duration and outcome (replies, a retry, a dead letter).
//!
//! Steps are written by whoever takes the step (the router or publisher, the worker), on the
//! side: recording never delays or fails a delivery, so a step can be missing (a worker that
//! died before it recorded; a NATS server that dropped the unacknowledged record) but never
//! invented. The embedded bus keeps the latest steps in memory; the NATS bus keeps them in a
//! limits stream (`sluice_trace`, one subject per event id) for a day.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::TriggerId;

/// One step of one event's journey.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// When the step was taken (ms since the epoch); an attempt's start.
    pub at_ms: u64,
    pub event_id: String,
    pub event_source: String,
    pub event_type: String,
    #[serde(flatten)]
    pub kind: StepKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum StepKind {
    /// Accepted on `bus` and routed to these Triggers (none: kept in the archive only).
    #[serde(rename_all = "camelCase")]
    Routed {
        bus: String,
        triggers: Vec<TriggerId>,
    },
    /// One delivery attempt.
    #[serde(rename_all = "camelCase")]
    Attempt {
        trigger: TriggerId,
        /// 1 for the first delivery.
        attempt: u32,
        /// The process that ran it: its pod name on a cluster.
        worker: String,
        duration_us: u64,
        #[serde(flatten)]
        outcome: Outcome,
    },
    /// Given up without an attempt (older than the Trigger's `maxAge`).
    #[serde(rename_all = "camelCase")]
    Expired {
        trigger: TriggerId,
        to_bus: Option<String>,
    },
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// Handled; these replies (`id`, `type`) were published.
    #[serde(rename_all = "camelCase")]
    Ok { replies: Vec<Reply> },
    /// Failed; delivered again after `retry_in_ms`.
    #[serde(rename_all = "camelCase")]
    Retry {
        reason: String,
        error: String,
        retry_in_ms: u64,
    },
    /// Failed and given up: kept as a dead letter (`sluice dlq`) and published on `to_bus`.
    #[serde(rename_all = "camelCase")]
    DeadLetter {
        /// `fatal`, `exhausted`, …
        reason: String,
        error: String,
        to_bus: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
}

impl Step {
    pub fn of(event: &sluice_event::CloudEvent, at_ms: u64, kind: StepKind) -> Step {
        Step {
            at_ms,
            event_id: event.id.clone(),
            event_source: event.source.clone(),
            event_type: event.ty.clone(),
            kind,
        }
    }

    /// The Trigger the step concerns, if any.
    pub fn trigger(&self) -> Option<&str> {
        match &self.kind {
            StepKind::Routed { .. } => None,
            StepKind::Attempt { trigger, .. } | StepKind::Expired { trigger, .. } => Some(trigger),
        }
    }
}

/// The steps of events put straight on Trigger queues (schedules, bridges, replays, which
/// skip routing): each routed to its one Trigger.
pub fn enqueued(items: &[crate::Enqueue]) -> Vec<Step> {
    items
        .iter()
        .map(|i| {
            let bus = match &i.replay {
                Some(replay) => format!("{} (replay {replay})", i.bus),
                None => i.bus.clone(),
            };
            let triggers = vec![i.trigger.clone()];
            Step::of(&i.event, i.accepted_ms, StepKind::Routed { bus, triggers })
        })
        .collect()
}

/// What names the worker in attempt steps: the pod name on a cluster (`HOSTNAME`), else the
/// machine's name and the process id.
pub fn worker_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let pid = std::process::id();
        match std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()) {
            Some(host) => host,
            None => std::fs::read_to_string("/etc/hostname")
                .map(|h| format!("{}/{pid}", h.trim()))
                .unwrap_or_else(|_| format!("pid {pid}")),
        }
    })
    .clone()
}

/// The newest `capacity` steps in memory: the embedded bus's trace log.
pub struct Recent {
    capacity: usize,
    steps: Mutex<VecDeque<Step>>,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            steps: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
        }
    }

    pub fn record(&self, steps: Vec<Step>) {
        let mut held = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        for step in steps {
            if held.len() == self.capacity {
                held.pop_front();
            }
            held.push_back(step);
        }
    }

    /// The steps of event `id`, oldest first.
    pub fn of(&self, id: &str) -> Vec<Step> {
        let held = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().filter(|s| s.event_id == id).cloned().collect()
    }

    /// The newest `limit` steps, oldest first.
    pub fn latest(&self, limit: usize) -> Vec<Step> {
        let held = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .skip(held.len().saturating_sub(limit))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, n: u32) -> Step {
        Step {
            at_ms: u64::from(n),
            event_id: id.into(),
            event_source: "/s".into(),
            event_type: "t".into(),
            kind: StepKind::Attempt {
                trigger: "ns/t".into(),
                attempt: n,
                worker: "w".into(),
                duration_us: 5,
                outcome: Outcome::Retry {
                    reason: "retryable".into(),
                    error: "exit status 3".into(),
                    retry_in_ms: 1000,
                },
            },
        }
    }

    #[test]
    fn recent_keeps_the_newest_and_finds_by_id() {
        let r = Recent::new(3);
        r.record(vec![step("a", 1), step("b", 2), step("a", 3), step("c", 4)]);
        assert_eq!(r.of("a"), vec![step("a", 3)]);
        assert_eq!(r.latest(2), vec![step("a", 3), step("c", 4)]);
        assert_eq!(r.latest(10).len(), 3);
    }

    #[test]
    fn steps_are_flat_json() {
        let v = serde_json::to_value(step("a", 1)).unwrap();
        assert_eq!(v["step"], "attempt");
        assert_eq!(v["outcome"], "retry");
        assert_eq!(v["retryInMs"], 1000);
        assert_eq!(v["eventId"], "a");
        let back: Step = serde_json::from_value(v).unwrap();
        assert_eq!(back, step("a", 1));
    }
}
