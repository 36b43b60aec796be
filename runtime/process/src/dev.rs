//! `sluice dev DIR`: loads every manifest under DIR, runs the whole system in this process on
//! the embedded bus, serves HTTP, and re-applies when a manifest or module file changes. A
//! manifest that turns invalid (or a module that fails to load) is reported and its last good
//! version keeps running, so an editing mistake never drops a working Function.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, SystemTime},
};

use sha2::Digest as _;
use sluice_api::{
    EventSchema, Function, FunctionSpec, ObjectRef, Outcome, Resource, Trigger, function::EnvSource,
};
use sluice_pattern::Pattern;
use tokio::sync::watch;

use sluice_bus::embedded::{EmbeddedBus, EmbeddedConfig};
use sluice_delivery::{
    BatchFuture, BatchResult, InvokeError, InvokeFuture, Invoker, SharedInvoker, metrics::Metrics,
    replay::Replays,
};
use sluice_ingress::{
    self as ingress, AppState, IngressConfig,
    secrets::{ManifestSecrets, SharedSecrets},
};

use crate::{
    ProcessError,
    local::{FunctionDef, Local, TriggerDef},
    manifests,
};

#[derive(Clone, Debug)]
pub struct DevOptions {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub ingress: IngressConfig,
    /// How often manifest and module files are checked for changes.
    pub poll: Duration,
    /// How much of each bus is kept (its archive).
    pub retention: sluice_bus::RetentionConfig,
    /// Read on past damaged journal bytes instead of refusing to start.
    pub skip_damaged: bool,
    /// Publishing is refused while the data dir's disk has less free space than this.
    pub disk_reserve: u64,
}

/// The Wasm host as the delivery engine's `Invoker`.
pub struct HostInvoker(pub sluice_host::Handler);

impl Invoker for HostInvoker {
    fn invoke<'a>(&'a self, event: &'a sluice_event::CloudEvent) -> InvokeFuture<'a> {
        Box::pin(async move { self.0.handle(event).await.map_err(invoke_error) })
    }

    fn invoke_batch<'a>(&'a self, events: &'a [Arc<sluice_event::CloudEvent>]) -> BatchFuture<'a> {
        Box::pin(async move {
            let items: Vec<&sluice_event::CloudEvent> = events.iter().map(|e| &**e).collect();
            let out = self.0.handle_batch(&items).await.map_err(invoke_error)?;
            Ok(BatchResult {
                replies: out.replies,
                failed: out
                    .failed
                    .into_iter()
                    .map(|f| {
                        // A failure the handler named is its own verdict on that event.
                        let verdict = if f.retryable {
                            sluice_host::Failure::Retryable(f.message)
                        } else {
                            sluice_host::Failure::Fatal(f.message)
                        };
                        (f.index, invoke_error(verdict))
                    })
                    .collect(),
            })
        })
    }
}

fn invoke_error(f: sluice_host::Failure) -> InvokeError {
    InvokeError {
        retryable: f.is_retryable(),
        reason: f.reason().into(),
        message: f.to_string(),
    }
}

/// Puts the loaded EventSchemas in force for every publisher of `local` (before the
/// Triggers that may select on their versions).
fn apply_schemas(local: &Local, loader: &Loader) {
    for p in local.schemas.set(&loader.schemas()) {
        tracing::error!("{p}");
    }
}

/// Keeps the first EventSchema (in `namespace/name` order) of each event type and source; a
/// second one for the same events would make validation depend on which one is consulted.
fn one_schema_per_type(
    schemas: BTreeMap<String, EventSchema>,
    problems: &mut BTreeMap<String, String>,
) -> BTreeMap<String, EventSchema> {
    let mut owner: BTreeMap<(String, Option<String>), String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (id, s) in schemas {
        let key = (s.spec.ty.clone(), s.spec.source.clone());
        if let Some(first) = owner.get(&key) {
            let msg = format!(
                "spec.type: events of type {:?}{} are already described by EventSchema {first}",
                key.0,
                key.1
                    .as_deref()
                    .map(|s| format!(" from source {s:?}"))
                    .unwrap_or_default()
            );
            tracing::error!("EventSchema {id}: {msg}");
            problems.insert(format!("EventSchema {id}"), msg);
            continue;
        }
        owner.insert(key, id.clone());
        out.insert(id, s);
    }
    out
}

