//! Replays (`sluice replay`): re-delivering a time range of a bus's archive to one Trigger, or
//! to every Trigger whose pattern matches the archived events now, as EventBridge replays an
//! archive. Each re-delivered event carries a `sluicereplay` extension naming its replay; a
//! replay runs in the background with progress, is listed, and can be cancelled.
//!
//! Works over the [`Bus`] trait (read the archive, enqueue on trigger queues), so the
//! embedded bus and NATS replay alike. A replay's record lives in the process that runs it
//! (`sluice dev`, or the ingress replica that was asked); it is not kept across a restart.
//! On NATS the copies are deduplicated per replay name within the duplicate window, so
//! starting an interrupted replay again under the same name stores nothing twice.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use sluice_bus::{
    BusError, Enqueue, Route, Routes, SharedBus, TriggerId,
    archive::{self, Mark},
    now_ms,
};
use sluice_event::Extension;
use sluice_pattern::{Matcher, Pattern};

/// Events read from the archive per step (and enqueued per bus call).
const PAGE: usize = 500;
/// Finished replays kept for `sluice replay list`; the oldest finished go first.
const KEEP_FINISHED: usize = 100;
/// The CloudEvents extension naming the replay an event was re-delivered by.
pub const REPLAY_EXTENSION: &str = "sluicereplay";

/// The route table as it is now (it is reloaded while a replay runs).
pub type RouteView = Arc<dyn Fn() -> Arc<dyn Routes> + Send + Sync>;

/// What to replay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayRequest {
    /// Default: the bus and the start time.
    pub name: Option<String>,
    pub bus: String,
    /// Events accepted at or after this (ms since the epoch)…
    pub from_ms: u64,
    /// …and at or before this; default (and at most): when the replay starts.
    pub to_ms: Option<u64>,
    /// Only this Trigger (`namespace/name`); default: every Trigger of the bus.
    pub trigger: Option<TriggerId>,
    /// Only archived events this EventBridge pattern matches (besides the Trigger's own).
    pub pattern: Option<Value>,
    /// Count what would be delivered; deliver nothing.
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayState {
    Running,
    Completed,
    Cancelled,
    Failed,
}

impl ReplayState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Cancelled => "Cancelled",
            Self::Failed => "Failed",
        }
    }
}

/// A replay's record: what it covers and how far it got.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayStatus {
    pub name: String,
    pub request: ReplayRequest,
    /// The range actually covered: `to_ms` resolved.
    pub to_ms: u64,
    pub state: ReplayState,
    pub error: Option<String>,
    /// Bus positions: the range is after `start` through `end`; `position` is read so far.
    pub start: u64,
    pub end: u64,
    pub position: u64,
    /// Archived events read in the range.
    pub scanned: u64,
    /// Events that went to at least one Trigger.
    pub matched: u64,
    /// Deliveries enqueued (or, in a dry run, that would be), per Trigger.
    pub delivered: BTreeMap<TriggerId, u64>,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
}

impl ReplayStatus {
    /// Fraction of the range read, 0 to 1.
    pub fn progress(&self) -> f64 {
        if self.end <= self.start || self.state == ReplayState::Completed {
            return 1.0;
        }
        (self.position.saturating_sub(self.start)) as f64 / (self.end - self.start) as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "bus": self.request.bus,
            "from": time(self.request.from_ms),
            "to": time(self.to_ms),
            "trigger": self.request.trigger,
            "pattern": self.request.pattern,
            "dryRun": self.request.dry_run,
            "state": self.state.as_str(),
            "error": self.error,
            "progress": (self.progress() * 1000.0).round() / 1000.0,
            "scanned": self.scanned,
            "matched": self.matched,
            "delivered": self.delivered.values().sum::<u64>(),
            "deliveredPerTrigger": self.delivered,
            "startedAt": time(self.started_ms),
            "endedAt": self.ended_ms.and_then(time),
        })
    }
}

