//! Routing. [`RouteTable`] is one bus's Triggers compiled into one matcher; [`BusRoutes`] holds
//! every bus's, which is what NATS publishers route with at publish. The embedded bus's
//! router of one bus: reads the log from its cursor, evaluates every Trigger's pattern in
//! one pass of the compiled matcher, and enqueues each match on that trigger's queue together
//! with the cursor move (one commit), so an event is routed once; workers see the matches
//! without waiting for that commit (see `EmbeddedBus::route_now`). Trigger changes swap the
//! route table; the next batch uses it, with no restart.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use serde_json::Value;
use sluice_pattern::{Matcher, Pattern};
use tokio::sync::watch;

use sluice_bus::trace::{Step, StepKind};
use sluice_bus::{Enqueue, Route, Routes, TriggerId, embedded::EmbeddedBus};

use crate::metrics::Metrics;

/// Events read per routing commit.
const BATCH: usize = 1024;

/// One trigger as the router needs it.
#[derive(Clone, Debug)]
pub struct RouteTarget {
    pub id: TriggerId,
    /// `None`: every event of the bus.
    pub pattern: Option<Pattern>,
    /// Dotted path of `delivery.ordering.key`.
    pub ordering_key: Option<String>,
}

/// All triggers of one bus, compiled.
#[derive(Default)]
pub struct RouteTable {
    matcher: Matcher<usize>,
    match_all: Vec<usize>,
    targets: Vec<RouteTarget>,
}

impl RouteTable {
    pub fn new(targets: Vec<RouteTarget>) -> Self {
        let mut matcher = Matcher::new();
        let mut match_all = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            match &t.pattern {
                Some(p) => matcher.insert(i, p),
                None => match_all.push(i),
            }
        }
        Self {
            matcher,
            match_all,
            targets,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The triggers an event (CloudEvent JSON bytes that Sluice wrote: valid, each key once)
    /// goes to, with each one's ordering key. Only the fields some pattern names are decoded,
    /// and reading stops once they are (the whole event is decoded only for a trigger with an
    /// ordering key).
    pub fn route_json(
        &self,
        json: &[u8],
    ) -> Result<Vec<(&TriggerId, Option<String>)>, sluice_pattern::EventError> {
        let mut hits = Vec::new();
        self.matcher.matches_valid_json_into(json, &mut hits)?;
        hits.extend_from_slice(&self.match_all);
        hits.sort_unstable();
        let mut tree: Option<Value> = None;
        Ok(hits
            .into_iter()
            .filter_map(|i| self.targets.get(i))
            .map(|t| {
                let key = t.ordering_key.as_deref().and_then(|k| {
                    let v = tree
                        .get_or_insert_with(|| serde_json::from_slice(json).unwrap_or(Value::Null));
                    key_of(v, k)
                });
                (&t.id, key)
            })
            .collect())
    }
}

/// Every bus's Triggers, compiled: what a publisher on NATS routes each event with before it
/// stores it (one copy per matched Trigger).
#[derive(Default)]
pub struct BusRoutes {
    tables: HashMap<String, RouteTable>,
    homes: HashMap<TriggerId, String>,
}

impl BusRoutes {
    /// `per_bus`: the Triggers whose source is each bus; `homes`: every queued Trigger's home
    /// bus (schedules and bridges included).
    pub fn new(
        per_bus: HashMap<String, Vec<RouteTarget>>,
        homes: HashMap<TriggerId, String>,
    ) -> Self {
        Self {
            tables: per_bus
                .into_iter()
                .map(|(bus, targets)| (bus, RouteTable::new(targets)))
                .collect(),
            homes,
        }
    }
}

impl Routes for BusRoutes {
    fn route(&self, bus: &str, json: &[u8]) -> Result<Vec<Route>, String> {
        let Some(table) = self.tables.get(bus) else {
            return Ok(Vec::new());
        };
        Ok(table
            .route_json(json)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(trigger, key)| Route {
                trigger: trigger.clone(),
                key,
            })
            .collect())
    }

    fn home(&self, trigger: &str) -> Option<String> {
        self.homes.get(trigger).cloned()
    }

