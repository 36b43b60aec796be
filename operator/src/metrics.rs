//! Prometheus metrics of the operator, served at `/metrics`. Every reconcile is counted and
//! timed per kind; every failure is counted by `Error::metric_label`.

use std::time::Instant;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub namespace: String,
    pub function: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciliations: Family<KindLabel, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabel, Histogram>,
    pub scale_operations: Counter,
    pub autoscaler_pass: Histogram,
    pub replicas: Family<FunctionLabels, Gauge>,
    pub pending: Family<FunctionLabels, Gauge>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice_operator");
        let reconciliations = Family::<KindLabel, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0])
        });
        let scale_operations = Counter::default();
        let autoscaler_pass = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]);
        let replicas = Family::<FunctionLabels, Gauge>::default();
        let pending = Family::<FunctionLabels, Gauge>::default();
        let leader = Gauge::default();
        registry.register(
            "reconciliations",
            "Reconciles run, by kind",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "scale_operations",
            "Replica changes applied through the scale subresource",
            scale_operations.clone(),
        );
        registry.register(
            "autoscaler_pass_duration_seconds",
            "Time one autoscaler pass over every Function took",
            autoscaler_pass.clone(),
        );
        registry.register(
            "function_replicas",
            "Worker replicas the autoscaler set",
            replicas.clone(),
        );
        registry.register(
            "function_pending",
            "Queued plus in-flight events of a Function",
            pending.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
            scale_operations,
            autoscaler_pass,
            replicas,
            pending,
            leader,
        }
    }
}

impl Metrics {
    /// Counts one reconcile of `kind`; the returned guard records its duration when dropped.
    pub fn reconcile(&self, kind: &'static str) -> Timer<'_> {
        self.reconciliations
            .get_or_create(&KindLabel { kind })
            .inc();
        Timer {
            histogram: self.duration.get_or_create(&KindLabel { kind }).clone(),
            started: Instant::now(),
            _metrics: self,
        }
    }

    pub fn failure(&self, kind: &'static str, e: &crate::Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                kind,
                error: e.metric_label(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

pub struct Timer<'a> {
    histogram: Histogram,
    started: Instant,
    _metrics: &'a Metrics,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}
