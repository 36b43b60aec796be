//! The worker tasks of one Function. Each task keeps up to `concurrency` deliveries in flight,
//! leasing round-robin from the Function's trigger queues; the scaler sets how many tasks run.
//! A Trigger with `delivery.batch` gathers leased events into a forming batch, and one
//! delivery in flight is then one batch.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sluice_api::trigger::Retry;
use sluice_event::{CloudEvent, Extension};
use tokio::{sync::watch, task::JoinSet};

use crate::{
    HOPS, InvokeError, SharedInvoker, batch, hops,
    policy::{self, GiveUp, Step},
};
use sluice_bus::trace::{Outcome, Reply, Step as TraceStep, StepKind, worker_name};
use sluice_bus::{Bus, BusError, DeadLetter, Delivery, Publish, SharedBus, TriggerId, now_ms};

use crate::metrics::Metrics;

/// How one trigger's events are delivered.
#[derive(Clone, Debug)]
pub struct TriggerRoute {
    pub id: TriggerId,
    pub retry: Retry,
    pub dead_letter_bus: Option<String>,
    /// Where replies of this trigger's deliveries are published.
    pub reply_bus: String,
    /// What the handler gets instead of the event's own data (`spec.transform`).
    pub transform: Option<Arc<sluice_transform::Transform>>,
    /// Several events per invocation (`delivery.batch`).
    pub batch: Option<batch::Limits>,
    /// Its rate limit and circuit breaker (the bus applies them when leasing; the worker tells
    /// the breaker each attempt's outcome).
    pub gate: sluice_bus::gate::Gate,
}

/// Everything a worker needs about its Function; swapped whole on reload.
pub struct FunctionRuntime {
    /// `namespace/name`.
    pub id: String,
    pub invoker: SharedInvoker,
    pub concurrency: usize,
    pub triggers: Vec<TriggerRoute>,
    pub hop_limit: i64,
    /// The event types the Function declares it replies with (`spec.emits`); empty: any.
    pub emits: Vec<String>,
    /// The EventSchemas replies are checked against, as any publisher checks its events.
    pub schemas: Arc<sluice_schema::Shared>,
}

pub type SharedFunction = Arc<RwLock<Arc<FunctionRuntime>>>;

/// Runs worker task number `index` until the desired count drops to `index` or below. It
/// finishes what it has in flight before it exits, so scaling down loses nothing.
pub async fn run_worker(
    index: u32,
    func: SharedFunction,
    bus: SharedBus,
    metrics: Metrics,
    mut desired: watch::Receiver<u32>,
) {
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut forming: HashMap<TriggerId, Forming> = HashMap::new();
    let mut next_trigger = 0usize;
    loop {
        let stop = *desired.borrow() <= index;
        if stop {
            break;
        }
        let f = func
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        // Read before leasing: a wake-up between the lease and the wait is then not missed.
        let version = bus.queued_version();
        // Fill free slots round-robin over the triggers so one busy trigger cannot starve the rest.
        // A lease takes what the bus holds ready and never waits for a server (the NATS bus
        // streams events in ahead of it), so a worker leases whenever a slot is free.
        let mut leased_any = false;
        let n = f.triggers.len();
        for i in 0..n {
            let free = f.concurrency.saturating_sub(inflight.len());
            if free == 0 {
                break;
            }
            let route = &f.triggers[(next_trigger + i) % n];
            if route.gate.breaker.is_some() {
                metrics.circuit(&route.id, bus.breaker(&route.id));
            }
            if let Some(limits) = route.batch {
                let batch = forming
                    .entry(route.id.clone())
                    .or_insert_with(|| Forming::new(route));
                batch.route = route.clone();
                let want = batch::room(&limits, batch.held());
                let leased = lease(&*bus, route, want).await;
                leased_any |= !leased.is_empty();
                let drained = leased.len() < want;
                for d in leased {
                    if let Some(failed) = batch.add(d) {
                        let (f, bus, metrics, route) =
                            (f.clone(), bus.clone(), metrics.clone(), route.clone());
                        inflight
                            .spawn(async move { failed.settle(&f, &route, &*bus, &metrics).await });
                    }
                }
                dispatch(&mut inflight, batch, &f, &bus, &metrics, drained, false);
                continue;
            }
            let leased = lease(&*bus, route, free).await;
            if leased.is_empty() {
                continue;
            }
            leased_any = true;
            // One copy of the route for the whole lease, not one per event.
            let shared = Arc::new(route.clone());
            for d in leased {
                let (f, bus, metrics, route) =
                    (f.clone(), bus.clone(), metrics.clone(), shared.clone());
                inflight.spawn(async move { deliver(&f, &route, &*bus, &metrics, d).await });
            }
        }
        next_trigger = next_trigger.wrapping_add(1);
        // Batches of Triggers this Function no longer has (or no longer batches) go now.
        for batch in forming.values_mut() {
            let kept = f
                .triggers
                .iter()
                .any(|t| t.id == batch.route.id && t.batch.is_some());
            if !kept {
                dispatch(&mut inflight, batch, &f, &bus, &metrics, true, true);
            }
        }
        forming.retain(|_, b| b.held() > 0 || f.triggers.iter().any(|t| t.id == b.route.id));
        if leased_any && inflight.len() < f.concurrency {
            continue;
        }
        let ids: Vec<TriggerId> = f.triggers.iter().map(|t| t.id.clone()).collect();
        // The first forming batch whose maxWait runs out (when a slot is free to take it:
        // else a finished delivery wakes the loop).
        let due = if inflight.len() < f.concurrency {
            forming.values().filter_map(Forming::due).min()
        } else {
            None
        };
        let batch_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            _ = bus.wait_queued(&ids, version, Duration::from_secs(1)) => {}
            _ = desired.changed() => {}
            _ = batch_due => {}
        }
    }
    // Stopping: what forming batches hold is leased to this task, so it goes now.
    let f = func
        .read()
        .map(|g| g.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    for batch in forming.values_mut() {
        dispatch(&mut inflight, batch, &f, &bus, &metrics, true, true);
    }
    while inflight.join_next().await.is_some() {}
}

