//! The route table: every valid, routed Trigger whose Function exists, rendered as
//! multi-document YAML and published in the JetStream key-value bucket
//! `sluice_api::jetstream::ROUTES_BUCKET` (key `table`). Every publisher watches it (routers
//! for schedules and bridges, the ingress, workers for replies and dead letters) and stores
//! each event it publishes once per matching Trigger in the bus stream. Each acknowledges the
//! revision it has loaded in the routers' bucket (named for the router, its first user; every
//! acknowledging publisher counts); a Trigger is reported Ready only once
//! every live one publishes with a revision that contains it, so an event accepted after
//! `Ready` is matched by a table that knows the Trigger.
//!
//! Written whenever Triggers or Functions may have changed, and only when the text changes
//! (a restarted operator adopts the revision already published if the text is the same).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use sluice_api::{
    EventSchema, Function, Trigger, buckets,
    jetstream::{self as names, ROUTER_ACK_TTL, RouterAck},
};
use tokio::sync::watch;

use crate::{Context, Result, children, conditions::Want, function::READY};

/// The Triggers of the route table: valid, not HTTP, with an existing Function.
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
    let schemas = valid_schemas(&ctx.schemas);
    let schema_refs: Vec<&EventSchema> = schemas.iter().map(AsRef::as_ref).collect();
    children::routes(&refs, &schema_refs)
}

/// The EventSchemas publishers check events against: the valid ones. An invalid update leaves
/// its EventSchema out until it is fixed (its `Ready` condition says why).
pub fn valid_schemas(schemas: &Store<EventSchema>) -> Vec<Arc<EventSchema>> {
    schemas
        .state()
        .into_iter()
        .filter(|s| s.validate().is_empty())
        .collect()
}

/// `namespace/name` of a Trigger.
fn key_of(t: &Trigger) -> String {
    format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any())
}

/// One publisher's (ingress, worker or router) acknowledgement as the operator last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRouter {
    pub identity: String,
    pub revision: u64,
}

/// Where a routed Trigger stands with the publishers. Pure: the caller supplies the revision
/// its current generation was first published in and the live publishers' acknowledgements.
pub fn route_condition(published: Option<u64>, routers: &[SeenRouter], route: &str) -> Want {
    let Some(revision) = published else {
        return Want::new(
            READY,
            sluice_api::ConditionStatus::Unknown,
            "RoutePending",
            format!("{route}; waiting for the route table to be published"),
        );
    };
    if routers.is_empty() {
        return Want::new(
            READY,
            sluice_api::ConditionStatus::Unknown,
            "NoPublisher",
            format!(
                "{route}; route table revision {revision} published, but no publisher (ingress, worker or router) is running to route with it"
            ),
        );
    }
    let behind: Vec<&str> = routers
        .iter()
        .filter(|r| r.revision < revision)
        .map(|r| r.identity.as_str())
        .collect();
    if behind.is_empty() {
        Want::ok(
            READY,
            "Routed",
            format!(
                "{route}; route table revision {revision} loaded by {} publisher(s)",
                routers.len()
            ),
        )
    } else {
        Want::new(
            READY,
            sluice_api::ConditionStatus::Unknown,
            "RoutePending",
            format!(
                "{route}; route table revision {revision} loaded by {} of {} publisher(s), waiting for {}",
                routers.len() - behind.len(),
                routers.len(),
                behind.join(", ")
            ),
        )
    }
}

/// The revision that first published each Trigger's current generation, given the previous
/// ledger, the Triggers in the table just written and its revision. Pure.
pub fn ledger_after(
    old: &HashMap<String, (Option<i64>, u64)>,
    in_table: &[(String, Option<i64>)],
    revision: u64,
) -> HashMap<String, (Option<i64>, u64)> {
    in_table
        .iter()
        .map(|(key, generation)| {
            let rev = match old.get(key) {
                Some((g, r)) if g == generation => *r,
                _ => revision,
            };
            (key.clone(), (*generation, rev))
        })
        .collect()
}

#[derive(Default)]
struct BookState {
    /// Trigger `ns/name` → (generation, revision that first published it).
    ledger: HashMap<String, (Option<i64>, u64)>,
    /// Router identity (key) → its acknowledgement and when it was last refreshed.
    routers: HashMap<String, (SeenRouter, Instant)>,
}

