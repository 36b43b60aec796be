//! Distributed mode on NATS JetStream: the three processes a cluster runs instead of one
//! `sluice dev`. `sluice ingress` publishes producers' events; `sluice router` routes every
//! bus once (several may run) and fires schedules and bridges; `sluice worker` runs one
//! Function's handlers from its trigger queues. Each reads its Functions and Triggers from
//! `--manifests DIR` (the operator writes them into ConfigMaps) and re-reads on change.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use sluice_bus::{
    SharedBus,
    nats::{NatsBus, NatsConfig, routes::RouteFeed},
};
use sluice_delivery::{
    DEFAULT_HOP_LIMIT,
    metrics::Metrics,
    router::{RouteTable, RouteTarget, SharedTable, nats as nats_router},
    worker::{FunctionRuntime, SharedFunction, run_worker},
};
use sluice_ingress::{
    self as ingress, AppState, HttpRoute, HttpRoutes, IngressConfig, NoHttpRoutes,
};

use crate::{
    ProcessError,
    dev::{Loader, shutdown_signal},
    local::{
        FunctionDef, RunningSources, TriggerDef, http_route, queue_config, sync_sources,
        trigger_route,
    },
};

/// How often manifests are checked for changes (a ConfigMap volume updates in place).
const POLL: Duration = Duration::from_secs(1);

/// `sluice ingress`: the CloudEvents HTTP endpoints onto JetStream.
pub async fn run_ingress(
    nats: NatsConfig,
    listen: SocketAddr,
    cfg: IngressConfig,
) -> Result<(), ProcessError> {
    let bus = NatsBus::connect(nats).await?;
    let state = AppState {
        bus: Arc::new(bus),
        metrics: Metrics::new(),
        http: Arc::new(NoHttpRoutes),
        cfg: Arc::new(cfg),
        ready: Arc::new(AtomicBool::new(true)),
    };
    serve(listen, state, "sluice ingress").await
}

async fn serve(listen: SocketAddr, state: AppState, what: &str) -> Result<(), ProcessError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ProcessError::setting(format!("--listen {listen}"), e))?;
    println!("{what}: serving on http://{}", listener.local_addr()?);
    axum::serve(listener, ingress::app(state))
        .with_graceful_shutdown(async {
            shutdown_signal().await;
            ingress::begin_shutdown();
        })
        .await?;
    Ok(())
}

struct RouterSlot {
    table: SharedTable,
    stop: watch::Sender<bool>,
}

/// Where a router's Triggers come from.
#[derive(Clone, Debug)]
pub enum RouteSource {
    /// A directory of manifests, re-read within a second of a change.
    Dir(PathBuf),
    /// The operator's table in a JetStream key-value bucket, followed as it changes; the
    /// router acknowledges each revision it loads under `identity`.
    Bucket { bucket: String, identity: String },
}

