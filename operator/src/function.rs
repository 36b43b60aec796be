//! The Function reconciler: validate, resolve the module, apply the children the builders in
//! `children` return (server-side apply, one field manager), write status, and publish an
//! Event for every condition that changed. Invalid Functions keep their last good children.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use serde_json::{Map, Value, json};
use sluice_api::{ConditionStatus, Function, FunctionStatus, Trigger};

use crate::{
    AUTOSCALER_FIELD_MANAGER, Context, Error, FIELD_MANAGER, Result, children,
    conditions::{Want, changed, describe, merge, now, same},
    module::{Delivery, ResolvedModule},
};

pub const READY: &str = "Ready";
pub const MODULE_RESOLVED: &str = "ModuleResolved";
/// How long a reconcile waits for the Trigger cache after a restart before giving up (and
/// being retried): writing manifests from an empty cache would strip workers of triggers.
pub const CACHE_WAIT: Duration = Duration::from_secs(10);

pub async fn reconcile(f: Arc<Function>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile("Function");
    let result = apply(&f, &ctx).await;
    if let Err(e) = &result {
        ctx.metrics.failure("Function", e);
    }
    ctx.routes_changed.notify_one();
    result
}

pub fn error_policy(f: Arc<Function>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(function = %format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any()), error = %e, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// The valid Triggers in the cache that target `f`.
pub fn triggers_of(ctx: &Context, f: &Function) -> Vec<Arc<Trigger>> {
    let (ns, name) = (f.namespace().unwrap_or_default(), f.name_any());
    ctx.triggers
        .state()
        .into_iter()
        .filter(|t| children::targets(t, &ns, &name) && t.validate().is_empty())
        .collect()
}

async fn apply(f: &Function, ctx: &Context) -> Result<Action> {
    let old = f.status.clone().unwrap_or_default();
    let errors = f.validate();
    if !errors.is_empty() {
        let wants = [Want::failed(READY, "Invalid", describe(&errors))];
        write_status(ctx, f, &old, &wants, None).await?;
        return Ok(Action::await_change());
    }
    let module = match ctx.modules.resolve(&ctx.client, f).await {
        Ok(m) => m,
        Err(e) => {
            let wants = [
                Want::failed(MODULE_RESOLVED, e.reason, e.message.clone()),
                Want::failed(READY, "ModuleNotResolved", e.message.clone()),
            ];
            write_status(ctx, f, &old, &wants, None).await?;
            return Ok(if e.transient {
                Action::requeue(Duration::from_secs(15))
            } else {
                Action::await_change()
            });
        }
    };
    tokio::time::timeout(CACHE_WAIT, ctx.triggers.wait_until_ready())
        .await
        .map_err(|_| Error::CacheNotReady("Triggers"))?
        .map_err(|_| Error::CacheNotReady("Triggers"))?;
    let triggers = triggers_of(ctx, f);
    let http = triggers.iter().any(|t| t.spec.source.http.is_some());
    apply_children(ctx, f, &module, &triggers).await?;

    let name = children::child_name(&f.name_any());
    let wants = [
        Want::ok(
            MODULE_RESOLVED,
            "Resolved",
            format!("{} from {}", module.digest(), module.origin()),
        ),
        Want::ok(
            READY,
            "Reconciled",
            format!(
                "Deployment {name} applied with {} Trigger(s){}",
                triggers.len(),
                if http {
                    format!("; Service {name} on port 80")
                } else {
                    String::new()
                }
            ),
        ),
    ];
    write_status(ctx, f, &old, &wants, Some(module.digest())).await?;
    // A ConfigMap module can change under the same spec: look again every minute.
    Ok(Action::requeue(match module.delivery {
        Delivery::ConfigMap { .. } => Duration::from_secs(60),
        _ => Duration::from_secs(300),
    }))
}

/// Applies the manifests ConfigMap, the Deployment and (iff an HTTP Trigger targets the
/// Function) the Service; removes a Service no longer needed.
pub async fn apply_children(
    ctx: &Context,
    f: &Function,
    module: &ResolvedModule,
    triggers: &[Arc<Trigger>],
) -> Result<()> {
    let ns = f.namespace().unwrap_or_default();
    let name = children::child_name(&f.name_any());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let refs: Vec<&Trigger> = triggers.iter().map(AsRef::as_ref).collect();
    let manifests = children::worker_manifests(f, module, &refs)?;
    ctx.fence.check()?;
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &name,
            &pp,
            &Patch::Apply(children::manifests_configmap(f, manifests)),
        )
        .await?;
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns);
    let deployment =
        children::worker_deployment(f, module, &ctx.settings, &children::token_secrets(&refs));
    if deployments.get_opt(&name).await?.is_none() {
        // Created once with the replicas the Function starts at, under the autoscaler's field
        // manager, which thereby owns `spec.replicas`; the apply below never names it, so it
        // neither resets the count nor lets Kubernetes default it to one running pod.
        let mut first = deployment.clone();
        if let Some(spec) = first.spec.as_mut() {
            spec.replicas = Some(
                i32::try_from(sluice_api::scaling::initial_replicas(&f.spec)).unwrap_or(i32::MAX),
            );
        }
        let pp = PostParams {
            field_manager: Some(AUTOSCALER_FIELD_MANAGER.into()),
            ..Default::default()
        };
        ctx.fence.check()?;
        match deployments.create(&pp, &first).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.fence.check()?;
    deployments
        .patch(&name, &pp, &Patch::Apply(deployment))
        .await?;
    let http = triggers.iter().any(|t| t.spec.source.http.is_some());
    if let Some(policy) = &ctx.settings.worker_network_policy {
        ctx.fence.check()?;
        Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &name,
                &pp,
                &Patch::Apply(children::worker_network_policy(f, policy, http)),
            )
            .await?;
    }
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    if http {
        services
            .patch(&name, &pp, &Patch::Apply(children::worker_service(f)))
            .await?;
    } else {
        match services.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes the reconciler's part of the status (conditions, digest, selector,
/// observedGeneration) when it changed, and an Event per changed condition.
async fn write_status(
    ctx: &Context,
    f: &Function,
    old: &FunctionStatus,
    wants: &[Want],
    digest: Option<String>,
) -> Result<()> {
    let name = f.name_any();
    let generation = f.metadata.generation;
    let conditions = merge(&old.conditions, wants, generation, &now());
    let selector = children::selector_string(&name);
    let digest = digest.or_else(|| old.digest.clone());
    let unchanged = same(&old.conditions, &conditions)
        && old.digest == digest
        && old.selector.as_deref() == Some(selector.as_str())
        && old.observed_generation == generation;
    if !unchanged {
        let mut status = Map::new();
        status.insert("conditions".into(), serde_json::to_value(&conditions)?);
        if let Some(d) = &digest {
            status.insert("digest".into(), json!(d));
        }
        status.insert("selector".into(), json!(selector));
        if let Some(g) = generation {
            status.insert("observedGeneration".into(), json!(g));
        }
        let patch = json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Function",
            "status": Value::Object(status),
        });
        ctx.fence.check()?;
        Api::<Function>::namespaced(ctx.client.clone(), &f.namespace().unwrap_or_default())
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await?;
    }
    for w in changed(&old.conditions, wants) {
        publish(ctx, f, w).await;
    }
    Ok(())
}

/// One Event per condition change; a failed Event is logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, w: &Want) {
    let event = Event {
        type_: if w.status == ConditionStatus::True {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: w.reason.clone(),
        note: Some(
            format!("{}: {}", w.type_, w.message)
                .chars()
                .take(1000)
                .collect(),
        ),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason = %w.reason, "publishing an Event failed");
    }
}