/// A loaded Function: kept while its spec and module bytes stay the same.
struct LoadedFunction {
    spec: FunctionSpec,
    digest: String,
    /// The environment it was loaded with (a Secret's value may change under the same spec).
    env: Vec<(String, String)>,
    invoker: SharedInvoker,
}

/// Turns manifests into what `Local::apply` runs, remembering the last good version of
/// every object.
pub struct Loader {
    dir: PathBuf,
    /// None: Functions are not loaded at all (a router needs only Triggers).
    engine: Option<sluice_host::Engine>,
    /// Load only this Function (`namespace/name`), as a `sluice worker` does.
    only: Option<String>,
    /// Resolve `valueFrom` env entries from `SLUICE_ENV_<NAME>` in this process's
    /// environment, where the operator's worker Deployment puts Secret and ConfigMap values.
    env_from_process: bool,
    functions: BTreeMap<String, LoadedFunction>,
    triggers: BTreeMap<String, Trigger>,
    schemas: BTreeMap<String, EventSchema>,
    /// Module files read on the last pass, watched for changes too.
    modules: Vec<PathBuf>,
    /// The Secret manifests of the last pass.
    manifest_secrets: Arc<ManifestSecrets>,
    /// Where the Triggers' Secrets are looked up: `manifest_secrets` unless set otherwise.
    secrets: SharedSecrets,
    /// What was wrong on the last pass, by `Kind namespace/name` (the console shows it).
    problems: BTreeMap<String, String>,
}

/// Where a process's Triggers find the Secrets they name.
#[derive(Clone)]
pub enum SecretsFrom {
    /// v1 Secret manifests among the process's manifests (`sluice dev`, and processes
    /// started with `--manifests`).
    Manifests,
    /// Somewhere else: Secret volumes mounted into the pod, or the Kubernetes API.
    Store(SharedSecrets),
}

impl Loader {
    pub fn new(dir: PathBuf, engine: sluice_host::Engine) -> Self {
        Self {
            engine: Some(engine),
            ..Self::triggers_only(dir)
        }
    }

    /// A loader of Triggers only.
    pub fn triggers_only(dir: PathBuf) -> Self {
        let manifest_secrets = Arc::new(ManifestSecrets::default());
        Self {
            dir,
            engine: None,
            only: None,
            env_from_process: false,
            functions: BTreeMap::new(),
            triggers: BTreeMap::new(),
            schemas: BTreeMap::new(),
            modules: Vec::new(),
            secrets: manifest_secrets.clone(),
            manifest_secrets,
            problems: BTreeMap::new(),
        }
    }

    /// Looks the Triggers' Secrets up in `from`.
    pub fn secrets_from(mut self, from: SecretsFrom) -> Self {
        self.secrets = match from {
            SecretsFrom::Manifests => self.manifest_secrets.clone(),
            SecretsFrom::Store(store) => store,
        };
        self
    }

    /// Loads just one Function, taking `valueFrom` env entries from the process environment.
    pub fn worker_of(mut self, function: &str) -> Self {
        self.only = Some(function.to_owned());
        self.env_from_process = true;
        self
    }

    fn wants_function(&self, id: &str) -> bool {
        self.engine.is_some() && self.only.as_deref().is_none_or(|o| o == id)
    }