    fn triggers_of(&self, bus: &str) -> Vec<TriggerId> {
        let mut ids: Vec<TriggerId> = self
            .tables
            .get(bus)
            .map(|t| t.targets.iter().map(|t| t.id.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

/// The value at a dotted path, as a string key; absent (or null) means unordered.
pub fn key_of(event: &Value, path: &str) -> Option<String> {
    let mut v = event;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub type SharedTable = Arc<RwLock<Arc<RouteTable>>>;

/// Routes `bus_name` until `stop` turns true.
pub async fn run(
    bus_name: String,
    bus: EmbeddedBus,
    table: SharedTable,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let notified = bus.published();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match route_batch(&bus_name, &bus, &table, &metrics).await {
            Ok(0) => {}
            Ok(_) => continue,
            Err(e) => tracing::error!(bus = %bus_name, error = %e, "routing failed; retrying"),
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Routes one batch; returns how many events it read.
pub async fn route_batch(
    bus_name: &str,
    bus: &EmbeddedBus,
    table: &SharedTable,
    metrics: &Metrics,
) -> Result<usize, sluice_bus::BusError> {
    let cursor = bus.route_cursor(bus_name);
    let events = bus.read_raw(bus_name, cursor, BATCH)?;
    let Some(last) = events.last().map(|e| e.0) else {
        return Ok(0);
    };
    let n = events.len();
    let table = table
        .read()
        .map(|t| t.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let mut items = Vec::new();
    // Only matched events are decoded, so only they get a routing step: an event that matched
    // nothing is in the archive (`sluice tail --after`), not in the trace.
    let mut steps = Vec::new();
    for (pos, accepted_ms, json) in &events {
        // Matched on the stored bytes: an event no pattern wants (a reply, typically) is
        // never decoded, and a matched one is decoded once and stored with the same bytes.
        let hits = match table.route_json(json) {
            Ok(h) if h.is_empty() => {
                metrics.unmatched(bus_name);
                continue;
            }
            Ok(h) => h,
            Err(e) => {
                tracing::error!(bus = %bus_name, pos, error = %e, "unreadable event skipped");
                continue;
            }
        };
        let event = match sluice_event::CloudEvent::from_json(json) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                tracing::error!(bus = %bus_name, pos, error = %e, "unreadable event skipped");
                continue;
            }
        };
        steps.push(Step::of(
            &event,
            *accepted_ms,
            StepKind::Routed {
                bus: bus_name.to_owned(),
                triggers: hits.iter().map(|(t, _)| (*t).clone()).collect(),
            },
        ));
        for (trigger, key) in hits {
            metrics.matched(trigger);
            let item = Enqueue {
                trigger: trigger.clone(),
                bus: bus_name.to_owned(),
                event: event.clone(),
                accepted_ms: *accepted_ms,
                key,
                replay: None,
            };
            items.push((item, Some(json.as_slice())));
        }
    }
    // Workers may lease the matches now; the commit is confirmed in the background, so the
    // next batch is routed while this one is stored.
    let committed = bus.route_now(bus_name, last, items).await?;
    sluice_bus::Bus::trace(bus, steps);
    let bus_name = bus_name.to_owned();
    tokio::spawn(async move {
        if let Ok(Err(e)) = committed.await {
            // Nothing is lost: the cursor move was not stored either, so after a restart these
            // events are routed again.
            tracing::error!(bus = %bus_name, error = %e, "storing routed events failed");
        }
    });
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_by_pattern_and_extracts_ordering_keys() {
        let p = |v: Value| Some(Pattern::parse(&v).unwrap());
        let table = RouteTable::new(vec![
            RouteTarget {
                id: "ns/paid".into(),
                pattern: p(json!({"type": ["order.paid"]})),
                ordering_key: Some("data.orderId".into()),
            },
            RouteTarget {
                id: "ns/all".into(),
                pattern: None,
                ordering_key: None,
            },
            RouteTarget {
                id: "ns/big".into(),
                pattern: p(json!({"data": {"total": [{"numeric": [">", 100]}]}})),
                ordering_key: None,
            },
        ]);
        let e = json!({"type": "order.paid", "data": {"orderId": 7, "total": 50}});
        let got: Vec<(String, Option<String>)> = table
            .route_json(e.to_string().as_bytes())
            .unwrap()
            .into_iter()
            .map(|(t, k)| (t.clone(), k))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ns/paid".into(), Some("7".into())),
                ("ns/all".into(), None)
            ]
        );
        let e = json!({"type": "other", "data": {"total": 500}});
        let ids: Vec<&TriggerId> = table
            .route_json(e.to_string().as_bytes())
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(ids, vec!["ns/all", "ns/big"]);
        assert_eq!(
            key_of(&json!({"subject": "s"}), "subject"),
            Some("s".into())
        );
        assert_eq!(key_of(&json!({"data": {"k": null}}), "data.k"), None);
    }
}
