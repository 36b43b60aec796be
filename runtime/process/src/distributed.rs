//! Distributed mode on NATS JetStream: the three processes a cluster runs instead of one
//! `sluice dev`. `sluice ingress` publishes producers' events; `sluice worker` runs one
//! Function's handlers from its Triggers' consumers and publishes their replies; `sluice
//! router` fires schedules and runs the MQTT/NATS bridges. Every one of them publishes, so
//! every one holds the route table (from `--manifests DIR`, or the operator's key-value
//! bucket) and routes each event before storing it: there is no routing hop.

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
    replay::Replays,
    worker::{FunctionRuntime, SharedFunction, run_worker},
};
use sluice_ingress::{
    self as ingress, AppState, HttpRoute, HttpRoutes, IngressConfig, NoHttpRoutes,
    console::SharedCatalog,
};

use crate::{
    ProcessError,
    dev::{Loader, SecretsFrom, shutdown_signal},
    local::{
        FunctionDef, RunningSources, TriggerDef, bus_routes, http_route, queue_config,
        sync_sources, trigger_route,
    },
};

/// How often manifests are checked for changes (a ConfigMap volume updates in place).
const POLL: Duration = Duration::from_secs(1);

/// Where a publisher's Triggers come from.
#[derive(Clone, Debug)]
pub enum RouteSource {
    /// A directory of manifests, re-read within a second of a change.
    Dir(PathBuf),
    /// The operator's table in a JetStream key-value bucket, followed as it changes; the
    /// process acknowledges each revision it loads under `identity`, and the operator reports
    /// a Trigger Ready only once every live publisher routes with it.
    Bucket { bucket: String, identity: String },
}

/// A publisher's route table, kept current: loaded into the bus before anything is published,
/// then reloaded on change.
struct RouteFollower {
    feed: Option<RouteFeed>,
    /// Holds the mirror directory of a bucket's table for as long as the follower lives.
    _mirror: Option<tempfile::TempDir>,
    loader: Loader,
    last: Option<Vec<(PathBuf, Option<std::time::SystemTime>, u64)>>,
    acked: Option<u64>,
    heartbeat: tokio::time::Interval,
    /// Where the table's EventSchemas go for this process's publishers.
    schemas: Arc<sluice_schema::Shared>,
}

impl RouteFollower {
    async fn start(
        bus: &NatsBus,
        source: &RouteSource,
        what: &str,
        secrets: SecretsFrom,
        schemas: Arc<sluice_schema::Shared>,
    ) -> Result<Self, ProcessError> {
        let (feed, mirror, dir) = match source {
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
                let feed = RouteFeed::start(bus, bucket, identity, mirror.path().to_owned())
                    .await
                    .map_err(|e| ProcessError::setting(format!("--routes-bucket {bucket}"), e))?;
                let dir = feed.dir().to_owned();
                println!("{what}: routing from key-value bucket {bucket} as {identity}");
                (Some(feed), Some(mirror), dir)
            }
        };
        if feed.is_none() {
            println!("{what}: routing from {}", dir.display());
        }
        Ok(Self {
            feed,
            _mirror: mirror,
            loader: Loader::triggers_only(dir).secrets_from(secrets),
            last: None,
            acked: None,
            heartbeat: tokio::time::interval(sluice_api::jetstream::ROUTER_ACK_EVERY),
            schemas,
        })
    }

    /// Loads the table into `bus` when it changed (returning its Triggers), and acknowledges
    /// the revision now routed with.
    async fn refresh(&mut self, bus: &NatsBus) -> Option<Vec<TriggerDef>> {
        // Read before loading: what gets loaded is at least this revision.
        let revision = self.feed.as_ref().map(RouteFeed::revision);
        let now = self.loader.fingerprint();
        let mut loaded = None;
        if self.last.as_ref() != Some(&now) {
            let (_, triggers) = self.loader.load().await;
            for p in self.schemas.set(&self.loader.schemas()) {
                tracing::error!("{p}");
            }
            bus.set_routes(Arc::new(bus_routes(&triggers)));
            tracing::info!(
                triggers = triggers.len(),
                revision = revision.unwrap_or_default(),
                "route table loaded"
            );
            self.last = Some(self.loader.fingerprint());
            loaded = Some(triggers);
        }
        if let (Some(f), Some(r)) = (&self.feed, revision)
            && self.acked != Some(r)
        {
            match f.ack(r).await {
                Ok(()) => self.acked = Some(r),
                Err(e) => tracing::warn!(error = %e, "acknowledging the route table"),
            }
        }
        loaded
    }

    /// Waits for a reason to refresh: a new revision, the directory poll, or the heartbeat.
    async fn next(&mut self) {
        let feed = self.feed.as_mut();
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = async { match feed { Some(f) => f.changed().await, None => std::future::pending().await } } => {}
            // The acknowledgement doubles as this publisher's heartbeat.
            _ = self.heartbeat.tick() => self.acked = None,
        }
    }

    async fn leave(&self) {
        if let Some(f) = &self.feed {
            f.leave().await;
        }
    }
}