/// `sluice router`: routes every bus named by a Trigger, fires schedules, runs bridges.
pub async fn run_router(
    nats: NatsConfig,
    source: RouteSource,
    listen: Option<SocketAddr>,
) -> Result<(), ProcessError> {
    let bus = NatsBus::connect(nats.clone()).await?;
    let shared: SharedBus = Arc::new(bus.clone());
    let metrics = Metrics::new();
    // The table is read before any routing starts: nothing is routed with an older one.
    let (mut feed, _mirror, manifests) = match &source {
        RouteSource::Dir(d) => (None, None, d.clone()),
        RouteSource::Bucket { bucket, identity } => {
            let mirror = tempfile::Builder::new()
                .prefix("sluice-routes-")
                .tempdir()
                .map_err(|e| {
                    ProcessError::setting(
                        "--routes-bucket",
                        format!("a directory for the route table (is /tmp writable?): {e}"),
                    )
                })?;
            let feed = RouteFeed::start(&bus, bucket, identity, mirror.path().to_owned())
                .await
                .map_err(|e| ProcessError::setting(format!("--routes-bucket {bucket}"), e))?;
            let dir = feed.dir().to_owned();
            println!("sluice router: routing from key-value bucket {bucket} as {identity}");
            (Some(feed), Some(mirror), dir)
        }
    };
    let mut loader = Loader::triggers_only(manifests.clone());
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = listen {
        let state = AppState {
            bus: shared.clone(),
            metrics: metrics.clone(),
            http: Arc::new(NoHttpRoutes),
            cfg: Arc::new(IngressConfig::default()),
            ready: ready.clone(),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ProcessError::setting(format!("--listen {addr}"), e))?;
        println!(
            "sluice router: health and metrics on http://{}",
            listener.local_addr()?
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, ingress::app(state)).await;
        });
    }
    let mut routers: HashMap<String, RouterSlot> = HashMap::new();
    let mut sources = RunningSources::new();
    let mut last = None;
    if feed.is_none() {
        println!("sluice router: routing from {}", manifests.display());
    }
    let mut term = std::pin::pin!(shutdown_signal());
    let mut heartbeat = tokio::time::interval(sluice_api::jetstream::ROUTER_ACK_EVERY);
    let mut acked: Option<u64> = None;
    loop {
        // Read before loading: what gets loaded is at least this revision.
        let revision = feed.as_ref().map(RouteFeed::revision);
        let now = loader.fingerprint();
        if last.as_ref() != Some(&now) {
            let (_, triggers) = loader.load().await;
            apply_routes(&bus, &metrics, &triggers, &mut routers);
            sync_sources(&mut sources, &triggers, &shared, Some(nats.url.clone()));
            ready.store(true, Ordering::Release);
            last = Some(loader.fingerprint());
            tracing::info!(
                triggers = triggers.len(),
                buses = routers.len(),
                revision = revision.unwrap_or_default(),
                "route table loaded"
            );
        }
        if let (Some(f), Some(r)) = (&feed, revision)
            && acked != Some(r)
        {
            match f.ack(r).await {
                Ok(()) => acked = Some(r),
                Err(e) => tracing::warn!(error = %e, "acknowledging the route table"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = async { match feed.as_mut() { Some(f) => f.changed().await, None => std::future::pending().await } } => {}
            // The acknowledgement doubles as this router's heartbeat.
            _ = heartbeat.tick() => acked = None,
            _ = &mut term => break,
        }
    }
    if let Some(f) = &feed {
        f.leave().await;
    }
    for r in routers.values() {
        r.stop.send_replace(true);
    }
    for (_, (_, h)) in sources {
        h.abort();
    }
    // Routers ack only what they enqueued; anything pulled but not acked is redelivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// One router per bus a Trigger names; tables swapped in place on change.
fn apply_routes(
    bus: &NatsBus,
    metrics: &Metrics,
    triggers: &[TriggerDef],
    routers: &mut HashMap<String, RouterSlot>,
) {
    let mut per_bus: HashMap<String, Vec<RouteTarget>> = HashMap::new();
    for t in triggers {
        if let Some(b) = &t.spec.source.bus {
            per_bus.entry(b.clone()).or_default().push(RouteTarget {
                id: t.id.clone(),
                pattern: t.pattern.clone(),
                ordering_key: t.spec.delivery.ordering.as_ref().map(|o| o.key.clone()),
            });
        }
    }
    let buses: HashSet<String> = per_bus.keys().chain(routers.keys()).cloned().collect();
    for b in buses {
        let table = Arc::new(RouteTable::new(per_bus.remove(&b).unwrap_or_default()));
        match routers.get(&b) {
            Some(r) => *r.table.write().unwrap_or_else(|p| p.into_inner()) = table,
            None => {
                let table: SharedTable = Arc::new(RwLock::new(table));
                let (stop, rx) = watch::channel(false);
                tokio::spawn(nats_router::run(
                    bus.clone(),
                    b.clone(),
                    table.clone(),
                    metrics.clone(),
                    rx,
                ));
                routers.insert(b, RouterSlot { table, stop });
            }
        }
    }
}

/// HTTP-source triggers of the worker's Function.
#[derive(Default)]
struct WorkerRoutes(RwLock<HashMap<(String, String), HttpRoute>>);

impl HttpRoutes for WorkerRoutes {
    fn http_route(&self, namespace: &str, path: &str) -> Option<HttpRoute> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_owned(), path.to_owned()))
            .cloned()
    }
}

