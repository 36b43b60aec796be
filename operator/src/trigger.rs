//! The Trigger reconciler: validate, check the target Function exists, write the `Ready`
//! condition and an Event per change, and poke the routes writer. With JetStream configured a
//! finalizer deletes the Trigger's queue (its consumers and stored events on its home bus's
//! stream) when the Trigger goes.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
        reflector::ObjectRef,
    },
};
use serde_json::json;
use sluice_api::{
    FieldError, Function, Trigger,
    jetstream::{bus_stream, trigger_consumer},
};

use crate::{
    Context, Error, FIELD_MANAGER, Result, children,
    conditions::{Want, changed, describe, merge, now, same},
    function::{CACHE_WAIT, READY, publish},
    queues::home_bus,
};

/// Removes the Trigger's JetStream consumers and stored events before the Trigger goes.
pub const FINALIZER: &str = "sluice.dev/queue";

/// How soon a Trigger waiting for the publishers to load it is looked at again.
const ROUTE_RECHECK: Duration = Duration::from_millis(250);

pub async fn reconcile(t: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile("Trigger");
    let result = dispatch(t, &ctx).await;
    if let Err(e) = &result {
        ctx.metrics.failure("Trigger", e);
    }
    ctx.routes_changed.notify_one();
    result
}

async fn dispatch(t: Arc<Trigger>, ctx: &Context) -> Result<Action> {
    if ctx.queues.is_none() {
        return apply(&t, ctx).await;
    }
    let ns = t.namespace().unwrap_or_default();
    let object = format!("Trigger {ns}/{}", t.name_any());
    let api = Api::<Trigger>::namespaced(ctx.client.clone(), &ns);
    // The finalizer helper adds and removes the finalizer itself.
    ctx.fence.check()?;
    match finalizer(&api, FINALIZER, t, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, ctx).await,
        }
    })
    .await
    {
        Ok(action) => Ok(action),
        // A second reconcile of a Trigger whose finalizer was just removed: it is gone.
        Err(kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(s)))
            if s.code == 404 =>
        {
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::Finalizer {
            object,
            source: Box::new(e),
        }),
    }
}

pub fn error_policy(t: Arc<Trigger>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(trigger = %format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()), error = %e, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// The condition reason for a Trigger's validation errors, from the first field at fault.
pub fn invalid_reason(errors: &[FieldError]) -> &'static str {
    let path = errors.first().map(|e| e.path.as_str()).unwrap_or_default();
    if path.starts_with("spec.pattern") {
        "InvalidPattern"
    } else if path.starts_with("spec.source.schedule") {
        "InvalidSchedule"
    } else if path.starts_with("spec.source") {
        "InvalidSource"
    } else if path.starts_with("spec.delivery") {
        "InvalidDelivery"
    } else {
        "Invalid"
    }
}

/// What a valid Trigger does, for its `Ready` message.
pub fn describe_route(t: &Trigger) -> String {
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let s = &t.spec.source;
    let from = if let Some(bus) = &s.bus {
        format!("bus {bus}")
    } else if let Some(cron) = &s.schedule {
        format!("schedule {cron:?}")
    } else if let Some(http) = &s.http {
        return format!(
            "HTTP /fn/{ns}{} invokes Function {} through Service {}",
            http.path,
            t.spec.function,
            children::child_name(&t.spec.function)
        );
    } else if let Some(m) = &s.mqtt {
        format!("MQTT {} topic {}", m.url, m.topic)
    } else if let Some(n) = &s.nats {
        format!("NATS subject {}", n.subject)
    } else {
        "nowhere".into()
    };
    // Ordered Triggers have one consumer per partition (`<consumer>_p<n>`); the base name
    // still says which consumers are the Trigger's.
    format!(
        "{from} → JetStream consumer {} of stream {} → Function {}",
        trigger_consumer(&ns, &name, None),
        bus_stream(home_bus(t)),
        t.spec.function
    )
}

