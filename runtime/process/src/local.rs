//! The whole system in one process (`sluice dev`): applies a set of Functions and Triggers to
//! the embedded bus by starting routers, worker pools, schedules and HTTP routes, and scales
//! each Function's workers with the same `decide()` the operator uses. Applying again swaps
//! only what changed; nothing already accepted is dropped.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use sluice_api::{FunctionSpec, TriggerSpec, scaling};
use sluice_event::CloudEvent;
use sluice_pattern::Pattern;
use tokio::sync::watch;

use sluice_bus::{
    DEFAULT_BUS, Enqueue, QueueConfig, Routes, SharedBus, TriggerId, embedded::EmbeddedBus, now_ms,
};
use sluice_delivery::{
    DEFAULT_HOP_LIMIT, SharedInvoker,
    metrics::Metrics,
    router::{self, BusRoutes, RouteTable, RouteTarget, SharedTable},
    worker::{FunctionRuntime, SharedFunction, TriggerRoute, run_worker},
};
use sluice_ingress::{HttpRoute, HttpRoutes, RouteToken, secrets::SharedSecrets};

/// Extra lease time beyond a function's timeout before an event is handed out again.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// A Function ready to run.
pub struct FunctionDef {
    /// `namespace/name`.
    pub id: String,
    pub spec: FunctionSpec,
    pub invoker: SharedInvoker,
}

/// A Trigger with its pattern compiled.
pub struct TriggerDef {
    /// `namespace/name`.
    pub id: TriggerId,
    pub namespace: String,
    pub spec: TriggerSpec,
    pub pattern: Option<Pattern>,
    /// `spec.transform` compiled.
    pub transform: Option<Arc<sluice_transform::Transform>>,
    /// Where the Secrets it names (`tokenSecret`, `credentialsSecret`) are looked up.
    pub secrets: SharedSecrets,
}

impl TriggerDef {
    pub fn function_id(&self) -> String {
        format!("{}/{}", self.namespace, self.spec.function)
    }

    /// The bus whose stream holds this trigger's queue on NATS: its source bus, or the default
    /// bus for schedules and bridges.
    pub fn home_bus(&self) -> String {
        self.spec
            .source
            .bus
            .clone()
            .unwrap_or_else(|| DEFAULT_BUS.to_owned())
    }
}

/// Every bus's Triggers compiled, with every queued Trigger's home bus: what publishers on
/// NATS route with.
pub fn bus_routes(triggers: &[TriggerDef]) -> BusRoutes {
    let mut per_bus: HashMap<String, Vec<RouteTarget>> = HashMap::new();
    let mut homes = HashMap::new();
    for t in triggers {
        if t.spec.source.http.is_some() {
            continue;
        }
        homes.insert(t.id.clone(), t.home_bus());
        if let Some(b) = &t.spec.source.bus {
            per_bus.entry(b.clone()).or_default().push(RouteTarget {
                id: t.id.clone(),
                pattern: t.pattern.clone(),
                ordering_key: t.spec.delivery.ordering.as_ref().map(|o| o.key.clone()),
            });
        }
    }
    BusRoutes::new(per_bus, homes)
}

struct FunctionSlot {
    shared: SharedFunction,
    spec: FunctionSpec,
    desired: watch::Sender<u32>,
    workers: u32,
    last_needed: Duration,
}

