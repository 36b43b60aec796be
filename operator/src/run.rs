//! Wires the operator: HTTP endpoints, leader election, caches, the two controllers, the routes
//! writer and the autoscaler; shuts all of it down on SIGTERM or Ctrl-C.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, future};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use sluice_api::{EventSchema, Function, Trigger};
use tokio::sync::{Notify, watch};

use crate::{
    Config, Context, Error, Settings, autoscaler, children, counters, event_schema, function, http,
    lease::Elector,
    metrics::Metrics,
    module::Resolver,
    queues::{JetStream, Queues},
    routes, trigger,
};

/// Resolves when `rx` turns true.
async fn until(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn signals(tx: watch::Sender<bool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
}

fn identity(config: &Config) -> String {
    config.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "sluice-operator".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Runs the operator until SIGTERM/Ctrl-C (`Ok`) or until leadership is lost (`Err`, so the
/// process exits non-zero and is restarted as a standby).
pub async fn run(config: Config) -> Result<(), Error> {
    crate::install_crypto_provider();
    let client = Client::try_default().await.map_err(|e| {
        Error::setting(
            "Kubernetes configuration",
            format!("none found (in-cluster or KUBECONFIG): {e}"),
        )
    })?;
    let metrics = Arc::new(Metrics::default());
    let (shutdown_tx, shutdown) = watch::channel(false);
    signals(shutdown_tx.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::setting(format!("--listen {}", config.listen), e))?;
    tracing::info!(addr = %config.listen, "serving /healthz and /metrics");
    let server = tokio::spawn(
        axum::serve(listener, http::app(metrics.clone()))
            .with_graceful_shutdown(until(shutdown.clone()))
            .into_future(),
    );

    let id = identity(&config);
    let elector = Elector::new(client.clone(), &config.namespace, &config.lease_name, &id);
    let mut lost = None;
    if config.leader_election {
        tracing::info!(lease = %config.lease_name, identity = %id, "waiting for the leader Lease");
        let mut sd = shutdown.clone();
        if !elector.acquire(&mut sd).await {
            let _ = server.await;
            return Ok(());
        }
        tracing::info!(identity = %id, "leading");
        let (el, sd, tx) = (elector.clone(), shutdown.clone(), shutdown_tx.clone());
        lost = Some(tokio::spawn(async move {
            let kept = el.hold(sd).await;
            if !kept {
                tracing::error!("lost the leader Lease; stopping");
                let _ = tx.send(true);
            }
            !kept
        }));
    }
    metrics.leader.set(1);

    let jetstream = JetStream::connect(&config.nats_url, config.nats_creds.as_deref()).await?;
    let routes =
        routes::RouteBook::start(jetstream.context(), &config.routes_bucket, shutdown.clone());
    let queues: Arc<dyn Queues> = Arc::new(jetstream);

    let routes_changed = Arc::new(Notify::new());
    let triggers_api = Api::<Trigger>::all(client.clone());
    let (triggers, writer) = reflector::store();
    let notify = routes_changed.clone();
    let trigger_cache = tokio::spawn(
        reflector::reflector(
            writer,
            watcher(triggers_api.clone(), watcher::Config::default()),
        )
        .default_backoff()
        .take_until(until(shutdown.clone()))
        .for_each(move |_| {
            notify.notify_one();
            future::ready(())
        }),
    );

    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=sluice-operator");
    let functions_ctl = Controller::new(
        Api::<Function>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Deployment>::all(client.clone()), owned.clone())
    .owns(Api::<Service>::all(client.clone()), owned.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), owned)
    .watches(
        triggers_api.clone(),
        watcher::Config::default(),
        |t: Trigger| {
            let ns = t.namespace().unwrap_or_default();
            Some(ObjectRef::<Function>::new(&t.spec.function).within(&ns))
        },
    )
    .graceful_shutdown_on(until(shutdown.clone()));
    let functions = functions_ctl.store();
    let schemas_ctl = Controller::new(
        Api::<EventSchema>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(until(shutdown.clone()));
    let schemas = schemas_ctl.store();
    let trigger_index = triggers.clone();
    let triggers_ctl = Controller::new(triggers_api, watcher::Config::default())
        .watches(
            Api::<Function>::all(client.clone()),
            watcher::Config::default(),
            move |f: Function| {
                let (ns, name) = (f.namespace().unwrap_or_default(), f.name_any());
                trigger_index
                    .state()
                    .into_iter()
                    .filter(|t| children::targets(t, &ns, &name))
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(until(shutdown.clone()));

    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: Arc::new(Settings::from_config(&config)),
        triggers,
        functions,
        schemas,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice-operator".into(),
                instance: Some(id.clone()),
            },
        ),
        metrics: metrics.clone(),
        modules: Resolver::new(&config.oci_plain_http, &config.module_allow_hosts),
        queues: Some(queues),
        routes_changed,
        routes: Some(routes),
        fence: if config.leader_election {
            elector.fence()
        } else {
            crate::lease::Fence::open()
        },
    });

    let functions_run = functions_ctl
        .run(function::reconcile, function::error_policy, ctx.clone())
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "Function controller");
            }
            future::ready(())
        });
    let triggers_run = triggers_ctl
        .run(trigger::reconcile, trigger::error_policy, ctx.clone())
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "Trigger controller");
            }
            future::ready(())
        });
    let schemas_run = schemas_ctl
        .run(
            event_schema::reconcile,
            event_schema::error_policy,
            ctx.clone(),
        )
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "EventSchema controller");
            }
            future::ready(())
        });
    tokio::join!(
        functions_run,
        triggers_run,
        schemas_run,
        routes::run(ctx.clone(), shutdown.clone()),
        autoscaler::run(ctx.clone(), config.scale_interval, shutdown.clone()),
        counters::run(ctx.clone(), shutdown.clone()),
    );
    let _ = trigger_cache.await;
    metrics.leader.set(0);
    let lost = match lost {
        Some(handle) => handle.await.unwrap_or(false),
        None => false,
    };
    if config.leader_election && !lost {
        elector.release().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if lost {
        return Err(Error::LostLease);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Installs the log subscriber (`RUST_LOG`, default info) and runs the operator on a new
/// multi-threaded runtime; shared by `sluice-operator` and `sluice operator`.
pub fn main_with(config: Config) -> Result<(), Error> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_runtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Container logs are files, not terminals: no colour codes in `kubectl logs`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::setting("tokio runtime", e))?
        .block_on(run(config))
}