/// The published table's bookkeeping: what revision carries each Trigger, and what revision
/// each router routes with.
pub struct RouteBook {
    js: jetstream::Context,
    bucket: String,
    // Opened on first use, so a NATS outage at start delays routing, not reconciling.
    routes: tokio::sync::OnceCell<kv::Store>,
    acks: tokio::sync::OnceCell<kv::Store>,
    state: Mutex<BookState>,
}

impl RouteBook {
    /// The book of route table `bucket`; follows the routers' acknowledgements until
    /// `shutdown`. The buckets are created if they do not exist.
    pub fn start(
        js: jetstream::Context,
        bucket: &str,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let book = Arc::new(Self {
            js,
            bucket: bucket.to_owned(),
            routes: tokio::sync::OnceCell::new(),
            acks: tokio::sync::OnceCell::new(),
            state: Mutex::default(),
        });
        tokio::spawn(follow_acks(book.clone(), shutdown));
        book
    }

    async fn routes(&self) -> Result<&kv::Store> {
        self.routes
            .get_or_try_init(|| buckets::open(&self.js, buckets::routes_stream(&self.bucket)))
            .await
            .map_err(|e| crate::Error::Routes(e.to_string()))
    }

    async fn acks(&self) -> Result<&kv::Store, buckets::BucketError> {
        self.acks
            .get_or_try_init(|| buckets::open(&self.js, buckets::routers_stream(&self.bucket)))
            .await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Ready condition of a routed Trigger, from the ledger and the live routers.
    pub fn condition(&self, t: &Trigger, route: &str) -> Want {
        let st = self.state();
        let published = st
            .ledger
            .get(&key_of(t))
            .filter(|(g, _)| *g == t.metadata.generation)
            .map(|(_, r)| *r);
        let mut live: Vec<SeenRouter> = st
            .routers
            .values()
            .filter(|(_, seen)| seen.elapsed() < ROUTER_ACK_TTL)
            .map(|(r, _)| r.clone())
            .collect();
        live.sort_by(|a, b| a.identity.cmp(&b.identity));
        route_condition(published, &live, route)
    }

    /// Publishes `text` unless the bucket already holds it; records which revision carries
    /// each Trigger of `in_table`. Returns the revision.
    async fn publish(&self, text: &str, in_table: &[(String, Option<i64>)]) -> Result<u64> {
        let routes = self.routes().await?;
        let current = routes
            .entry(names::ROUTES_KEY)
            .await
            .map_err(|e| crate::Error::Routes(e.to_string()))?;
        let revision = match current {
            Some(e) if e.operation == kv::Operation::Put && e.value == text.as_bytes() => {
                e.revision
            }
            _ => routes
                .put(names::ROUTES_KEY, text.to_owned().into())
                .await
                .map_err(|e| crate::Error::Routes(e.to_string()))?,
        };
        let mut st = self.state();
        st.ledger = ledger_after(&st.ledger, in_table, revision);
        Ok(revision)
    }
}

/// Keeps `book.routers` current from the acknowledgement bucket until shutdown.
async fn follow_acks(book: Arc<RouteBook>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let watch = match book.acks().await {
            Ok(acks) => acks
                .watch_with_history(">")
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match watch {
            Ok(mut w) => loop {
                tokio::select! {
                    next = w.next() => match next {
                        Some(Ok(e)) => {
                            backoff = Duration::from_millis(100);
                            record_ack(&book, &e);
                        }
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "watching router acknowledgements");
                            break;
                        }
                        None => break,
                    },
                    _ = shutdown.changed() => return,
                }
            },
            Err(e) => tracing::warn!(error = %e, "watching router acknowledgements"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn record_ack(book: &RouteBook, e: &kv::Entry) {
    let mut st = book.state();
    match e.operation {
        kv::Operation::Put => match serde_json::from_slice::<RouterAck>(&e.value) {
            Ok(ack) => {
                // An entry from before this operator started counts as fresh: the bucket
                // expires a dead router's entry within ROUTER_ACK_TTL anyway.
                let seen = Instant::now();
                st.routers.insert(
                    e.key.clone(),
                    (
                        SeenRouter {
                            identity: ack.identity,
                            revision: ack.revision,
                        },
                        seen,
                    ),
                );
            }
            Err(err) => {
                tracing::warn!(key = %e.key, error = %err, "unreadable router acknowledgement")
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => {
            st.routers.remove(&e.key);
        }
    }
}

/// The table last published: its text and the Triggers (with generations) it carries.
type Published = (String, Vec<(String, Option<i64>)>);

/// Keeps the published table current until `shutdown`. Waits for both caches first, so a
/// restart never publishes an empty table to the routers.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let Some(book) = ctx.routes.clone() else {
        return;
    };
    tokio::select! {
        _ = async {
            let _ = ctx.triggers.wait_until_ready().await;
            let _ = ctx.functions.wait_until_ready().await;
        } => {}
        _ = shutdown.changed() => return,
    }
    let mut last: Option<Published> = None;
    loop {
        let ts = routed(&ctx.triggers, &ctx.functions);
        let mut in_table: Vec<(String, Option<i64>)> = ts
            .iter()
            .map(|t| (key_of(t), t.metadata.generation))
            .collect();
        in_table.sort();
        let refs: Vec<&Trigger> = ts.iter().map(AsRef::as_ref).collect();
        let schemas = valid_schemas(&ctx.schemas);
        let schema_refs: Vec<&EventSchema> = schemas.iter().map(AsRef::as_ref).collect();
        match children::routes(&refs, &schema_refs) {
            Ok(_) if ctx.fence.check().is_err() => {}
            Ok(text) if last.as_ref() != Some(&(text.clone(), in_table.clone())) => {
                match book.publish(&text, &in_table).await {
                    Ok(revision) => {
                        tracing::info!(
                            revision,
                            triggers = in_table.len(),
                            bytes = text.len(),
                            "route table published"
                        );
                        last = Some((text, in_table));
                    }
                    Err(e) => tracing::warn!(error = %e, "publishing the route table failed"),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::ConditionStatus;

    fn router(id: &str, revision: u64) -> SeenRouter {
        SeenRouter {
            identity: id.into(),
            revision,
        }
    }

    #[test]
    fn ready_only_once_every_live_router_has_the_revision() {
        let pending = route_condition(None, &[router("a", 9)], "r");
        assert_eq!(
            (pending.status, pending.reason.as_str()),
            (ConditionStatus::Unknown, "RoutePending")
        );
        let none = route_condition(Some(3), &[], "r");
        assert_eq!(none.reason, "NoPublisher");
        let half = route_condition(Some(3), &[router("a", 3), router("b", 2)], "r");
        assert_eq!(half.status, ConditionStatus::Unknown);
        assert!(
            half.message.contains("1 of 2") && half.message.contains("waiting for b"),
            "{}",
            half.message
        );
        let all = route_condition(Some(3), &[router("a", 4), router("b", 3)], "r");
        assert_eq!(
            (all.status, all.reason.as_str()),
            (ConditionStatus::True, "Routed")
        );
        assert!(all.message.contains("revision 3 loaded by 2 publisher(s)"));
    }

    #[test]
    fn a_trigger_keeps_the_revision_that_first_carried_its_generation() {
        let first = ledger_after(
            &HashMap::new(),
            &[("ns/a".into(), Some(1)), ("ns/b".into(), Some(1))],
            5,
        );
        assert_eq!(first["ns/a"], (Some(1), 5));
        // b changed, c is new, a did not: only a keeps its old revision; gone ones drop out.
        let next = ledger_after(
            &first,
            &[("ns/a".into(), Some(1)), ("ns/b".into(), Some(2))],
            6,
        );
        assert_eq!(next["ns/a"], (Some(1), 5));
        assert_eq!(next["ns/b"], (Some(2), 6));
        let after = ledger_after(&next, &[("ns/b".into(), Some(2))], 7);
        assert!(!after.contains_key("ns/a"));
        // Deleted and re-created with the same generation: published again, a new revision.
        let back = ledger_after(
            &after,
            &[("ns/a".into(), Some(1)), ("ns/b".into(), Some(2))],
            8,
        );
        assert_eq!(back["ns/a"], (Some(1), 8));
    }
}
