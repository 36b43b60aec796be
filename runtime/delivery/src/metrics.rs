//! Prometheus metrics of the runtime. Every observable step of the data flow (ingress, match,
//! delivery outcome, duration, depth, workers) is counted here and served at `/metrics`.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BusLabel {
    bus: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

type Hist = Family<FunctionLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 50 µs … ~3.3 s: Wasm handlers are fast; the tail shows timeouts coming.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 17,
    ))
}

fn batch_histogram() -> Histogram {
    // 1 … 8192 events: `maxEvents` is at most 10000.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 14,
    ))
}

fn writer_histogram() -> Histogram {
    // 10 µs … ~0.65 s: a group commit is tens of µs; a stalled disk shows at the top.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_01, 2.0, 17,
    ))
}

struct Inner {
    registry: Registry,
    events_in: Family<BusLabel, Counter>,
    duplicates: Family<BusLabel, Counter>,
    refused: Family<BusLabel, Counter>,
    matched: Family<TriggerLabel, Counter>,
    unmatched: Family<BusLabel, Counter>,
    delivered: Family<TriggerLabel, Counter>,
    retried: Family<TriggerLabel, Counter>,
    dead_lettered: Family<TriggerLabel, Counter>,
    duration: Hist,
    batch: Family<TriggerLabel, Histogram, fn() -> Histogram>,
    depth: Family<TriggerLabel, Gauge>,
    circuit_state: Family<TriggerLabel, Gauge>,
    circuit_opened: Family<TriggerLabel, Gauge>,
    workers: Family<FunctionLabel, Gauge>,
    bus_writer: Family<PhaseLabel, Histogram, fn() -> Histogram>,
}