    /// Reads DIR again; returns the Functions and Triggers to apply.
    pub async fn load(&mut self) -> (Vec<FunctionDef>, Vec<TriggerDef>) {
        // A router started before the first Trigger exists (an empty ConfigMap volume) is
        // normal, not an error.
        if self.engine.is_none() && manifests::files(&self.dir).is_ok_and(|f| f.is_empty()) {
            tracing::info!("{}: no Trigger manifests yet", self.dir.display());
            self.triggers.clear();
            return (Vec::new(), Vec::new());
        }
        let files = manifests::load(std::slice::from_ref(&self.dir));
        // Secrets first: a Function's env may name one, wherever its manifest is.
        let mut seen_secrets = BTreeMap::new();
        for doc in files
            .iter()
            .filter_map(|f| f.documents.as_ref().ok())
            .flatten()
        {
            let key = (doc.object.namespace.clone(), doc.object.name.clone());
            match &doc.outcome {
                Outcome::Valid(Resource::Secret(_, values)) => {
                    seen_secrets.insert(key, values.clone());
                }
                Outcome::Invalid(_) if doc.object.kind == "Secret" => {
                    if let Ok(old) = self.manifest_secrets.lookup(&key.0, &key.1) {
                        seen_secrets.insert(key, old);
                    }
                }
                _ => {}
            }
        }
        self.manifest_secrets.replace(seen_secrets);
        let mut seen_functions = BTreeMap::new();
        let mut seen_triggers = BTreeMap::new();
        let mut seen_schemas = BTreeMap::new();
        let mut modules = Vec::new();
        let mut problems = BTreeMap::new();
        for file in files {
            let base = file
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let docs = match file.documents {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!("{}: {e}", file.path.display());
                    continue;
                }
            };
            for doc in docs {
                match doc.outcome {
                    Outcome::Valid(Resource::Function(f)) => {
                        let id = id_of(&doc.object);
                        if !self.wants_function(&id) {
                            continue;
                        }
                        if let Some(p) = &f.spec.module.path {
                            modules.push(base.join(p));
                        }
                        match self.load_function(&id, &f, &base).await {
                            Ok(loaded) => {
                                seen_functions.insert(id, loaded);
                            }
                            Err(e) => {
                                tracing::error!("{}: {}: {e}", file.path.display(), doc.object);
                                problems.insert(doc.object.to_string(), e.to_string());
                                if let Some(old) = self.functions.remove(&id) {
                                    tracing::warn!("{}: keeping the last good version", doc.object);
                                    seen_functions.insert(id, old);
                                }
                            }
                        }
                    }
                    Outcome::Valid(Resource::Trigger(t)) => {
                        seen_triggers.insert(id_of(&doc.object), *t);
                    }
                    Outcome::Valid(Resource::EventSchema(s)) => {
                        seen_schemas.insert(id_of(&doc.object), *s);
                    }
                    Outcome::Valid(Resource::Secret(..)) => {}
                    Outcome::Invalid(errors) => {
                        for e in &errors {
                            tracing::error!("{}: {}: {e}", file.path.display(), doc.object);
                        }
                        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                        problems.insert(doc.object.to_string(), all.join("; "));
                        let id = id_of(&doc.object);
                        let kept = match doc.object.kind.as_str() {
                            "Function" => self
                                .functions
                                .remove(&id)
                                .map(|old| seen_functions.insert(id, old))
                                .is_some(),
                            "Trigger" => self
                                .triggers
                                .remove(&id)
                                .map(|old| seen_triggers.insert(id, old))
                                .is_some(),
                            // An incompatible new version must not switch validation off:
                            // the versions accepted before stay in force.
                            "EventSchema" => self
                                .schemas
                                .remove(&id)
                                .map(|old| seen_schemas.insert(id, old))
                                .is_some(),
                            // Kept by the first pass.
                            "Secret" => self
                                .manifest_secrets
                                .lookup(&doc.object.namespace, &doc.object.name)
                                .is_ok(),
                            _ => false,
                        };
                        if kept {
                            tracing::warn!("{}: keeping the last good version", doc.object);
                        }
                    }
                    Outcome::Skipped { .. } => {}
                }
            }
        }
        self.functions = seen_functions;
        self.triggers = seen_triggers;
        self.schemas = one_schema_per_type(seen_schemas, &mut problems);
        self.modules = modules;
        self.problems = problems;
        let functions = self
            .functions
            .iter()
            .map(|(id, f)| FunctionDef {
                id: id.clone(),
                spec: f.spec.clone(),
                invoker: f.invoker.clone(),
            })
            .collect();
        let triggers = self
            .triggers
            .iter()
            .map(|(id, t)| TriggerDef {
                id: id.clone(),
                namespace: id.split('/').next().unwrap_or_default().to_owned(),
                spec: t.spec.clone(),
                // Validation already parsed it; a failure here cannot happen for a Valid object.
                pattern: t
                    .spec
                    .effective_pattern()
                    .and_then(|p| Pattern::parse(&p).ok()),
                transform: t
                    .spec
                    .transform
                    .as_ref()
                    .and_then(|x| x.compile("spec.transform").ok())
                    .map(Arc::new),
                secrets: self.secrets.clone(),
            })
            .collect();
        (functions, triggers)
    }

    /// The EventSchemas of the last pass, as the publishers check events with them.
    pub fn schemas(&self) -> Vec<sluice_schema::SchemaDef> {
        self.schemas
            .iter()
            .map(|(id, s)| {
                let (ns, name) = id.split_once('/').unwrap_or(("default", id));
                s.spec.to_def(ns, name)
            })
            .collect()
    }

    /// What was wrong on the last pass: `Kind namespace/name` → the errors.
    pub fn problems(&self) -> &BTreeMap<String, String> {
        &self.problems
    }

    /// A Function's environment: `value`s, and `valueFrom`s from the process environment (a
    /// worker pod, where the operator put them) or else from the Secret manifests.
    fn env_of(&self, id: &str, f: &Function) -> Result<Vec<(String, String)>, ProcessError> {
        let ns = id.split_once('/').map_or("default", |(ns, _)| ns);
        let mut env = Vec::new();
        for (i, var) in f.spec.env.iter().enumerate() {
            let field = format!("spec.env[{i}].valueFrom");
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => v.clone(),
                (None, _) if self.env_from_process => {
                    let from = format!("SLUICE_ENV_{}", var.name);
                    std::env::var(&from).map_err(|_| {
                        ProcessError::field(
                            field,
                            format!("{from} is not set in the worker's environment"),
                        )
                    })?
                }
                (
                    None,
                    Some(EnvSource {
                        secret_key_ref: Some(r),
                        ..
                    }),
                ) => {
                    let field = format!("{field}.secretKeyRef");
                    let secret = self
                        .manifest_secrets
                        .lookup(ns, &r.name)
                        .map_err(|e| ProcessError::field(field.clone(), e))?;
                    let bytes = secret.data.get(&r.key).ok_or_else(|| {
                        ProcessError::field(
                            field.clone(),
                            format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
                        )
                    })?;
                    String::from_utf8(bytes.clone()).map_err(|_| {
                        ProcessError::field(
                            field,
                            format!("Secret {ns}/{} key {:?} is not UTF-8 text", r.name, r.key),
                        )
                    })?
                }
                _ => {
                    return Err(ProcessError::field(
                        field,
                        "ConfigMap references are resolved by the operator; in sluice dev use value, or a Secret manifest with secretKeyRef",
                    ));
                }
            };
            env.push((var.name.clone(), value));
        }
        Ok(env)
    }

    async fn load_function(
        &self,
        id: &str,
        f: &Function,
        base: &Path,
    ) -> Result<LoadedFunction, ProcessError> {
        let Some(rel) = &f.spec.module.path else {
            return Err(ProcessError::field(
                "spec.module",
                "sluice dev runs modules from `path`; url, oci and configMap are resolved by the operator",
            ));
        };
        let path = base.join(rel);
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            ProcessError::field(
                "spec.module.path",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        if let Some(pinned) = &f.spec.module.sha256
            && !digest.ends_with(pinned.as_str())
        {
            return Err(ProcessError::field(
                "spec.module.sha256",
                format!(
                    "{} has digest {digest}, not the pinned {pinned}",
                    path.display()
                ),
            ));
        }
        let env = self.env_of(id, f)?;
        if let Some(old) = self.functions.get(id)
            && old.spec == f.spec
            && old.digest == digest
            && old.env == env
        {
            return Ok(LoadedFunction {
                spec: old.spec.clone(),
                digest,
                env,
                invoker: old.invoker.clone(),
            });
        }
        let (ns, name) = id.split_once('/').unwrap_or(("default", id));
        let cfg = sluice_host::HandlerConfig::from_spec(ns, name, &f.spec, env.clone());
        let Some(engine) = self.engine.clone() else {
            return Err(ProcessError::field(
                "spec.function",
                "this process runs no Functions",
            ));
        };
        let started = std::time::Instant::now();
        let handler = tokio::task::spawn_blocking(move || engine.load(&bytes, cfg))
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| {
                ProcessError::field("spec.module.path", format!("{}: {e}", path.display()))
            })?;
        tracing::info!(
            "loaded Function {id} ({}, {:?}) in {:.0?}",
            handler.digest(),
            handler.abi(),
            started.elapsed()
        );
        Ok(LoadedFunction {
            spec: f.spec.clone(),
            digest,
            env,
            invoker: Arc::new(HostInvoker(handler)),
        })
    }

    /// A cheap summary of every manifest and module file; a change means "load again".
    pub fn fingerprint(&self) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
        // A directory that cannot be read right now simply has no files this round.
        let mut paths = manifests::files(&self.dir).unwrap_or_default();
        paths.extend(self.modules.iter().cloned());
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let meta = std::fs::metadata(&p).ok();
                let m = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.map_or(0, |m| m.len());
                (p, m, len)
            })
            .collect()
    }
}

