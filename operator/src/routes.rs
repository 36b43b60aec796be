//! The routers' configuration: one ConfigMap (`sluice-routes` in the operator's namespace,
//! key `triggers.yaml`) holding every valid, routed Trigger whose Function exists. Rendered
//! whenever Triggers or Functions may have changed and written only when its text changes.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::reflector::{ObjectRef, Store},
};
use sluice_api::{Function, Trigger};
use tokio::sync::watch;

use crate::{Context, FIELD_MANAGER, Result, children};

/// The Triggers the routers serve: valid, not HTTP, with an existing Function.
pub fn routed(triggers: &Store<Trigger>, functions: &Store<Function>) -> Vec<Arc<Trigger>> {
    triggers
        .state()
        .into_iter()
        .filter(|t| {
            let ns = t.namespace().unwrap_or_default();
            children::routed(t)
                && t.validate().is_empty()
                && functions
                    .get(&ObjectRef::<Function>::new(&t.spec.function).within(&ns))
                    .is_some()
        })
        .collect()
}

pub fn render(ctx: &Context) -> Result<String> {
    let ts = routed(&ctx.triggers, &ctx.functions);
    let refs: Vec<&Trigger> = ts.iter().map(AsRef::as_ref).collect();
    children::routes(&refs)
}

async fn write(ctx: &Context, text: String) -> Result<()> {
    let ns = &ctx.settings.namespace;
    Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
        .patch(
            children::ROUTES_CONFIGMAP,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(children::routes_configmap(ns, text)),
        )
        .await?;
    Ok(())
}

/// Keeps the routes ConfigMap current until `shutdown`. Waits for both caches first, so a
/// restart never publishes an empty table to the routers.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        _ = async {
            let _ = ctx.triggers.wait_until_ready().await;
            let _ = ctx.functions.wait_until_ready().await;
        } => {}
        _ = shutdown.changed() => return,
    }
    let mut last: Option<String> = None;
    loop {
        match render(&ctx) {
            Ok(text) if last.as_ref() != Some(&text) => match write(&ctx, text.clone()).await {
                Ok(()) => {
                    tracing::info!(bytes = text.len(), "routes ConfigMap written");
                    last = Some(text);
                }
                Err(e) => tracing::warn!(error = %e, "writing the routes ConfigMap failed"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rendering the routes failed"),
        }
        tokio::select! {
            _ = ctx.routes_changed.notified() => {
                // Coalesce a burst of changes (an `kubectl apply -f dir/`) into one write.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // A Function's deletion is not an event here; a slow re-render covers it.
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
