//! Fills the Triggers' `matched` and `deadLettered` status (the MATCHED and DEAD-LETTERED
//! columns of `kubectl get trg -o wide`) and their circuit breaker's `circuit` (the CIRCUIT
//! column) from JetStream every few seconds, under its own field manager so the reconciler's
//! status writes never reset them.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use sluice_api::Trigger;
use tokio::sync::watch;

use crate::{
    Context, children,
    queues::{TriggerCounts, home_bus},
};

pub const FIELD_MANAGER: &str = "sluice-operator-counters";
const EVERY: Duration = Duration::from_secs(5);

/// The counters shown now, from a Trigger's status.
fn shown(t: &Trigger) -> TriggerCounts {
    t.status
        .as_ref()
        .map(|s| TriggerCounts {
            matched: s.matched,
            dead_lettered: s.dead_lettered,
            circuit: s.circuit.clone(),
        })
        .unwrap_or_default()
}

/// Runs until `shutdown`; a JetStream or API error skips that Trigger for one round.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let Some(queues) = ctx.queues.clone() else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
        for t in ctx.triggers.state() {
            if !children::routed(&t) || t.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let (ns, name) = (t.namespace().unwrap_or_default(), t.name_any());
            let breaker = t.spec.delivery.circuit_breaker.is_some();
            let counts = match queues.counts(home_bus(&t), &ns, &name, breaker).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(trigger = %format!("{ns}/{name}"), error = %e, "trigger counters");
                    continue;
                }
            };
            if counts == shown(&t) {
                continue;
            }
            let patch = json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Trigger",
                "status": {
                    "matched": counts.matched,
                    "deadLettered": counts.dead_lettered,
                    "circuit": counts.circuit,
                },
            });
            if ctx.fence.check().is_err() {
                return;
            }
            if let Err(e) = Api::<Trigger>::namespaced(ctx.client.clone(), &ns)
                .patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(patch),
                )
                .await
            {
                tracing::debug!(trigger = %format!("{ns}/{name}"), error = %e, "writing trigger counters");
            }
        }
    }
}