fn id_of(o: &ObjectRef) -> String {
    format!("{}/{}", o.namespace, o.name)
}

/// Runs `sluice dev` until Ctrl-C or SIGTERM.
pub async fn run(opts: DevOptions) -> Result<(), ProcessError> {
    let bus = EmbeddedBus::open(EmbeddedConfig {
        retention: opts.retention.clone(),
        skip_damaged: opts.skip_damaged,
        disk_reserve: opts.disk_reserve,
        ..EmbeddedConfig::new(&opts.data_dir)
    })
    .map_err(|e| ProcessError::setting(format!("--data-dir {}", opts.data_dir.display()), e))?;
    let metrics = Metrics::new();
    let local = Local::new(bus, metrics);
    sluice_delivery::otel::init_from_env();
    let engine = sluice_host::Engine::new(sluice_host::EngineConfig {
        cache_dir: Some(opts.data_dir.join("cache")),
        ..Default::default()
    })?;
    let mut loader = Loader::new(opts.dir.clone(), engine);
    let (functions, triggers) = loader.load().await;
    tracing::info!(
        "applying {} Function(s) and {} Trigger(s) from {}",
        functions.len(),
        triggers.len(),
        opts.dir.display()
    );
    let catalog = Arc::new(sluice_ingress::console::SharedCatalog::default());
    catalog.set(crate::catalog::snapshot(
        &functions,
        &triggers,
        loader.problems(),
    ));
    apply_schemas(&local, &loader);
    local.apply(functions, triggers);

    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState {
        bus: local.shared_bus.clone(),
        metrics: local.metrics.clone(),
        http: local.clone(),
        cfg: Arc::new(opts.ingress.clone()),
        ready,
        replays: Some(Replays::new(local.shared_bus.clone(), {
            let local = local.clone();
            Arc::new(move || local.routes())
        })),
        catalog: catalog.clone(),
        schemas: local.schemas.clone(),
    };
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| ProcessError::setting(format!("--addr {}", opts.addr), e))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(local.clone().run_background(stop_rx.clone()));
    tokio::spawn(watch_files(
        loader,
        local.clone(),
        catalog,
        opts.poll,
        stop_rx.clone(),
    ));
    println!(
        "sluice dev: serving {} on http://{addr} (data in {})",
        opts.dir.display(),
        opts.data_dir.display()
    );
    let order = r#"{"orderId":"o-1","country":"NL","total":120,"items":[{"sku":"TEA","qty":2,"unitPrice":60}]}"#;
    println!(
        "  try: sluice publish --url http://{addr} --type com.example.order.paid --source /shop --data '{order}'"
    );
    println!(
        "   or: curl -i http://{addr}/ -H 'ce-specversion: 1.0' -H 'ce-id: 1' -H 'ce-source: /shop' -H 'ce-type: com.example.order.paid' -H 'content-type: application/json' -d '{order}'"
    );
    println!("  then: sluice tail default --after 0 --url http://{addr}");
    println!("  console: http://{addr}/console");
    let mut stop_wait = stop_rx.clone();
    axum::serve(listener, ingress::app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            ingress::begin_shutdown();
            let _ = stop_tx.send(true);
            let _ = stop_wait.changed().await;
        })
        .await?;
    tracing::info!("shutting down: finishing in-flight deliveries");
    local.shutdown().await;
    sluice_delivery::otel::shutdown();
    Ok(())
}

async fn watch_files(
    mut loader: Loader,
    local: Arc<Local>,
    catalog: Arc<sluice_ingress::console::SharedCatalog>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = loader.fingerprint();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
        let now = loader.fingerprint();
        if now == last {
            continue;
        }
        tracing::info!("manifests changed; reloading");
        let (functions, triggers) = loader.load().await;
        catalog.set(crate::catalog::snapshot(
            &functions,
            &triggers,
            loader.problems(),
        ));
        apply_schemas(&local, &loader);
        local.apply(functions, triggers);
        // Modules named by new manifests are watched from now on.
        last = loader.fingerprint();
    }
}

pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Registered now, not at the first poll: a SIGTERM that arrives before the caller first
    // waits on the future (a worker still loading its module) must not kill the process with
    // the default action, skipping the graceful shutdown.
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
}
