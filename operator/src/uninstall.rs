//! What `helm uninstall` runs before it removes the chart (a pre-delete hook Job running
//! `sluice uninstall`): delete every Function and Trigger while the operator still runs, so
//! its finalizers delete the Triggers' consumers and stored events on the bus streams and the
//! workers go with their Functions (owner references); then, unless told to keep them, delete
//! Sluice's JetStream streams (the buses, the dead letters) and key-value buckets. A Trigger whose finalizer the operator does not clear in time (no
//! operator running) is finalized here instead, so nothing is left that blocks
//! `kubectl delete crd`.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;
use sluice_api::{Function, Trigger, jetstream as names};

use crate::{
    Error,
    queues::{JetStream, Queues, home_bus},
    trigger::FINALIZER,
};

/// The label of every worker pod (`children::worker_labels`).
const WORKER_SELECTOR: &str = "app.kubernetes.io/name=sluice-worker";

/// How `sluice uninstall` runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub nats_url: String,
    pub nats_creds: Option<std::path::PathBuf>,
    /// Keep the buses, dead letters and route buckets in JetStream.
    pub keep_streams: bool,
    /// How long the operator gets to finalize the Triggers before this does it.
    pub finalize_wait: Duration,
    pub routes_bucket: String,
}

/// The JetStream streams Sluice made: buses (which also hold the Triggers' queues), dead
/// letters, the route buckets, the gates bucket.
pub fn is_sluice_stream(name: &str, routes_bucket: &str) -> bool {
    // `sluice_bus_<bus>`: bus names are DNS labels, so the prefix is all they share.
    name.starts_with(&names::bus_stream(""))
        || name == names::DEAD_LETTER_STREAM
        || name == names::TRACE_STREAM
        || name == format!("KV_{routes_bucket}")
        || name == format!("KV_{}", names::routers_bucket(routes_bucket))
        || name == format!("KV_{}", names::GATES_BUCKET)
}

pub async fn run(opts: Options) -> Result<(), Error> {
    crate::install_crypto_provider();
    let client = Client::try_default().await?;
    let triggers = Api::<Trigger>::all(client.clone());
    let functions = Api::<Function>::all(client.clone());
    let lp = ListParams::default();

    let mut js = None;
    {
        let mut o = async_nats::ConnectOptions::new()
            .name("sluice-uninstall")
            .connection_timeout(Duration::from_secs(5));
        if let Some(c) = &opts.nats_creds {
            o = o
                .credentials_file(c)
                .await
                .map_err(|e| Error::setting(format!("--nats-creds {}", c.display()), e))?;
        }
        match o.connect(&opts.nats_url).await {
            Ok(c) => js = Some(jetstream::new(c)),
            Err(e) => eprintln!(
                "sluice uninstall: NATS at {} unreachable ({e}); JetStream objects are left",
                opts.nats_url
            ),
        }
    }

    for t in triggers.list(&lp).await?.items {
        delete(
            &Api::<Trigger>::namespaced(client.clone(), &t.namespace().unwrap_or_default()),
            &t.name_any(),
        )
        .await?;
    }
    for f in functions.list(&lp).await?.items {
        delete(
            &Api::<Function>::namespaced(client.clone(), &f.namespace().unwrap_or_default()),
            &f.name_any(),
        )
        .await?;
    }
    println!(
        "sluice uninstall: deleted every Function and Trigger; waiting for the operator to finalize them"
    );

    let deadline = Instant::now() + opts.finalize_wait;
    loop {
        let left = triggers.list(&lp).await?.items;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for t in left {
                let ns = t.namespace().unwrap_or_default();
                let name = t.name_any();
                if let Some(js) = &js {
                    let bus = home_bus(&t);
                    match JetStream::from_context(js.clone())
                        .delete(bus, &ns, &name)
                        .await
                    {
                        Ok(false) => {}
                        Ok(true) => println!(
                            "sluice uninstall: deleted the consumers and events of Trigger {ns}/{name} in JetStream stream {}",
                            names::bus_stream(bus)
                        ),
                        Err(e) => eprintln!("sluice uninstall: queue of Trigger {ns}/{name}: {e}"),
                    }
                }
                let finalizers: Vec<String> = t
                    .finalizers()
                    .iter()
                    .filter(|f| f.as_str() != FINALIZER)
                    .cloned()
                    .collect();
                let api = Api::<Trigger>::namespaced(client.clone(), &ns);
                let patch = json!({ "metadata": { "finalizers": finalizers } });
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    Ok(_) => {
                        println!(
                            "sluice uninstall: finalized Trigger {ns}/{name} (no operator did)"
                        )
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            continue;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Functions have no finalizer; their Deployments, Services and ConfigMaps are garbage
    // collected through their owner references.
    while !functions.list(&lp).await?.items.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("sluice uninstall: no Function or Trigger left");
    // Workers publish, and a publisher that starts creates the route buckets it follows: a
    // worker pod still starting (a Deployment rolled as its Triggers went) would make them
    // again after they are deleted below. Their Deployments are gone; wait for the pods.
    let pods = Api::<Pod>::all(client.clone());
    let workers = ListParams::default().labels(WORKER_SELECTOR);
    let deadline = Instant::now() + opts.finalize_wait;
    loop {
        let left = pods.list(&workers).await?.items.len();
        if left == 0 {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "sluice uninstall: {left} worker pod(s) still running; deleting JetStream objects anyway"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    if let (Some(js), false) = (&js, opts.keep_streams) {
        let streams: Vec<String> = js
            .stream_names()
            .try_collect()
            .await
            .map_err(|e| Error::Queue(e.to_string()))?;
        for s in streams
            .into_iter()
            .filter(|s| is_sluice_stream(s, &opts.routes_bucket))
        {
            match js.delete_stream(&s).await {
                Ok(_) => println!("sluice uninstall: deleted JetStream stream {s}"),
                Err(e) => eprintln!("sluice uninstall: JetStream stream {s}: {e}"),
            }
        }
    }
    Ok(())
}

async fn delete<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_selector_is_the_workers_label() {
        let labels = crate::children::worker_labels("f");
        let (k, v) = WORKER_SELECTOR.split_once('=').unwrap();
        assert_eq!(labels.get(k).map(String::as_str), Some(v));
    }

    #[test]
    fn only_sluice_streams_are_deleted() {
        let b = names::ROUTES_BUCKET;
        for s in [
            "sluice_bus_default",
            "sluice_bus_orders",
            "sluice_dead_letters",
            "sluice_trace",
            "KV_sluice_routes",
            "KV_sluice_routes_routers",
            "KV_sluice_gates",
        ] {
            assert!(is_sluice_stream(s, b), "{s}");
        }
        for s in [
            "orders",
            "KV_other",
            "sluice",
            "KV_sluice_routes_x",
            "KV_sluice_gates_x",
            "sluice_busy",
        ] {
            assert!(!is_sluice_stream(s, b), "{s}");
        }
    }
}
