//! The EventSchema reconciler: validate (each version a JSON Schema, each compatible with the
//! one before it under `spec.compatibility`), write the `Ready` condition, the newest version
//! and an Event per change, and poke the routes writer: valid EventSchemas travel in the route
//! table to every publisher, which checks events against them before storing.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;
use sluice_api::{EventSchema, FieldError};

use crate::{
    Context, Error, FIELD_MANAGER, Result,
    conditions::{Want, changed, describe, merge, now, same},
    function::{READY, publish},
};

pub async fn reconcile(s: Arc<EventSchema>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile("EventSchema");
    let result = apply(&s, &ctx).await;
    if let Err(e) = &result {
        ctx.metrics.failure("EventSchema", e);
    }
    ctx.routes_changed.notify_one();
    result
}

pub fn error_policy(s: Arc<EventSchema>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(schema = %format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()), error = %e, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// The condition reason for an EventSchema's validation errors.
fn invalid_reason(errors: &[FieldError]) -> &'static str {
    if errors
        .iter()
        .any(|e| e.message.contains("compatible with version"))
    {
        "Incompatible"
    } else {
        "Invalid"
    }
}

/// The `Ready` condition an EventSchema should have. An invalid one is left out of the route
/// table, so the publishers keep checking with the last version they were given.
pub fn desired(s: &EventSchema) -> Want {
    let errors = s.validate();
    if !errors.is_empty() {
        return Want::failed(READY, invalid_reason(&errors), describe(&errors));
    }
    let versions: Vec<String> = s
        .spec
        .versions
        .iter()
        .map(|v| v.version.to_string())
        .collect();
    let from = s
        .spec
        .source
        .as_deref()
        .map(|src| format!(" from {src}"))
        .unwrap_or_default();
    Want::ok(
        READY,
        "Accepted",
        format!(
            "events of type {}{from} are checked against version {} (or the version their dataschema names: {})",
            s.spec.ty,
            s.spec.latest().unwrap_or_default(),
            versions.join(", ")
        ),
    )
}

async fn apply(s: &EventSchema, ctx: &Context) -> Result<Action> {
    let ns = s.namespace().unwrap_or_default();
    let want = desired(s);
    let latest = (want.status == sluice_api::ConditionStatus::True)
        .then(|| s.spec.latest())
        .flatten();
    let old = s.status.clone().unwrap_or_default();
    let generation = s.metadata.generation;
    let wants = [want];
    let conditions = merge(&old.conditions, &wants, generation, &now());
    if !same(&old.conditions, &conditions)
        || old.observed_generation != generation
        || old.latest != latest
    {
        let patch = json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "EventSchema",
            "status": { "conditions": conditions, "observedGeneration": generation, "latest": latest },
        });
        ctx.fence.check()?;
        Api::<EventSchema>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &s.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await?;
    }
    for w in changed(&old.conditions, &wants) {
        publish(ctx, s, w).await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(versions: &str) -> EventSchema {
        serde_yaml::from_str(&format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: EventSchema\nmetadata: {{name: paid, namespace: shop}}\nspec:\n  type: com.example.paid\n  versions: {versions}\n"
        ))
        .expect("test EventSchema parses")
    }

    #[test]
    fn an_incompatible_version_is_named_and_not_ready() {
        let ok = desired(&schema(
            "[{version: 1, schema: {type: object}}, {version: 2, schema: {type: object, properties: {a: {type: string}}}}]",
        ));
        assert_eq!(ok.status, sluice_api::ConditionStatus::True);
        assert!(ok.message.contains("against version 2"), "{}", ok.message);
        let bad = desired(&schema(
            "[{version: 1, schema: {type: [object, string]}}, {version: 2, schema: {type: object}}]",
        ));
        assert_eq!(bad.status, sluice_api::ConditionStatus::False);
        assert_eq!(bad.reason, "Incompatible");
        assert!(
            bad.message.contains("spec.versions[1].schema: version 2 is not backward compatible with version 1: $.data: type narrowed"),
            "{}",
            bad.message
        );
    }
}