/// Leases up to `max` of `route`'s due deliveries; a failed lease is logged and leases none.
async fn lease(bus: &dyn Bus, route: &TriggerRoute, max: usize) -> Vec<Delivery> {
    if max == 0 {
        return Vec::new();
    }
    match bus.lease(&route.id, max).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(trigger = %route.id, error = %e, "lease failed");
            Vec::new()
        }
    }
}

/// A batch being gathered for one Trigger: leased events, each with what its handler gets
/// (the transform already applied) and that input's JSON size.
struct Forming {
    route: TriggerRoute,
    items: Vec<Item>,
    /// When the first event of the batch arrived.
    since: Instant,
    /// Retried events, each to go in a batch of its own: an event that failed its batch whole
    /// (a trap, a timeout) may be the one that did, and must not take other events' attempts
    /// with it again (AWS Lambda bisects such a batch; this bisects it to single events).
    solo: VecDeque<Item>,
}

struct Item {
    d: Delivery,
    input: Arc<CloudEvent>,
    size: usize,
}

/// A delivery that failed before its handler ran (its transform), settled on its own.
struct Early {
    d: Delivery,
    err: InvokeError,
}

impl Early {
    async fn settle(
        self,
        f: &FunctionRuntime,
        route: &TriggerRoute,
        bus: &dyn Bus,
        metrics: &Metrics,
    ) {
        let run = Run {
            started: Started::now(),
            elapsed: Duration::ZERO,
            hops_in: hops(&self.d.event),
        };
        settle(f, route, bus, metrics, &self.d, Err(self.err), &run).await;
    }
}

impl Forming {
    fn new(route: &TriggerRoute) -> Self {
        Self {
            route: route.clone(),
            items: Vec::new(),
            since: Instant::now(),
            solo: VecDeque::new(),
        }
    }

    /// Events held, waiting to go.
    fn held(&self) -> usize {
        self.items.len() + self.solo.len()
    }

    /// Adds a leased event; one whose transform fails comes back to be settled alone.
    fn add(&mut self, d: Delivery) -> Option<Early> {
        let input = match &self.route.transform {
            None => d.event.clone(),
            Some(t) => match crate::transformed(t, &d.event, &self.route.id) {
                Ok(e) => Arc::new(e),
                Err(err) => return Some(Early { d, err }),
            },
        };
        // The handler gets the events as one JSON array; its size is what `maxBytes` bounds.
        let size = input.to_json().len();
        let item = Item { d, input, size };
        if item.d.attempt > 1 {
            self.solo.push_back(item);
        } else {
            if self.items.is_empty() {
                self.since = Instant::now();
            }
            self.items.push(item);
        }
        None
    }