struct RouterSlot {
    table: SharedTable,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Applied {
    functions: HashMap<String, FunctionSlot>,
    routers: HashMap<String, RouterSlot>,
    /// Schedules and bridges, each with the fingerprint of its source.
    sources: RunningSources,
    http: HashMap<(String, String), HttpRoute>,
}

/// The running local system.
pub struct Local {
    pub bus: EmbeddedBus,
    /// The same bus behind the `Bus` trait, for workers and ingress.
    pub shared_bus: SharedBus,
    pub metrics: Metrics,
    applied: Mutex<Applied>,
    /// The applied Triggers as a route table, for replays (`sluice replay`).
    routes: std::sync::RwLock<Arc<dyn Routes>>,
    started: Instant,
    hop_limit: i64,
    /// The EventSchemas every publisher of this process checks events against.
    pub schemas: Arc<sluice_schema::Shared>,
}

impl Local {
    pub fn new(bus: EmbeddedBus, metrics: Metrics) -> Arc<Self> {
        let m = metrics.clone();
        bus.observe_writer(Arc::new(move |phase, took| {
            m.bus_writer(phase.as_str(), took)
        }));
        Arc::new(Self {
            shared_bus: Arc::new(bus.clone()),
            bus,
            metrics,
            applied: Mutex::default(),
            routes: std::sync::RwLock::new(Arc::new(sluice_bus::NoRoutes)),
            started: Instant::now(),
            hop_limit: DEFAULT_HOP_LIMIT,
            schemas: Arc::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The applied Triggers' route table.
    pub fn routes(&self) -> Arc<dyn Routes> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes the running system match `functions` and `triggers`.
    pub fn apply(&self, functions: Vec<FunctionDef>, triggers: Vec<TriggerDef>) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(bus_routes(&triggers));
        let mut a = self.lock();
        let by_function: HashMap<String, Vec<&TriggerDef>> =
            triggers.iter().fold(HashMap::new(), |mut m, t| {
                m.entry(t.function_id()).or_default().push(t);
                m
            });
        let known: HashSet<&str> = functions.iter().map(|f| f.id.as_str()).collect();
        for t in &triggers {
            if !known.contains(t.function_id().as_str()) {
                tracing::warn!(trigger = %t.id, "spec.function: Function {} not found; its events wait on the queue", t.function_id());
            }
        }

        // Functions and their worker pools.
        let mut keep = HashSet::new();
        let mut invokers: HashMap<String, (SharedInvoker, Duration)> = HashMap::new();
        for f in functions {
            keep.insert(f.id.clone());
            let timeout = f.spec.limits.timeout.as_std();
            invokers.insert(f.id.clone(), (f.invoker.clone(), timeout));
            let routes: Vec<TriggerRoute> = by_function
                .get(&f.id)
                .into_iter()
                .flatten()
                .filter(|t| t.spec.source.http.is_none())
                .map(|t| {
                    self.bus.configure_queue(&t.id, &queue_config(t, &f));
                    trigger_route(t)
                })
                .collect();
            let runtime = Arc::new(FunctionRuntime {
                id: f.id.clone(),
                invoker: f.invoker,
                concurrency: f.spec.concurrency.max(1) as usize,
                triggers: routes,
                hop_limit: self.hop_limit,
                emits: f.spec.emits.clone(),
                schemas: self.schemas.clone(),
            });
            match a.functions.get_mut(&f.id) {
                Some(slot) => {
                    *slot.shared.write().unwrap_or_else(|p| p.into_inner()) = runtime;
                    slot.spec = f.spec;
                }
                None => {
                    let (desired, _) = watch::channel(0);
                    let slot = FunctionSlot {
                        shared: Arc::new(RwLock::new(runtime)),
                        spec: f.spec,
                        desired,
                        workers: 0,
                        last_needed: self.now(),
                    };
                    a.functions.insert(f.id.clone(), slot);
                }
            }
        }
        for (id, slot) in a.functions.iter_mut() {
            if !keep.contains(id) {
                // Workers finish what they hold and exit; queued events stay for a comeback.
                slot.desired.send_replace(0);
                slot.workers = 0;
            }
        }
        a.functions.retain(|id, _| keep.contains(id));

        // Routers: one per bus, tables rebuilt from the bus triggers.
        let mut per_bus: HashMap<String, Vec<RouteTarget>> = HashMap::new();
        for t in &triggers {
            if let Some(bus) = &t.spec.source.bus {
                per_bus.entry(bus.clone()).or_default().push(RouteTarget {
                    id: t.id.clone(),
                    pattern: t.pattern.clone(),
                    ordering_key: t.spec.delivery.ordering.as_ref().map(|o| o.key.clone()),
                });
            }
        }
        // Every bus gets a router, also buses no trigger names yet, so a trigger added later
        // sees only events published after it (as in EventBridge). The table is in place
        // before a router starts: a router must never route a backlog with an empty table.
        let buses: HashSet<String> = per_bus
            .keys()
            .cloned()
            .chain(a.routers.keys().cloned())
            .chain(self.bus.buses())
            .collect();
        for bus in buses {
            let table = Arc::new(RouteTable::new(per_bus.remove(&bus).unwrap_or_default()));
            match a.routers.get(&bus) {
                Some(r) => *r.table.write().unwrap_or_else(|p| p.into_inner()) = table,
                None => self.start_router(&mut a, &bus, table),
            }
        }

        sync_sources(
            &mut a.sources,
            &triggers,
            &self.shared_bus,
            &self.schemas,
            None,
        );

        // HTTP routes.
        a.http.clear();
        for t in &triggers {
            let Some(http) = &t.spec.source.http else {
                continue;
            };
            let Some((invoker, _)) = invokers.get(&t.function_id()) else {
                continue;
            };
            a.http.insert(
                (t.namespace.clone(), http.path.clone()),
                http_route(t, invoker.clone()),
            );
        }
        drop(a);
        self.scale_once();
    }

    fn start_router(&self, a: &mut Applied, bus: &str, table: Arc<RouteTable>) {
        let table: SharedTable = Arc::new(RwLock::new(table));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(router::run(
            bus.to_owned(),
            self.bus.clone(),
            table.clone(),
            self.metrics.clone(),
            stop_rx,
        ));
        a.routers.insert(bus.to_owned(), RouterSlot { table, stop });
    }

    /// Starts a router (with no triggers) for any bus that appeared since the last `apply`:
    /// a producer published to a new name.
    pub fn adopt_new_buses(&self) {
        let buses = self.bus.buses();
        let mut a = self.lock();
        for b in buses {
            if !a.routers.contains_key(&b) {
                self.start_router(&mut a, &b, Arc::new(RouteTable::default()));
            }
        }
    }

    /// One scaling pass over every Function (DESIGN §6).
    pub fn scale_once(&self) {
        let now = self.now();
        let mut a = self.lock();
        for (id, slot) in a.functions.iter_mut() {
            let triggers: Vec<TriggerId> = slot
                .shared
                .read()
                .map(|f| f.triggers.iter().map(|t| t.id.clone()).collect())
                .unwrap_or_default();
            let mut pending = 0;
            for t in &triggers {
                let depth = self.bus.depth(t).pending();
                self.metrics.set_depth(t, depth);
                let circuit = self.bus.breaker(t).map(|b| {
                    b.status(sluice_bus::sched_ms(), sluice_bus::now_ms())
                        .circuit
                });
                pending += sluice_bus::gate::scaling_depth(depth, circuit);
            }
            let d = scaling::decide(pending, slot.workers, &slot.spec, slot.last_needed, now);
            if d.needed || d.replicas != slot.workers {
                slot.last_needed = now;
            }
            if d.replicas != slot.workers {
                tracing::info!(function = %id, from = slot.workers, to = d.replicas, pending, "scaling workers");
                slot.desired.send_replace(d.replicas);
                for i in slot.workers..d.replicas {
                    let rx = slot.desired.subscribe();
                    tokio::spawn(run_worker(
                        i,
                        slot.shared.clone(),
                        self.shared_bus.clone(),
                        self.metrics.clone(),
                        rx,
                    ));
                }
                slot.workers = d.replicas;
            }
            self.metrics.set_workers(id, slot.workers);
        }
    }

    /// Runs the scaler, lease reaper, new-bus adoption and retention until `stop`.
    pub async fn run_background(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut last_trim = Instant::now();
        let mut last_tick = Instant::now();
        loop {
            let notified = self.bus.queued();
            tokio::select! {
                // Scale promptly when work arrives (a Function at zero wakes on its first
                // event), but at most every 20 ms.
                _ = notified => tokio::time::sleep(Duration::from_millis(20)).await,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            self.scale_once();
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                self.bus.expire_leases();
                self.adopt_new_buses();
            }
            if last_trim.elapsed() >= Duration::from_secs(60) {
                last_trim = Instant::now();
                if let Err(e) = self.bus.trim().await {
                    tracing::warn!(error = %e, "retention pass failed");
                }
            }
        }
    }

    /// Stops routers and workers after they finish what they hold, and makes the bus durable.
    pub async fn shutdown(&self) {
        {
            let mut a = self.lock();
            for r in a.routers.values() {
                r.stop.send_replace(true);
            }
            for slot in a.functions.values_mut() {
                slot.desired.send_replace(0);
                slot.workers = 0;
            }
            for (_, (_, h)) in a.sources.drain() {
                h.abort();
            }
        }
        // Give in-flight handlers a moment to finish and ack.
        for _ in 0..50 {
            let busy = {
                let a = self.lock();
                a.functions.values().any(|s| {
                    s.shared
                        .read()
                        .map(|f| {
                            f.triggers
                                .iter()
                                .any(|t| self.bus.depth(&t.id).inflight > 0)
                        })
                        .unwrap_or(false)
                })
            };
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Err(e) = self.bus.flush().await {
            tracing::warn!(error = %e, "final flush failed");
        }
    }
}

impl HttpRoutes for Local {
    fn http_route(&self, namespace: &str, path: &str) -> Option<HttpRoute> {
        self.lock()
            .http
            .get(&(namespace.to_owned(), path.to_owned()))
            .cloned()
    }
}

/// Running schedule and bridge tasks by trigger, with the fingerprint of their source.
pub type RunningSources = HashMap<TriggerId, (String, tokio::task::JoinHandle<()>)>;

/// Makes the running schedules and bridges (sources outside the bus) match `triggers`: a task
/// is restarted when its source or pattern changes and stopped when its trigger goes.
/// `default_nats` is the server a `nats` source without a `url` bridges from.
pub fn sync_sources(
    running: &mut RunningSources,
    triggers: &[TriggerDef],
    bus: &SharedBus,
    schemas: &Arc<sluice_schema::Shared>,
    default_nats: Option<sluice_ingress::bridge::DefaultNats>,
) {
    let mut keep = HashSet::new();
    for t in triggers {
        let src = &t.spec.source;
        if src.schedule.is_none() && src.mqtt.is_none() && src.nats.is_none() {
            continue;
        }
        keep.insert(t.id.clone());
        let fingerprint = serde_json::to_string(&(src, &t.spec.pattern)).unwrap_or_default();
        if running.get(&t.id).is_some_and(|(f, _)| *f == fingerprint) {
            continue;
        }
        let task = match &src.schedule {
            Some(expr) => tokio::spawn(run_schedule(t.id.clone(), expr.clone(), bus.clone())),
            None => tokio::spawn(sluice_ingress::bridge::run(
                t.id.clone(),
                t.spec.clone(),
                t.pattern.clone(),
                default_nats.clone(),
                bus.clone(),
                schemas.clone(),
                t.secrets.clone(),
            )),
        };
        if let Some((_, old)) = running.insert(t.id.clone(), (fingerprint, task)) {
            old.abort();
        }
    }
    running.retain(|id, (_, h)| {
        let k = keep.contains(id);
        if !k {
            h.abort();
        }
        k
    });
}

/// How a trigger's queue hands out events: `maxInflight` at a time, leased for the function
/// timeout plus a margin, with up to the Function's concurrency ready ahead.
/// A batching Trigger's events wait up to `maxWait` in a forming batch before the handler
/// starts, so its lease covers that too, and a process holds a batch per slot ready.
pub fn queue_config(t: &TriggerDef, f: &FunctionDef) -> QueueConfig {
    let delivery = &t.spec.delivery;
    let slots = f.spec.concurrency.max(1) as usize;
    let (wait, per_slot) = match &delivery.batch {
        Some(b) => (b.max_wait.as_std(), b.max_events.max(1) as usize),
        None => (Duration::ZERO, 1),
    };
    QueueConfig {
        bus: t.home_bus(),
        ordered: delivery.ordering.is_some(),
        max_inflight: delivery.max_inflight as usize,
        lease: f.spec.limits.timeout.as_std() + wait + LEASE_MARGIN,
        prefetch: slots
            .saturating_mul(per_slot)
            .min(delivery.max_inflight.max(1) as usize),
        gate: sluice_bus::gate::Gate::of(delivery),
    }
}

/// How a (non-HTTP) trigger's deliveries are handled.
pub fn trigger_route(t: &TriggerDef) -> TriggerRoute {
    TriggerRoute {
        id: t.id.clone(),
        retry: t.spec.delivery.retry.clone(),
        dead_letter_bus: t.spec.delivery.dead_letter.as_ref().map(|d| d.bus.clone()),
        reply_bus: t
            .spec
            .source
            .bus
            .clone()
            .unwrap_or_else(|| DEFAULT_BUS.into()),
        transform: t.transform.clone(),
        batch: sluice_delivery::batch::Limits::of(&t.spec.delivery),
        gate: sluice_bus::gate::Gate::of(&t.spec.delivery),
    }
}

/// The route of an HTTP-source trigger.
pub fn http_route(t: &TriggerDef, invoker: SharedInvoker) -> HttpRoute {
    let methods = t
        .spec
        .source
        .http
        .as_ref()
        .filter(|h| !h.methods.is_empty())
        .map_or_else(
            || vec!["POST".to_string()],
            |h| {
                h.methods
                    .iter()
                    .map(|m| format!("{m:?}").to_uppercase())
                    .collect()
            },
        );
    HttpRoute {
        trigger: t.id.clone(),
        function: t.function_id(),
        methods,
        invoker,
        reply_bus: DEFAULT_BUS.into(),
        transform: t.transform.clone(),
        token: t
            .spec
            .source
            .http
            .as_ref()
            .and_then(|h| h.token_secret.clone())
            .map(|secret| RouteToken {
                namespace: t.namespace.clone(),
                secret,
                store: t.secrets.clone(),
            }),
    }
}

/// Fires a schedule trigger: at each cron time, an event straight onto its queue. The event
/// id is the trigger and the time, so several routers firing the same schedule on JetStream
/// enqueue it once.
pub async fn run_schedule(trigger: TriggerId, expr: String, bus: SharedBus) {
    let cron = match croner::Cron::new(&expr).parse() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(trigger = %trigger, "spec.source.schedule: {e}");
            return;
        }
    };
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let time = next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut e = CloudEvent::new(
            format!("{trigger}@{time}"),
            format!("sluice://{trigger}"),
            "dev.sluice.schedule",
        );
        e.time = Some(time);
        e.subject = Some(expr.clone());
        let item = Enqueue {
            trigger: trigger.clone(),
            // A schedule has no source bus: its queue lives on the default bus.
            bus: DEFAULT_BUS.to_owned(),
            event: Arc::new(e),
            accepted_ms: now_ms(),
            key: None,
            replay: None,
        };
        if let Err(err) = bus.enqueue(vec![item]).await {
            tracing::error!(trigger = %trigger, error = %err, "scheduled event not enqueued");
        }
    }
}