/// Why a replay was refused; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Bad input, naming the field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("replay {0:?} already exists; choose another --name")]
    Exists(String),
    #[error("replay {0:?} is unknown")]
    Unknown(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> ReplayError {
    ReplayError::Invalid {
        field,
        message: message.into(),
    }
}

struct Job {
    status: Mutex<ReplayStatus>,
    cancel: AtomicBool,
}

impl Job {
    fn status(&self) -> std::sync::MutexGuard<'_, ReplayStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The replays of one process.
pub struct Replays {
    bus: SharedBus,
    routes: RouteView,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
}

impl Replays {
    pub fn new(bus: SharedBus, routes: RouteView) -> Arc<Self> {
        Arc::new(Self {
            bus,
            routes,
            jobs: Mutex::default(),
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the request against the archive and the route table, then starts the replay in
    /// the background. Refused requests send nothing.
    pub async fn start(self: &Arc<Self>, req: ReplayRequest) -> Result<ReplayStatus, ReplayError> {
        let now = now_ms();
        let name = match &req.name {
            Some(n) => {
                check_name(n)?;
                n.clone()
            }
            None => format!("{}-{now}", req.bus),
        };
        if self.jobs().contains_key(&name) {
            return Err(ReplayError::Exists(name));
        }
        let plan = self.plan(&req, now).await?;
        let status = ReplayStatus {
            name: name.clone(),
            request: req,
            to_ms: plan.to_ms,
            state: ReplayState::Running,
            error: None,
            start: plan.start,
            end: plan.end,
            position: plan.start,
            scanned: 0,
            matched: 0,
            delivered: BTreeMap::new(),
            started_ms: now,
            ended_ms: None,
        };
        let job = Arc::new(Job {
            status: Mutex::new(status.clone()),
            cancel: AtomicBool::new(false),
        });
        {
            let mut jobs = self.jobs();
            if jobs.contains_key(&name) {
                return Err(ReplayError::Exists(name));
            }
            forget_oldest_finished(&mut jobs);
            jobs.insert(name, job.clone());
        }
        let this = self.clone();
        tokio::spawn(async move { this.run(job, plan.pattern).await });
        Ok(status)
    }

    /// Every replay this process ran or runs, by name.
    pub fn list(&self) -> Vec<ReplayStatus> {
        self.jobs().values().map(|j| j.status().clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<ReplayStatus> {
        self.jobs().get(name).map(|j| j.status().clone())
    }

    /// Stops a running replay after the page it is on; what it enqueued stays enqueued.
    pub async fn cancel(&self, name: &str) -> Result<ReplayStatus, ReplayError> {
        let job = self
            .jobs()
            .get(name)
            .cloned()
            .ok_or_else(|| ReplayError::Unknown(name.to_owned()))?;
        job.cancel.store(true, Ordering::Release);
        // Wait (briefly) for the running page to finish, so the answer says where it stopped.
        for _ in 0..100 {
            if job.status().state != ReplayState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(job.status().clone())
    }

    /// Validates the request and finds its range in the archive.
    async fn plan(&self, req: &ReplayRequest, now: u64) -> Result<Plan, ReplayError> {
        if req.bus.is_empty() {
            return Err(invalid("bus", "is empty"));
        }
        if req.from_ms > now {
            return Err(invalid(
                "from",
                "is in the future; a replay covers archived events",
            ));
        }
        let to_ms = req.to_ms.unwrap_or(now).min(now);
        if to_ms < req.from_ms {
            return Err(invalid("to", "is before from"));
        }
        let routes = (self.routes)();
        let of_bus = routes.triggers_of(&req.bus);
        match &req.trigger {
            Some(t) if !of_bus.contains(t) => {
                return Err(invalid(
                    "trigger",
                    format!(
                        "no Trigger {t} reads bus {} (Triggers of {}: {})",
                        req.bus,
                        req.bus,
                        list_or_none(&of_bus)
                    ),
                ));
            }
            None if of_bus.is_empty() => {
                return Err(invalid(
                    "bus",
                    format!(
                        "no Trigger reads bus {}, so nothing would be delivered",
                        req.bus
                    ),
                ));
            }
            _ => {}
        }
        let pattern = match &req.pattern {
            None => None,
            Some(p) => {
                let p = Pattern::parse(p).map_err(|e| invalid("pattern", e.to_string()))?;
                let mut m = Matcher::new();
                m.insert((), &p);
                Some(m)
            }
        };
        let bus = self.bus.as_ref();
        let head = bus.head(&req.bus).await?;
        if head == 0 {
            return Err(invalid("bus", format!("bus {} has no events", req.bus)));
        }
        let Some(oldest) = archive::oldest(bus, &req.bus).await? else {
            return Err(invalid(
                "from",
                format!(
                    "bus {} retains no events: retention removed all {head}",
                    req.bus
                ),
            ));
        };
        check_retained(req.from_ms, to_ms, oldest).map_err(|m| invalid(m.0, m.1))?;
        let start = archive::seek(bus, &req.bus, req.from_ms).await?;
        let end = archive::seek(bus, &req.bus, to_ms.saturating_add(1)).await?;
        Ok(Plan {
            to_ms,
            start,
            end,
            pattern,
        })
    }

    async fn run(&self, job: Arc<Job>, pattern: Option<Matcher<()>>) {
        let (req, to_ms, mut after, end, name) = {
            let s = job.status();
            (s.request.clone(), s.to_ms, s.start, s.end, s.name.clone())
        };
        let outcome: Result<ReplayState, BusError> = async {
            while after < end {
                if job.cancel.load(Ordering::Acquire) {
                    return Ok(ReplayState::Cancelled);
                }
                let page = self.bus.read(&req.bus, after, PAGE).await?;
                if page.is_empty() {
                    break;
                }
                let routes = (self.routes)();
                let mut items = Vec::new();
                let (mut scanned, mut matched) = (0, 0);
                let mut delivered = BTreeMap::<TriggerId, u64>::new();
                for (pos, accepted, event) in page {
                    if pos > end {
                        break;
                    }
                    after = pos;
                    if accepted < req.from_ms || accepted > to_ms {
                        continue;
                    }
                    scanned += 1;
                    let json = event.to_json();
                    let hits = select(
                        routes.as_ref(),
                        &req.bus,
                        req.trigger.as_deref(),
                        pattern.as_ref(),
                        &json,
                    );
                    let hits = match hits {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!(replay = %name, position = pos, error = %e, "archived event skipped");
                            continue;
                        }
                    };
                    if hits.is_empty() {
                        continue;
                    }
                    matched += 1;
                    let mut marked = event;
                    marked
                        .extensions
                        .insert(REPLAY_EXTENSION.into(), Extension::String(name.clone()));
                    let marked = Arc::new(marked);
                    for hit in hits {
                        *delivered.entry(hit.trigger.clone()).or_default() += 1;
                        if req.dry_run {
                            continue;
                        }
                        items.push(Enqueue {
                            bus: routes.home(&hit.trigger).unwrap_or_else(|| req.bus.clone()),
                            trigger: hit.trigger,
                            event: marked.clone(),
                            // A replay is a new delivery: its age (`maxAge`) starts now, or
                            // a week-old archive would expire on arrival.
                            accepted_ms: now_ms(),
                            key: hit.key,
                            replay: Some(name.clone()),
                        });
                    }
                }
                if !items.is_empty() {
                    self.bus.enqueue(items).await?;
                }
                let mut s = job.status();
                s.position = after;
                s.scanned += scanned;
                s.matched += matched;
                for (t, n) in delivered {
                    *s.delivered.entry(t).or_default() += n;
                }
            }
            Ok(ReplayState::Completed)
        }
        .await;
        let mut s = job.status();
        s.ended_ms = Some(now_ms());
        match outcome {
            Ok(state) => s.state = state,
            Err(e) => {
                s.state = ReplayState::Failed;
                s.error = Some(e.to_string());
            }
        }
        tracing::info!(
            replay = %s.name,
            state = s.state.as_str(),
            matched = s.matched,
            "replay finished"
        );
    }
}

struct Plan {
    to_ms: u64,
    start: u64,
    end: u64,
    pattern: Option<Matcher<()>>,
}

/// Which Triggers an archived event is re-delivered to: the Triggers of `bus` whose patterns
/// match it now, narrowed to `trigger` and to events `pattern` matches.
pub fn select(
    routes: &dyn Routes,
    bus: &str,
    trigger: Option<&str>,
    pattern: Option<&Matcher<()>>,
    json: &[u8],
) -> Result<Vec<Route>, String> {
    if let Some(m) = pattern {
        let mut hit = Vec::new();
        m.matches_valid_json_into(json, &mut hit)
            .map_err(|e| e.to_string())?;
        if hit.is_empty() {
            return Ok(Vec::new());
        }
    }
    let mut routes = routes.route(bus, json)?;
    if let Some(t) = trigger {
        routes.retain(|r| r.trigger == t);
    }
    Ok(routes)
}

/// Refuses a range retention has (partly) removed: one ending before the oldest retained
/// event, or starting before it when older events were removed (a bus whose first event is
/// still retained simply has nothing earlier).
fn check_retained(from_ms: u64, to_ms: u64, oldest: Mark) -> Result<(), (&'static str, String)> {
    let at = |ms: u64| time(ms).unwrap_or_else(|| ms.to_string());
    if to_ms < oldest.accepted_ms && oldest.position > 1 {
        return Err((
            "to",
            format!(
                "{} is before the oldest retained event ({}); retention removed the events of this range",
                at(to_ms),
                at(oldest.accepted_ms)
            ),
        ));
    }
    if from_ms < oldest.accepted_ms && oldest.position > 1 {
        return Err((
            "from",
            format!(
                "{} is before the oldest retained event ({}, position {}); retention removed the \
                 events before it: replay from {} or later, or keep more with --retention",
                at(from_ms),
                at(oldest.accepted_ms),
                oldest.position,
                at(oldest.accepted_ms)
            ),
        ));
    }
    Ok(())
}

/// ms since the epoch as RFC 3339 with milliseconds (none when out of chrono's range).
fn time(ms: u64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn check_name(n: &str) -> Result<(), ReplayError> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("{n:?}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"),
        ))
    }
}

fn list_or_none(ids: &[TriggerId]) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

/// Keeps the record bounded: past [`KEEP_FINISHED`] finished replays, the oldest go.
fn forget_oldest_finished(jobs: &mut BTreeMap<String, Arc<Job>>) {
    let mut finished: Vec<(u64, String)> = jobs
        .iter()
        .filter_map(|(n, j)| {
            let s = j.status();
            (s.state != ReplayState::Running).then(|| (s.started_ms, n.clone()))
        })
        .collect();
    if finished.len() < KEEP_FINISHED {
        return;
    }
    finished.sort();
    for (_, n) in finished
        .into_iter()
        .take(1 + jobs.len() - KEEP_FINISHED.min(jobs.len()))
    {
        jobs.remove(&n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{BusRoutes, RouteTarget};
    use std::collections::HashMap;

    fn routes() -> BusRoutes {
        let target = |id: &str, ty: Option<&str>| RouteTarget {
            id: id.into(),
            pattern: ty.map(|t| Pattern::parse(&json!({ "type": [t] })).unwrap()),
            ordering_key: Some("data.k".into()),
        };
        BusRoutes::new(
            HashMap::from([(
                "b".to_owned(),
                vec![target("ns/all", None), target("ns/paid", Some("paid"))],
            )]),
            HashMap::new(),
        )
    }

    fn event(ty: &str, k: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"specversion": "1.0", "id": "1", "source": "s", "type": ty, "data": {"k": k, "n": 1}})).unwrap()
    }

    #[test]
    fn select_narrows_by_trigger_and_pattern_and_keeps_keys() {
        let r = routes();
        let all = select(&r, "b", None, None, &event("paid", "x")).unwrap();
        let ids: Vec<_> = all.iter().map(|r| r.trigger.as_str()).collect();
        assert_eq!(ids, ["ns/all", "ns/paid"]);
        assert_eq!(all[0].key.as_deref(), Some("x"));
        let one = select(&r, "b", Some("ns/paid"), None, &event("paid", "x")).unwrap();
        assert_eq!(one.len(), 1);
        assert!(
            select(&r, "b", Some("ns/paid"), None, &event("other", "x"))
                .unwrap()
                .is_empty(),
            "the Trigger's own pattern still applies"
        );
        let mut m = Matcher::new();
        m.insert((), &Pattern::parse(&json!({"data": {"k": ["y"]}})).unwrap());
        assert!(
            select(&r, "b", None, Some(&m), &event("paid", "x"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            select(&r, "b", None, Some(&m), &event("paid", "y"))
                .unwrap()
                .len(),
            2
        );
        assert!(
            select(&r, "c", None, None, &event("paid", "x"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn ranges_outside_retention_are_refused_by_field() {
        let trimmed = Mark {
            position: 40,
            accepted_ms: 1_000,
        };
        assert_eq!(check_retained(500, 800, trimmed).unwrap_err().0, "to");
        assert_eq!(check_retained(500, 2_000, trimmed).unwrap_err().0, "from");
        assert!(check_retained(1_000, 2_000, trimmed).is_ok());
        let whole = Mark {
            position: 1,
            accepted_ms: 1_000,
        };
        assert!(
            check_retained(0, 2_000, whole).is_ok(),
            "nothing was removed before the first event"
        );
    }

    /// A replay cancelled before its first page enqueues nothing and says so; the name stays
    /// taken; unknown names are 404s.
    #[tokio::test(flavor = "current_thread")]
    async fn a_cancelled_replay_stops_and_stays_listed() {
        use sluice_bus::{
            Publish,
            embedded::{EmbeddedBus, EmbeddedConfig},
        };
        let dir = tempfile::tempdir().unwrap();
        let bus: SharedBus = Arc::new(EmbeddedBus::open(EmbeddedConfig::new(dir.path())).unwrap());
        let events = (0..2_000)
            .map(|i| Publish {
                bus: "b".into(),
                event: sluice_event::CloudEvent::new(format!("e{i}"), "/s", "paid"),
                dedupe: false,
            })
            .collect();
        bus.publish(events).await.unwrap();
        let table: Arc<dyn Routes> = Arc::new(routes());
        let replays = Replays::new(bus.clone(), Arc::new(move || table.clone()));
        let req = ReplayRequest {
            name: Some("big".into()),
            bus: "b".into(),
            trigger: Some("ns/paid".into()),
            ..Default::default()
        };
        let started = replays.start(req.clone()).await.unwrap();
        assert_eq!(started.state, ReplayState::Running);
        assert!(started.end > started.start, "{started:?}");
        // On this one thread the replay has not run yet: the cancel lands before any page.
        let cancelled = replays.cancel("big").await.unwrap();
        assert_eq!(cancelled.state, ReplayState::Cancelled);
        assert_eq!(cancelled.delivered.values().sum::<u64>(), 0);
        assert_eq!(
            bus.depth("ns/paid").await.unwrap().pending(),
            0,
            "nothing enqueued"
        );
        assert_eq!(replays.list().len(), 1);
        assert!(matches!(
            replays.start(req).await,
            Err(ReplayError::Exists(_))
        ));
        assert!(matches!(
            replays.cancel("nope").await,
            Err(ReplayError::Unknown(_))
        ));
    }

    #[test]
    fn names_are_one_safe_token() {
        assert!(check_name("orders-2026_12").is_ok());
        for bad in ["", "-x", "a b", "a.b", "a*", &"x".repeat(64)] {
            assert!(
                matches!(
                    check_name(bad),
                    Err(ReplayError::Invalid { field: "name", .. })
                ),
                "{bad:?}"
            );
        }
    }
}