/// `sluice worker`: one Function's handlers, fed from its trigger queues.
pub async fn run_worker_process(
    nats: NatsConfig,
    function: String,
    manifests: PathBuf,
    listen: SocketAddr,
    cache_dir: Option<PathBuf>,
) -> Result<(), ProcessError> {
    if function.split_once('/').is_none() {
        return Err(ProcessError::setting(
            "--function",
            format!("expected NAMESPACE/NAME, got {function:?}"),
        ));
    }
    let bus = NatsBus::connect(nats).await?;
    let shared_bus: SharedBus = Arc::new(bus.clone());
    let metrics = Metrics::new();
    let engine = sluice_host::Engine::new(sluice_host::EngineConfig {
        cache_dir,
        ..Default::default()
    })?;
    let mut loader = Loader::new(manifests.clone(), engine).worker_of(&function);
    let routes = Arc::new(WorkerRoutes::default());
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        bus: shared_bus.clone(),
        metrics: metrics.clone(),
        http: routes.clone(),
        cfg: Arc::new(IngressConfig::default()),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ProcessError::setting(format!("--listen {listen}"), e))?;
    println!(
        "sluice worker: Function {function} from {}, serving on http://{}",
        manifests.display(),
        listener.local_addr()?
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, ingress::app(state)).await;
    });

    let (desired, desired_rx) = watch::channel(0u32);
    let mut shared: Option<SharedFunction> = None;
    let mut configured: HashSet<String> = HashSet::new();
    let mut last = None;
    let mut term = std::pin::pin!(shutdown_signal());
    let mut depth_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let now = loader.fingerprint();
        if last.as_ref() != Some(&now) {
            let (functions, triggers) = loader.load().await;
            match functions.into_iter().find(|f| f.id == function) {
                Some(f) => {
                    let runtime = apply_worker(&bus, &f, &triggers, &routes, &mut configured).await;
                    match &shared {
                        Some(s) => *s.write().unwrap_or_else(|p| p.into_inner()) = runtime,
                        None => {
                            let s: SharedFunction = Arc::new(RwLock::new(runtime));
                            desired.send_replace(1);
                            tokio::spawn(run_worker(
                                0,
                                s.clone(),
                                shared_bus.clone(),
                                metrics.clone(),
                                desired_rx.clone(),
                            ));
                            shared = Some(s);
                        }
                    }
                    ready.store(true, Ordering::Release);
                }
                None => tracing::error!(
                    "{}: no valid Function {function}; waiting for one",
                    manifests.display()
                ),
            }
            last = Some(loader.fingerprint());
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = depth_tick.tick() => {
                for t in &configured {
                    if let Ok(d) = shared_bus.depth(t).await {
                        metrics.set_depth(t, d.pending());
                    }
                }
            }
            _ = &mut term => break,
        }
    }
    // Graceful shutdown: stop pulling, finish and ack what is in flight, then exit.
    ready.store(false, Ordering::Release);
    desired.send_replace(0);
    if let Some(s) = shared {
        for _ in 0..300 {
            if Arc::strong_count(&s) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bus.client().flush().await.ok();
    Ok(())
}

async fn apply_worker(
    bus: &NatsBus,
    f: &FunctionDef,
    triggers: &[TriggerDef],
    routes: &WorkerRoutes,
    configured: &mut HashSet<String>,
) -> Arc<FunctionRuntime> {
    let timeout = f.spec.limits.timeout.as_std();
    let mine: Vec<&TriggerDef> = triggers
        .iter()
        .filter(|t| t.function_id() == f.id)
        .collect();
    let mut queue_routes = Vec::new();
    let mut http = HashMap::new();
    let mut now_configured = HashSet::new();
    for t in mine {
        if let Some(h) = &t.spec.source.http {
            http.insert(
                (t.namespace.clone(), h.path.clone()),
                http_route(t, f.invoker.clone()),
            );
            continue;
        }
        match bus.configure_queue(&t.id, &queue_config(t, timeout)).await {
            Ok(()) => {
                now_configured.insert(t.id.clone());
                queue_routes.push(trigger_route(t));
            }
            Err(e) => tracing::error!(trigger = %t.id, error = %e, "queue not configured"),
        }
    }
    for gone in configured.difference(&now_configured) {
        bus.unconfigure_queue(gone);
    }
    *configured = now_configured;
    *routes.0.write().unwrap_or_else(|p| p.into_inner()) = http;
    Arc::new(FunctionRuntime {
        id: f.id.clone(),
        invoker: f.invoker.clone(),
        concurrency: f.spec.concurrency.max(1) as usize,
        triggers: queue_routes,
        hop_limit: DEFAULT_HOP_LIMIT,
    })
}