    /// When the batch's `maxWait` runs out (now for a retried event), if it holds anything.
    fn due(&self) -> Option<Instant> {
        let limits = self.route.batch?;
        if !self.solo.is_empty() {
            return Some(Instant::now());
        }
        (!self.items.is_empty()).then(|| self.since + limits.max_wait)
    }
}

/// Hands `batch`'s ready events to the handler, retried events first and alone, one batch per
/// free slot (all of them when `now`, whatever the limits say).
fn dispatch(
    inflight: &mut JoinSet<()>,
    batch: &mut Forming,
    f: &Arc<FunctionRuntime>,
    bus: &SharedBus,
    metrics: &Metrics,
    drained: bool,
    now: bool,
) {
    while now || inflight.len() < f.concurrency {
        let Some(item) = batch.solo.pop_front() else {
            break;
        };
        let (f, bus, metrics, route) =
            (f.clone(), bus.clone(), metrics.clone(), batch.route.clone());
        inflight.spawn(async move { deliver_batch(&f, &route, &*bus, &metrics, vec![item]).await });
    }
    loop {
        let Some(limits) = batch.route.batch else {
            return;
        };
        if batch.items.is_empty() || (!now && inflight.len() >= f.concurrency) {
            return;
        }
        let sizes: Vec<usize> = batch.items.iter().map(|i| i.size).collect();
        let (waited, drained) = if now {
            (Duration::MAX, true)
        } else {
            (batch.since.elapsed(), drained)
        };
        let take = batch::ready(&limits, &sizes, waited, drained);
        if take == 0 {
            return;
        }
        let items: Vec<Item> = batch.items.drain(..take).collect();
        // What stays waited as long as the batch that just went.
        let (f, bus, metrics, route) =
            (f.clone(), bus.clone(), metrics.clone(), batch.route.clone());
        inflight.spawn(async move { deliver_batch(&f, &route, &*bus, &metrics, items).await });
    }
}

/// One delivery start to finish. Bus errors are logged: the lease then expires and the event
/// is delivered again, which at-least-once allows. The attempt is recorded as a trace step
/// once its outcome is on the bus.
async fn deliver(
    f: &FunctionRuntime,
    route: &TriggerRoute,
    bus: &dyn Bus,
    metrics: &Metrics,
    d: Delivery,
) {
    if policy::expired(age_of(&d), &route.retry) {
        expire(route, bus, metrics, &d).await;
        return;
    }
    let started = Started::now();
    let result = match &route.transform {
        None => f.invoker.invoke(&d.event).await,
        Some(t) => match crate::transformed(t, &d.event, &route.id) {
            Ok(input) => f.invoker.invoke(&input).await,
            Err(e) => Err(e),
        },
    }
    .and_then(|replies| checked_replies(f, replies));
    let elapsed = started.clock.elapsed();
    metrics.observe_duration(&f.id, elapsed);
    let run = Run {
        started,
        elapsed,
        hops_in: hops(&d.event),
    };
    settle(f, route, bus, metrics, &d, result, &run).await;
}

/// A batch start to finish: one invocation, then each event settled as a delivery of its own
/// (acked, retried or dead-lettered by its own attempt count), so a retry sends only the
/// events that failed. The replies are published with the first event that succeeded, before
/// the others are acked; when none succeeded, the replies are dropped, as every event of the
/// batch comes back.
async fn deliver_batch(
    f: &FunctionRuntime,
    route: &TriggerRoute,
    bus: &dyn Bus,
    metrics: &Metrics,
    items: Vec<Item>,
) {
    let mut live = Vec::with_capacity(items.len());
    for it in items {
        if policy::expired(age_of(&it.d), &route.retry) {
            expire(route, bus, metrics, &it.d).await;
        } else {
            live.push(it);
        }
    }
    if live.is_empty() {
        return;
    }
    let inputs: Vec<Arc<CloudEvent>> = live.iter().map(|i| i.input.clone()).collect();
    let started = Started::now();
    let result = f.invoker.invoke_batch(&inputs).await.and_then(|r| {
        Ok(crate::BatchResult {
            replies: checked_replies(f, r.replies)?,
            failed: r.failed,
        })
    });
    let elapsed = started.clock.elapsed();
    metrics.observe_duration(&f.id, elapsed);
    metrics.observe_batch(&route.id, live.len());
    let (outcomes, dropped) = batch::per_event(live.len(), result);
    if dropped > 0 {
        tracing::warn!(trigger = %route.id, "every event of the batch failed: its {dropped} replies are dropped");
    }
    // Replies of a batch are a hop further than its furthest event.
    let hops_in = live.iter().map(|i| hops(&i.d.event)).max().unwrap_or(0);
    let run = Run {
        started,
        elapsed,
        hops_in,
    };
    let mut pairs: Vec<_> = live.iter().zip(outcomes).collect();
    // The event carrying the replies settles first: no event of the batch is acked (and the
    // next event of its key handed out) before the batch's replies are stored.
    if let Some(first) = pairs.iter().position(|(_, r)| r.is_ok()) {
        let (it, result) = pairs.remove(first);
        settle(f, route, bus, metrics, &it.d, result, &run).await;
    }
    let rest = pairs
        .into_iter()
        .map(|(it, result)| settle(f, route, bus, metrics, &it.d, result, &run));
    futures::future::join_all(rest).await;
}