/// The `Ready` condition a Trigger should have, given whether its Function exists.
pub fn desired(t: &Trigger, function_exists: bool) -> Want {
    let errors = t.validate();
    if !errors.is_empty() {
        return Want::failed(READY, invalid_reason(&errors), describe(&errors));
    }
    if !function_exists {
        return Want::failed(
            READY,
            "FunctionNotFound",
            format!(
                "spec.function: Function {}/{} does not exist",
                t.namespace().unwrap_or_default(),
                t.spec.function
            ),
        );
    }
    Want::ok(READY, "Routed", describe_route(t))
}

async fn apply(t: &Trigger, ctx: &Context) -> Result<Action> {
    tokio::time::timeout(CACHE_WAIT, ctx.functions.wait_until_ready())
        .await
        .map_err(|_| Error::CacheNotReady("Functions"))?
        .map_err(|_| Error::CacheNotReady("Functions"))?;
    let ns = t.namespace().unwrap_or_default();
    let exists = ctx
        .functions
        .get(&ObjectRef::<Function>::new(&t.spec.function).within(&ns))
        .is_some();
    let want = desired(t, exists);
    // A routed Trigger is Ready only once every live publisher (router, ingress, worker)
    // loads a table that contains it; until then it is re-checked often, so Ready follows
    // them within a fraction of a second.
    let (want, action) = match &ctx.routes {
        Some(book) if want.status == sluice_api::ConditionStatus::True && children::routed(t) => {
            let w = book.condition(t, &want.message);
            let action = if w.status == sluice_api::ConditionStatus::True {
                Action::await_change()
            } else {
                Action::requeue(ROUTE_RECHECK)
            };
            (w, action)
        }
        _ => (want, Action::await_change()),
    };
    let old = t.status.clone().unwrap_or_default();
    let generation = t.metadata.generation;
    let wants = [want];
    let conditions = merge(&old.conditions, &wants, generation, &now());
    if !same(&old.conditions, &conditions) || old.observed_generation != generation {
        let patch = json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Trigger",
            "status": { "conditions": conditions, "observedGeneration": generation },
        });
        ctx.fence.check()?;
        Api::<Trigger>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &t.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await?;
    }
    for w in changed(&old.conditions, &wants) {
        publish(ctx, t, w).await;
    }
    Ok(action)
}

async fn cleanup(t: &Trigger, ctx: &Context) -> Result<Action> {
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let bus = home_bus(t);
    if let Some(queues) = &ctx.queues {
        // A queue that cannot be deleted now must not block the Trigger's deletion (and so its
        // namespace's) forever: say so in an Event and let it go.
        ctx.fence.check()?;
        let outcome = match queues.delete(bus, &ns, &name).await {
            Ok(true) => Want::ok(
                "QueueDeleted",
                "QueueDeleted",
                format!(
                    "deleted the JetStream consumers and events of Trigger {ns}/{name} in stream {}",
                    bus_stream(bus)
                ),
            ),
            Ok(false) => return Ok(Action::await_change()),
            Err(e) => Want::failed("QueueDeleted", "QueueNotDeleted", e.to_string()),
        };
        publish(ctx, t, &outcome).await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(source: &str) -> Trigger {
        serde_yaml::from_str(&format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: paid, namespace: shop}}\nspec:\n  delivery: {{}}\n  function: invoice\n  source: {source}\n"
        ))
        .expect("test Trigger parses")
    }

    #[test]
    fn the_route_names_the_consumer_on_the_home_bus_stream() {
        let t = trigger("{bus: orders}");
        assert_eq!(home_bus(&t), "orders");
        assert_eq!(
            describe_route(&t),
            "bus orders → JetStream consumer t_shop_paid of stream sluice_bus_orders → Function invoice"
        );
        // Schedules and bridges put their events on the default bus's stream.
        let t = trigger("{schedule: '*/5 * * * *'}");
        assert_eq!(home_bus(&t), "default");
        assert!(
            describe_route(&t).contains("consumer t_shop_paid of stream sluice_bus_default"),
            "{}",
            describe_route(&t)
        );
        let t = trigger("{http: {path: /paid}}");
        assert!(
            !describe_route(&t).contains("JetStream"),
            "{}",
            describe_route(&t)
        );
    }
}