/// Loads the route table into `bus`, then keeps it current in the background until `stop`.
async fn follow_routes(
    bus: &NatsBus,
    source: &RouteSource,
    what: &str,
    catalog: Option<Arc<SharedCatalog>>,
    schemas: Arc<sluice_schema::Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ProcessError> {
    // Followers of the ingress and workers only route: they run no bridges and read no Secret.
    let mut follower =
        RouteFollower::start(bus, source, what, SecretsFrom::Manifests, schemas).await?;
    // The ingress knows the Triggers (the route table), not how the Functions fare: the
    // console lists those from the cluster's own status (`kubectl get fn`).
    let listed = move |triggers: Option<Vec<TriggerDef>>| {
        if let (Some(c), Some(t)) = (&catalog, triggers) {
            c.set(crate::catalog::snapshot(&[], &t, &Default::default()));
        }
    };
    listed(follower.refresh(bus).await);
    let bus = bus.clone();
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = follower.next() => {}
                _ = stop.changed() => break,
            }
            listed(follower.refresh(&bus).await);
        }
        follower.leave().await;
    }))
}

/// `sluice ingress`: the CloudEvents HTTP endpoints onto JetStream, routing each event as it
/// is stored.
pub async fn run_ingress(
    nats: NatsConfig,
    routes: RouteSource,
    listen: SocketAddr,
    cfg: IngressConfig,
) -> Result<(), ProcessError> {
    let bus = NatsBus::connect(nats).await?;
    let (stop, stop_rx) = watch::channel(false);
    let catalog = Arc::new(SharedCatalog::default());
    let schemas = Arc::new(sluice_schema::Shared::default());
    let follower = follow_routes(
        &bus,
        &routes,
        "sluice ingress",
        Some(catalog.clone()),
        schemas.clone(),
        stop_rx,
    )
    .await?;
    let shared: SharedBus = Arc::new(bus.clone());
    let table = bus.clone();
    let state = AppState {
        bus: shared.clone(),
        metrics: Metrics::new(),
        http: Arc::new(NoHttpRoutes),
        cfg: Arc::new(cfg),
        ready: Arc::new(AtomicBool::new(true)),
        replays: Some(Replays::new(shared, Arc::new(move || table.routes()))),
        catalog,
        schemas,
    };
    let served = serve(listen, state, "sluice ingress").await;
    stop.send_replace(true);
    let _ = follower.await;
    served
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

/// `sluice router`: fires schedules and runs the MQTT/NATS bridges of every Trigger. It no
/// longer routes buses (publishers do), but a schedule needs one process that keeps time
/// and a bridge one that holds the outside subscription; several may run, the message ids
/// make their enqueues of the same tick or message one.
pub async fn run_router(
    nats: NatsConfig,
    source: RouteSource,
    listen: Option<SocketAddr>,
    secrets: SecretsFrom,
) -> Result<(), ProcessError> {
    let bus = NatsBus::connect(nats.clone()).await?;
    let shared: SharedBus = Arc::new(bus.clone());
    let metrics = Metrics::new();
    let schemas = Arc::new(sluice_schema::Shared::default());
    let mut follower =
        RouteFollower::start(&bus, &source, "sluice router", secrets, schemas.clone()).await?;
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = listen {
        let state = AppState {
            bus: shared.clone(),
            metrics: metrics.clone(),
            http: Arc::new(NoHttpRoutes),
            cfg: Arc::new(IngressConfig::default()),
            ready: ready.clone(),
            replays: None,
            catalog: Default::default(),
            schemas: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ProcessError::setting(format!("--listen {addr}"), e))?;
        println!(
            "sluice router: health and metrics on http://{}",
            listener.local_addr()?
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, ingress::app_for(state, ingress::Surface::Health)).await;
        });
    }
    let mut sources = RunningSources::new();
    let own = sluice_ingress::bridge::DefaultNats {
        url: nats.url.clone(),
        credentials: nats.credentials.clone(),
    };
    let mut term = std::pin::pin!(shutdown_signal());
    loop {
        if let Some(triggers) = follower.refresh(&bus).await {
            sync_sources(
                &mut sources,
                &triggers,
                &shared,
                &schemas,
                Some(own.clone()),
            );
            ready.store(true, Ordering::Release);
        }
        tokio::select! {
            _ = follower.next() => {}
            _ = &mut term => break,
        }
    }
    follower.leave().await;
    for (_, (_, h)) in sources {
        h.abort();
    }
    Ok(())
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