/// One invocation as each of its events' attempts records it.
struct Run {
    started: Started,
    elapsed: Duration,
    /// The hop count replies continue from.
    hops_in: i64,
}

/// When an attempt started, by the wall clock (traces) and the monotonic one (its duration).
struct Started {
    at: std::time::SystemTime,
    ms: u64,
    clock: Instant,
}

impl Started {
    fn now() -> Self {
        Self {
            at: std::time::SystemTime::now(),
            ms: now_ms(),
            clock: Instant::now(),
        }
    }
}

fn age_of(d: &Delivery) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(d.accepted_ms))
}

/// Dead-letters a delivery older than `maxAge` without running it.
async fn expire(route: &TriggerRoute, bus: &dyn Bus, metrics: &Metrics, d: &Delivery) {
    let given_up = give_up(
        route,
        bus,
        metrics,
        d,
        GiveUp::Expired,
        "event older than maxAge",
    )
    .await;
    if given_up {
        let kind = StepKind::Expired {
            trigger: route.id.clone(),
            to_bus: route.dead_letter_bus.clone(),
        };
        bus.trace(vec![TraceStep::of(&d.event, now_ms(), kind)]);
    }
}

/// Puts one attempt's result on the bus (ack with its replies, retry or dead letter) and
/// records it as a trace step.
async fn settle(
    f: &FunctionRuntime,
    route: &TriggerRoute,
    bus: &dyn Bus,
    metrics: &Metrics,
    d: &Delivery,
    result: Result<Vec<CloudEvent>, InvokeError>,
    run: &Run,
) {
    let (started, elapsed) = (&run.started, run.elapsed);
    let outcome = match result {
        Ok(replies) => {
            let acked = match hop_checked(f, route, bus, metrics, d, run.hops_in, replies).await {
                Ok(replies) => {
                    let sent: Vec<Reply> = replies
                        .iter()
                        .map(|p| Reply {
                            id: p.event.id.clone(),
                            ty: p.event.ty.clone(),
                        })
                        .collect();
                    bus.ack(d, replies).await.map(|()| sent)
                }
                Err(e) => Err(e),
            };
            let replies = match acked {
                Ok(replies) => replies,
                Err(e) => {
                    outcome_failed(route, d, &e, "publishing replies or ack");
                    return;
                }
            };
            metrics.delivered(&route.id);
            tracing::info!(target: "sluice::delivery", "{} {} → {} ok in {:.1?} (attempt {})", d.event.ty, d.event.id, f.id, elapsed, d.attempt);
            breaker(route, bus, metrics, true).await;
            Outcome::Ok { replies }
        }
        Err(err) => {
            let counts = policy::trips_breaker(&err);
            let outcome = failed(route, bus, metrics, d, err, age_of(d)).await;
            if counts {
                breaker(route, bus, metrics, false).await;
            }
            match outcome {
                Some(outcome) => outcome,
                None => return,
            }
        }
    };
    crate::otel::attempt(
        &d.event, &route.id, d.attempt, started.at, elapsed, &outcome,
    );
    if !bus.records_steps() {
        return;
    }
    let kind = StepKind::Attempt {
        trigger: route.id.clone(),
        attempt: d.attempt,
        worker: worker_name(),
        duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        outcome,
    };
    bus.trace(vec![TraceStep::of(&d.event, started.ms, kind)]);
}

/// Tells the Trigger's circuit breaker an attempt's outcome, when it has one.
async fn breaker(route: &TriggerRoute, bus: &dyn Bus, metrics: &Metrics, ok: bool) {
    if route.gate.breaker.is_none() {
        return;
    }
    if let Err(e) = bus.record_outcome(&route.id, ok).await {
        tracing::warn!(trigger = %route.id, error = %e, "recording the outcome for the circuit breaker");
    }
    metrics.circuit(&route.id, bus.breaker(&route.id));
}

