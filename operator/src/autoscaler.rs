//! The autoscaler: every `--scale-interval`, pending events per Function (over the JetStream
//! consumers of its Triggers on their home buses' streams) → `sluice_api::scaling::decide` →
//! the Deployment's scale subresource, and `status.replicas`/`status.pending` under its own
//! field manager.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};
use serde_json::json;
use sluice_api::{Function, FunctionSpec, scaling::decide};
use tokio::sync::watch;

use crate::{
    AUTOSCALER_FIELD_MANAGER, Context, Result, children, function::triggers_of,
    metrics::FunctionLabels, queues::home_bus,
};

/// How often the replica count is re-read from the API server, in case someone else
/// changed it (a recreated Deployment, a manual `kubectl scale deploy`).
const REREAD_EVERY: Duration = Duration::from_secs(15);

/// What the autoscaler remembers about one Function between passes.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    /// Replicas as last set or read; `None` until read from the Deployment.
    pub current: Option<u32>,
    /// When the current replica count was last needed (see `decide`).
    pub last_needed: Duration,
    /// When `current` was last read from the API server.
    pub read_at: Duration,
    /// The (replicas, pending) last written to status.
    pub reported: Option<(u32, u64)>,
}

impl Scale {
    pub fn new(now: Duration) -> Self {
        Self {
            current: None,
            last_needed: now,
            read_at: now,
            reported: None,
        }
    }

    /// One decision: the replicas to apply, if they differ from the current count. Pure, so
    /// the loop is tested on traces; `current` must be known.
    pub fn step(&mut self, pending: u64, spec: &FunctionSpec, now: Duration) -> Option<u32> {
        let current = self.current?;
        let d = decide(pending, current, spec, self.last_needed, now);
        if d.needed || d.replicas != current {
            self.last_needed = now;
        }
        self.current = Some(d.replicas);
        (d.replicas != current).then_some(d.replicas)
    }
}

pub struct Autoscaler {
    ctx: Arc<Context>,
    origin: Instant,
    state: HashMap<ObjectRef<Function>, Scale>,
}

impl Autoscaler {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            origin: Instant::now(),
            state: HashMap::new(),
        }
    }

    /// Scales every Function once.
    pub async fn pass(&mut self) {
        let started = Instant::now();
        let functions = self.ctx.functions.state();
        self.state.retain(|k, _| {
            functions
                .iter()
                .any(|f| &ObjectRef::from_obj(f.as_ref()) == k)
        });
        for f in functions {
            if let Err(e) = self.scale(&f).await {
                tracing::debug!(function = %f.name_any(), error = %e, "autoscaler skipped a Function");
            }
        }
        self.ctx
            .metrics
            .autoscaler_pass
            .observe(started.elapsed().as_secs_f64());
    }

    async fn pending(&self, f: &Function) -> Result<u64> {
        let Some(queues) = &self.ctx.queues else {
            return Ok(0);
        };
        let ns = f.namespace().unwrap_or_default();
        let triggers = triggers_of(&self.ctx, f);
        // HTTP Triggers invoke the workers directly: no queue to read.
        let depths = join_all(triggers.iter().filter(|t| children::routed(t)).map(|t| {
            let name = t.name_any();
            let ns = ns.clone();
            // A Trigger whose breaker is open asks for one worker (for the trial), however
            // deep its backlog.
            let circuit = t
                .status
                .as_ref()
                .and_then(|s| s.circuit.as_ref())
                .and_then(|c| sluice_api::gate::Circuit::parse(&c.state));
            async move {
                let depth = queues.pending(home_bus(t), &ns, &name).await?;
                Ok::<_, crate::Error>(sluice_api::gate::scaling_depth(depth, circuit))
            }
        }))
        .await;
        depths
            .into_iter()
            .try_fold(0u64, |sum, d| Ok(sum.saturating_add(d?)))
    }

    async fn scale(&mut self, f: &Function) -> Result<()> {
        // An invalid Function keeps whatever it runs; an unresolved one has no Deployment.
        if !f.validate().is_empty() {
            return Ok(());
        }
        let ns = f.namespace().unwrap_or_default();
        let name = f.name_any();
        let child = children::child_name(&name);
        let deployments = Api::<Deployment>::namespaced(self.ctx.client.clone(), &ns);
        // On a depth error, skip this pass: never scale down on missing data.
        let pending = self.pending(f).await?;
        let now = self.origin.elapsed();
        let key = ObjectRef::from_obj(f);
        let st = self
            .state
            .entry(key.clone())
            .or_insert_with(|| Scale::new(now));
        if st.current.is_none() || now.saturating_sub(st.read_at) >= REREAD_EVERY {
            let Some(scale) =
                deployments
                    .get_scale(&child)
                    .await
                    .map(Some)
                    .or_else(|e| match e {
                        kube::Error::Api(s) if s.code == 404 => Ok(None),
                        e => Err(e),
                    })?
            else {
                // Not created yet (module unresolved, say): nothing to scale.
                self.state.remove(&key);
                return Ok(());
            };
            let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
            st.current = Some(u32::try_from(replicas).unwrap_or(0));
            st.read_at = now;
        }
        let before = st.current.unwrap_or(0);
        if let Some(replicas) = st.step(pending, &f.spec, now) {
            let pp = PatchParams {
                field_manager: Some(AUTOSCALER_FIELD_MANAGER.into()),
                ..Default::default()
            };
            self.ctx.fence.check()?;
            let applied = deployments
                .patch_scale(
                    &child,
                    &pp,
                    &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
                )
                .await;
            if let Err(e) = applied {
                st.current = None;
                return Err(e.into());
            }
            self.ctx.metrics.scale_operations.inc();
            tracing::info!(function = %format!("{ns}/{name}"), from = before, to = replicas, pending, "scaled");
            let event = Event {
                type_: EventType::Normal,
                reason: "Scaled".into(),
                note: Some(format!("workers {before} → {replicas} ({pending} pending)")),
                // The recorder folds Events with the same action into one series (keeping
                // the first note), so each target count is its own action.
                action: format!("ScaleTo{replicas}"),
                secondary: None,
            };
            if let Err(e) = self.ctx.recorder.publish(&event, &f.object_ref(&())).await {
                tracing::warn!(error = %e, "publishing a Scaled Event failed");
            }
        }
        let replicas = st.current.unwrap_or(0);
        let labels = FunctionLabels {
            namespace: ns.clone(),
            function: name.clone(),
        };
        self.ctx
            .metrics
            .replicas
            .get_or_create(&labels)
            .set(i64::from(replicas));
        self.ctx
            .metrics
            .pending
            .get_or_create(&labels)
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let shown = f
            .status
            .as_ref()
            .map(|s| (s.replicas, s.pending))
            .unwrap_or_default();
        let report = (replicas, pending);
        let in_status = (
            u32::try_from(shown.0).unwrap_or(0),
            u64::try_from(shown.1).unwrap_or(0),
        );
        if st.reported != Some(report) && in_status != report {
            let patch = json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Function",
                "status": { "replicas": replicas, "pending": pending },
            });
            self.ctx.fence.check()?;
            Api::<Function>::namespaced(self.ctx.client.clone(), &ns)
                .patch_status(
                    &name,
                    &PatchParams::apply(AUTOSCALER_FIELD_MANAGER).force(),
                    &Patch::Apply(patch),
                )
                .await?;
        }
        st.reported = Some(report);
        Ok(())
    }
}