/// What `sluice worker` runs.
pub struct WorkerOptions {
    pub nats: NatsConfig,
    /// `namespace/name`.
    pub function: String,
    /// The Function's manifest and its Triggers.
    pub manifests: PathBuf,
    /// The table replies and dead letters are routed with.
    pub routes: RouteSource,
    pub listen: SocketAddr,
    pub cache_dir: Option<PathBuf>,
    pub token: Option<String>,
    /// Where the HTTP Triggers' `tokenSecret`s are.
    pub secrets: SecretsFrom,
}

/// `sluice worker`: one Function's handlers, fed from its Triggers' consumers. Replies and
/// dead letters are routed with the table from `routes` (the whole cluster's Triggers, not
/// only this Function's).
pub async fn run_worker_process(o: WorkerOptions) -> Result<(), ProcessError> {
    let WorkerOptions {
        nats,
        function,
        manifests,
        routes,
        listen,
        cache_dir,
        token,
        secrets,
    } = o;
    if function.split_once('/').is_none() {
        return Err(ProcessError::setting(
            "--function",
            format!("expected NAMESPACE/NAME, got {function:?}"),
        ));
    }
    sluice_delivery::otel::init_from_env();
    let bus = NatsBus::connect(nats).await?;
    let (stop_routes, stop_rx) = watch::channel(false);
    let schemas = Arc::new(sluice_schema::Shared::default());
    let follower = follow_routes(
        &bus,
        &routes,
        "sluice worker",
        None,
        schemas.clone(),
        stop_rx,
    )
    .await?;
    let shared_bus: SharedBus = Arc::new(bus.clone());
    let metrics = Metrics::new();
    let engine = sluice_host::Engine::new(sluice_host::EngineConfig {
        cache_dir,
        ..Default::default()
    })?;
    let mut loader = Loader::new(manifests.clone(), engine)
        .worker_of(&function)
        .secrets_from(secrets);
    let routes = Arc::new(WorkerRoutes::default());
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        bus: shared_bus.clone(),
        metrics: metrics.clone(),
        http: routes.clone(),
        cfg: Arc::new(IngressConfig {
            token: token.clone(),
            ..IngressConfig::default()
        }),
        ready: ready.clone(),
        replays: None,
        catalog: Default::default(),
        schemas: Default::default(),
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
        let _ = axum::serve(listener, ingress::app_for(state, ingress::Surface::Worker)).await;
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
                    let runtime =
                        apply_worker(&bus, &f, &triggers, &routes, &schemas, &mut configured).await;
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
    // Graceful shutdown: stop pulling and hand back what the feeds hold (other replicas get it
    // at once), finish and ack what is in flight, then exit.
    ready.store(false, Ordering::Release);
    for t in &configured {
        bus.unconfigure_queue(t).await;
    }
    desired.send_replace(0);
    if let Some(s) = shared {
        for _ in 0..300 {
            if Arc::strong_count(&s) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop_routes.send_replace(true);
    let _ = follower.await;
    bus.client().flush().await.ok();
    sluice_delivery::otel::shutdown();
    Ok(())
}

async fn apply_worker(
    bus: &NatsBus,
    f: &FunctionDef,
    triggers: &[TriggerDef],
    routes: &WorkerRoutes,
    schemas: &Arc<sluice_schema::Shared>,
    configured: &mut HashSet<String>,
) -> Arc<FunctionRuntime> {
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
        match bus.configure_queue(&t.id, &queue_config(t, f)).await {
            Ok(()) => {
                now_configured.insert(t.id.clone());
                queue_routes.push(trigger_route(t));
            }
            Err(e) => tracing::error!(trigger = %t.id, error = %e, "queue not configured"),
        }
    }
    for gone in configured.difference(&now_configured) {
        bus.unconfigure_queue(gone).await;
    }
    *configured = now_configured;
    *routes.0.write().unwrap_or_else(|p| p.into_inner()) = http;
    Arc::new(FunctionRuntime {
        id: f.id.clone(),
        invoker: f.invoker.clone(),
        concurrency: f.spec.concurrency.max(1) as usize,
        triggers: queue_routes,
        hop_limit: DEFAULT_HOP_LIMIT,
        emits: f.spec.emits.clone(),
        schemas: schemas.clone(),
    })
}