/// Retries or dead-letters a failed delivery; the attempt's outcome once the bus has it.
async fn failed(
    route: &TriggerRoute,
    bus: &dyn Bus,
    metrics: &Metrics,
    d: &Delivery,
    err: InvokeError,
    age: Duration,
) -> Option<Outcome> {
    let jitter: f64 = rand::random();
    match policy::after_failure(d.attempt, err.retryable, &route.retry, age, jitter) {
        Step::Retry(delay) => {
            metrics.retried(&route.id);
            tracing::warn!(target: "sluice::delivery", "{} {} → {} failed: {} (attempt {}/{}, retry in {:.1?})", d.event.ty, d.event.id, route.id, err, d.attempt, route.retry.max_attempts, delay);
            if let Err(e) = bus.retry(d, delay, &err.message).await {
                outcome_failed(route, d, &e, "scheduling the retry");
                return None;
            }
            Some(Outcome::Retry {
                reason: err.reason.clone(),
                error: err.message.clone(),
                retry_in_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            })
        }
        Step::DeadLetter(why) => give_up(route, bus, metrics, d, why, &err.message)
            .await
            .then(|| Outcome::DeadLetter {
                reason: why.as_str().into(),
                error: err.message.clone(),
                to_bus: route.dead_letter_bus.clone(),
            }),
    }
}

/// Dead-letters a delivery; whether the bus took it.
async fn give_up(
    route: &TriggerRoute,
    bus: &dyn Bus,
    metrics: &Metrics,
    d: &Delivery,
    why: GiveUp,
    last_error: &str,
) -> bool {
    tracing::warn!(target: "sluice::delivery", "{} {} → {} dead-lettered: {} after {} attempt(s): {}", d.event.ty, d.event.id, route.id, why.as_str(), d.attempt, last_error);
    let dead = DeadLetter {
        trigger: route.id.clone(),
        seq: d.seq,
        reason: why.as_str().into(),
        attempts: d.attempt,
        last_error: last_error.into(),
        at_ms: now_ms(),
        event: (*d.event).clone(),
    };
    match bus
        .dead_letter(dead, route.dead_letter_bus.as_deref(), Some(d))
        .await
    {
        Ok(()) => {
            metrics.dead_lettered(&route.id);
            true
        }
        Err(e) => {
            outcome_failed(route, d, &e, "dead-lettering");
            false
        }
    }
}

/// A delivery's outcome did not reach the bus. A lost lease is expected now and then (a
/// handler that outlived it): the delivery that has the event now decides. Anything else
/// leaves the event to be delivered again (on NATS once its lease expires; the embedded bus
/// puts it back at once).
fn outcome_failed(route: &TriggerRoute, d: &Delivery, e: &BusError, what: &str) {
    match e {
        BusError::LeaseLost { .. } => {
            tracing::warn!(trigger = %route.id, event_id = %d.event.id, error = %e, "{what}: lease lost; the current delivery decides")
        }
        _ => {
            tracing::error!(trigger = %route.id, event_id = %d.event.id, error = %e, "{what} failed; the event will be delivered again")
        }
    }
}

/// A handler's replies held to the Function's contract: each of a type `spec.emits` lists
/// (when it lists any) and valid against its EventSchema, stamped with the version it passed.
/// A broken contract is the handler's fault and no retry changes it: a fatal failure, so the
/// event is dead-lettered with the reason instead of its replies misleading what follows.
fn checked_replies(
    f: &FunctionRuntime,
    mut replies: Vec<CloudEvent>,
) -> Result<Vec<CloudEvent>, InvokeError> {
    if replies.is_empty() {
        return Ok(replies);
    }
    let registry = f.schemas.get();
    for (i, r) in replies.iter_mut().enumerate() {
        // Only a check made here may stamp a reply (a handler copying its input's attributes
        // must not carry the input's version onto another type).
        r.extensions.remove(sluice_schema::VERSION_ATTRIBUTE);
        if !f.emits.is_empty() && !f.emits.contains(&r.ty) {
            return Err(InvokeError {
                retryable: false,
                reason: "invalid_reply".into(),
                message: format!(
                    "reply {i} has type {:?}, which Function {} does not list in spec.emits ({})",
                    r.ty,
                    f.id,
                    f.emits.join(", ")
                ),
            });
        }
        if let Err(invalid) = registry.check(r) {
            return Err(InvokeError {
                retryable: false,
                reason: "invalid_reply".into(),
                message: format!("reply {i} ({}): {invalid}", r.ty),
            });
        }
    }
    Ok(replies)
}