/// Cheap to clone; all clones count into one registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let events_in = Family::default();
        let duplicates = Family::default();
        let refused = Family::default();
        let matched = Family::default();
        let unmatched = Family::default();
        let delivered = Family::default();
        let retried = Family::default();
        let dead_lettered = Family::default();
        let duration: Hist = Family::new_with_constructor(duration_histogram);
        let batch: Family<TriggerLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(batch_histogram);
        let depth = Family::default();
        let circuit_state = Family::default();
        let circuit_opened = Family::default();
        let workers = Family::default();
        let bus_writer: Family<PhaseLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(writer_histogram);
        registry.register("events_in", "Events accepted onto a bus", events_in.clone());
        registry.register(
            "events_duplicate",
            "Events dropped as duplicates of (source, id)",
            duplicates.clone(),
        );
        registry.register(
            "events_refused",
            "Events refused by an EventSchema before they were stored (HTTP 400; a batch with one invalid event is refused whole)",
            refused.clone(),
        );
        registry.register(
            "events_matched",
            "Events a trigger's pattern matched",
            matched.clone(),
        );
        registry.register(
            "events_unmatched",
            "Events routed to no trigger (no pattern of the route table matched)",
            unmatched.clone(),
        );
        registry.register(
            "deliveries_succeeded",
            "Deliveries the handler completed",
            delivered.clone(),
        );
        registry.register(
            "deliveries_retried",
            "Failed deliveries scheduled for retry",
            retried.clone(),
        );
        registry.register(
            "deliveries_dead_lettered",
            "Events given up and dead-lettered",
            dead_lettered.clone(),
        );
        registry.register(
            "handler_duration_seconds",
            "Handler invocation time",
            duration.clone(),
        );
        registry.register(
            "batch_events",
            "Events per batch handed to a handler (Triggers with delivery.batch)",
            batch.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued plus in-flight events per trigger",
            depth.clone(),
        );
        registry.register(
            "circuit_state",
            "A Trigger's circuit breaker (delivery.circuitBreaker): 0 closed, 1 open (deliveries \
             paused), 2 half-open (one trial event out)",
            circuit_state.clone(),
        );
        registry.register(
            "circuit_opened",
            "Times a Trigger's circuit breaker opened, over all its workers",
            circuit_opened.clone(),
        );
        registry.register(
            "workers",
            "Worker tasks running per function",
            workers.clone(),
        );
        registry.register(
            "bus_writer_seconds",
            "Time of the embedded bus's writer thread per phase (commit, journal append, \
             checkpoint); every publish waits behind the commit in progress",
            bus_writer.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            events_in,
            duplicates,
            refused,
            matched,
            unmatched,
            delivered,
            retried,
            dead_lettered,
            duration,
            batch,
            depth,
            circuit_state,
            circuit_opened,
            workers,
            bus_writer,
        }))
    }

    pub fn events_in(&self, bus: &str, n: u64) {
        self.0
            .events_in
            .get_or_create(&BusLabel { bus: bus.into() })
            .inc_by(n);
    }
    pub fn duplicates(&self, bus: &str, n: u64) {
        self.0
            .duplicates
            .get_or_create(&BusLabel { bus: bus.into() })
            .inc_by(n);
    }
    /// `n` events refused at once (one invalid event refuses its whole batch).
    pub fn refused(&self, bus: &str, n: u64) {
        self.0
            .refused
            .get_or_create(&BusLabel { bus: bus.into() })
            .inc_by(n);
    }
    pub fn matched(&self, trigger: &str) {
        self.0
            .matched
            .get_or_create(&TriggerLabel {
                trigger: trigger.into(),
            })
            .inc();
    }
    pub fn unmatched(&self, bus: &str) {
        self.0
            .unmatched
            .get_or_create(&BusLabel { bus: bus.into() })
            .inc();
    }
    pub fn delivered(&self, trigger: &str) {
        self.0
            .delivered
            .get_or_create(&TriggerLabel {
                trigger: trigger.into(),
            })
            .inc();
    }
    pub fn retried(&self, trigger: &str) {
        self.0
            .retried
            .get_or_create(&TriggerLabel {
                trigger: trigger.into(),
            })
            .inc();
    }
    pub fn dead_lettered(&self, trigger: &str) {
        self.0
            .dead_lettered
            .get_or_create(&TriggerLabel {
                trigger: trigger.into(),
            })
            .inc();
    }
    pub fn observe_duration(&self, function: &str, d: Duration) {
        self.0
            .duration
            .get_or_create(&FunctionLabel {
                function: function.into(),
            })
            .observe(d.as_secs_f64());
    }
    pub fn observe_batch(&self, trigger: &str, events: usize) {
        self.0
            .batch
            .get_or_create(&TriggerLabel {
                trigger: trigger.into(),
            })
            .observe(events as f64);
    }
    pub fn set_depth(&self, trigger: &str, pending: u64) {
        self.0
            .depth
            .get_or_create(&TriggerLabel {
                trigger: trigger.into(),
            })
            .set(pending as i64);
    }
    /// A Trigger's circuit breaker as the bus last saw it.
    pub fn circuit(&self, trigger: &str, status: Option<sluice_bus::gate::BreakerStatus>) {
        use sluice_bus::gate::Circuit;
        let Some(s) = status else { return };
        let label = TriggerLabel {
            trigger: trigger.into(),
        };
        let state = match s.circuit {
            Circuit::Closed => 0,
            Circuit::Open => 1,
            Circuit::HalfOpen => 2,
        };
        self.0.circuit_state.get_or_create(&label).set(state);
        self.0
            .circuit_opened
            .get_or_create(&label)
            .set(i64::try_from(s.opened).unwrap_or(i64::MAX));
    }
    pub fn set_workers(&self, function: &str, n: u32) {
        self.0
            .workers
            .get_or_create(&FunctionLabel {
                function: function.into(),
            })
            .set(i64::from(n));
    }

    /// Counter value, for the status line and tests.
    pub fn delivered_count(&self, trigger: &str) -> u64 {
        self.0
            .delivered
            .get_or_create(&TriggerLabel {
                trigger: trigger.into(),
            })
            .get()
    }

    pub fn bus_writer(&self, phase: &'static str, took: Duration) {
        self.0
            .bus_writer
            .get_or_create(&PhaseLabel { phase })
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.0.registry).is_err() {
            out.clear();
        }
        out
    }
}