/// Runs passes every `interval` until `shutdown`.
pub async fn run(ctx: Arc<Context>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        _ = async {
            let _ = ctx.triggers.wait_until_ready().await;
            let _ = ctx.functions.wait_until_ready().await;
        } => {}
        _ = shutdown.changed() => return,
    }
    let mut scaler = Autoscaler::new(ctx);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => scaler.pass().await,
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FunctionSpec {
        serde_yaml::from_str(&format!("module: {{configMap: {{name: w}}}}\n{yaml}")).unwrap()
    }

    /// Replays (second, pending) through `step` from `start` replicas; returns the applied
    /// changes as (second, replicas).
    fn replay(spec: &FunctionSpec, start: u32, trace: &[(u64, u64)]) -> Vec<(u64, u32)> {
        let mut st = Scale::new(Duration::ZERO);
        st.current = Some(start);
        trace
            .iter()
            .filter_map(|&(t, p)| st.step(p, spec, Duration::from_secs(t)).map(|r| (t, r)))
            .collect()
    }

    #[test]
    fn a_new_deployment_at_one_replica_goes_to_zero_after_cooldown_and_wakes_on_one_event() {
        let s = spec(
            "scaling: {minReplicas: 0, maxReplicas: 5, targetPendingPerReplica: 10, cooldown: 3s}",
        );
        let trace = [
            (1, 0),
            (2, 0),
            (3, 0),
            (4, 1),
            (5, 35),
            (6, 500),
            (7, 0),
            (9, 0),
            (10, 0),
            (11, 0),
        ];
        assert_eq!(
            replay(&s, 1, &trace),
            vec![(3, 0), (4, 1), (5, 4), (6, 5), (9, 0)]
        );
    }

    #[test]
    fn min_replicas_and_pinned_replicas_are_applied_without_load() {
        let s = spec("scaling: {minReplicas: 2, maxReplicas: 5}");
        assert_eq!(replay(&s, 1, &[(1, 0)]), vec![(1, 2)]);
        let s = spec("replicas: 3");
        assert_eq!(replay(&s, 0, &[(1, 0), (2, 1000)]), vec![(1, 3)]);
    }

    #[test]
    fn nothing_is_applied_before_the_current_count_is_known() {
        let s = spec("");
        let mut st = Scale::new(Duration::ZERO);
        assert_eq!(st.step(1000, &s, Duration::from_secs(1)), None);
        assert_eq!(st.current, None);
    }
}