/// A handler's replies to publish, with the hop count one above the input's (`hops_in`);
/// replies past the hop limit are dead-lettered as a loop instead, so a function cannot storm
/// itself.
async fn hop_checked(
    f: &FunctionRuntime,
    route: &TriggerRoute,
    bus: &dyn Bus,
    metrics: &Metrics,
    d: &Delivery,
    hops_in: i64,
    replies: Vec<CloudEvent>,
) -> Result<Vec<Publish>, sluice_bus::BusError> {
    if replies.is_empty() {
        return Ok(Vec::new());
    }
    let next = hops_in + 1;
    let mut out = Vec::with_capacity(replies.len());
    for mut r in replies {
        r.extensions.insert(HOPS.into(), Extension::Integer(next));
        if next > f.hop_limit {
            let dead = DeadLetter {
                trigger: route.id.clone(),
                seq: 0,
                reason: GiveUp::Loop.as_str().into(),
                attempts: d.attempt,
                last_error: format!("reply {} exceeds the hop limit of {}", r.ty, f.hop_limit),
                at_ms: now_ms(),
                event: r,
            };
            metrics.dead_lettered(&route.id);
            tracing::warn!(target: "sluice::delivery", "{}: reply chain stopped by the hop limit", route.id);
            bus.dead_letter(dead, route.dead_letter_bus.as_deref(), None)
                .await?;
        } else {
            out.push(Publish {
                bus: route.reply_bus.clone(),
                event: r,
                dedupe: false,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Never;

    impl crate::Invoker for Never {
        fn invoke<'a>(&'a self, _: &'a CloudEvent) -> crate::InvokeFuture<'a> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn invoke_batch<'a>(&'a self, _: &'a [Arc<CloudEvent>]) -> crate::BatchFuture<'a> {
            Box::pin(async { Ok(crate::BatchResult::default()) })
        }
    }

    fn function(emits: &[&str]) -> FunctionRuntime {
        let schemas = Arc::new(sluice_schema::Shared::default());
        let problems = schemas.set(&[sluice_schema::SchemaDef {
            name: "shop/done".into(),
            ty: "done".into(),
            source: None,
            versions: vec![(4, json!({"type": "object", "required": ["n"]}))],
        }]);
        assert!(problems.is_empty());
        FunctionRuntime {
            id: "shop/f".into(),
            invoker: Arc::new(Never),
            concurrency: 1,
            triggers: Vec::new(),
            hop_limit: crate::DEFAULT_HOP_LIMIT,
            emits: emits.iter().map(|s| (*s).to_owned()).collect(),
            schemas,
        }
    }

    fn reply(ty: &str, data: serde_json::Value) -> CloudEvent {
        let mut e = CloudEvent::new("r", "/f", ty);
        e.data = Some(data.to_string().into_bytes());
        e
    }

    #[test]
    fn replies_are_stamped_or_fail_fatally_naming_the_contract() {
        let f = function(&["done", "other"]);
        let mut forged = reply("other", json!({}));
        forged.extensions.insert(
            sluice_schema::VERSION_ATTRIBUTE.into(),
            Extension::Integer(9),
        );
        let ok = checked_replies(&f, vec![reply("done", json!({"n": 1})), forged]).unwrap();
        assert_eq!(
            ok[0].extensions.get(sluice_schema::VERSION_ATTRIBUTE),
            Some(&Extension::Integer(4))
        );
        assert_eq!(
            ok[1].extensions.get(sluice_schema::VERSION_ATTRIBUTE),
            None,
            "a handler cannot stamp its own reply"
        );
        let err = checked_replies(&f, vec![reply("done", json!({}))]).unwrap_err();
        assert!(!err.retryable);
        assert_eq!(err.reason, "invalid_reply");
        assert!(
            err.message
                .starts_with("reply 0 (done): EventSchema shop/done v4: $.data: "),
            "{}",
            err.message
        );
        let err = checked_replies(&f, vec![reply("elsewhere", json!({}))]).unwrap_err();
        assert_eq!(
            err.message,
            "reply 0 has type \"elsewhere\", which Function shop/f does not list in spec.emits (done, other)"
        );
        assert!(checked_replies(&function(&[]), vec![reply("elsewhere", json!(1))]).is_ok());
    }
}
