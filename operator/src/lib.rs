//! The Sluice operator: reconciles Functions into worker Deployments (plus a Service when an
//! HTTP Trigger targets them), Triggers and EventSchemas into the route table every publisher
//! follows, and
//! scales workers by the depth of their Triggers' JetStream consumers. `run` wires it
//! together; every decision is a pure function in `children`, `conditions` or
//! `sluice_api::scaling`, unit-tested without a client.
//!
//! Owns: everything that talks to the Kubernetes API. Must not know: the data plane's
//! internals; it reaches workers, routers and the ingress only through what it writes
//! (Deployments, the routes bucket) and reads (JetStream consumer depth), and no data-plane
//! crate depends on it.

pub mod autoscaler;
pub mod children;
pub mod conditions;
pub mod config;
pub mod counters;
pub mod error;
pub mod event_schema;
pub mod function;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod module;
pub mod queues;
pub mod routes;
pub mod run;
pub mod trigger;
pub mod uninstall;

use std::sync::Arc;

use kube::{
    Client,
    runtime::{events::Recorder, reflector::Store},
};

pub use config::{Config, Settings};
pub use error::{Error, Result};
pub use sluice_api::{Function, Trigger};

/// The field manager of every server-side apply the reconcilers make.
pub const FIELD_MANAGER: &str = "sluice-operator";
/// The autoscaler's field manager: it owns `status.replicas`, `status.pending` and the
/// Deployments' `spec.replicas`, so the reconcilers' applies never reset them.
pub const AUTOSCALER_FIELD_MANAGER: &str = "sluice-operator-autoscaler";

/// What every reconcile needs: the client, the operator's settings, the shared caches.
pub struct Context {
    pub client: Client,
    pub settings: Arc<Settings>,
    /// Every Trigger in the cluster (a reflector kept by `run`).
    pub triggers: Store<Trigger>,
    /// Every Function in the cluster (the Function controller's cache).
    pub functions: Store<Function>,
    /// Every EventSchema in the cluster (the EventSchema controller's cache).
    pub schemas: Store<sluice_api::EventSchema>,
    pub recorder: Recorder,
    pub metrics: Arc<metrics::Metrics>,
    pub modules: module::Resolver,
    /// JetStream, for reading Trigger queue depth and deleting a deleted Trigger's consumers
    /// and events. `None`: queues are left alone.
    pub queues: Option<Arc<dyn queues::Queues>>,
    /// Poked whenever Triggers or Functions may have changed, so the routes are re-rendered.
    pub routes_changed: Arc<tokio::sync::Notify>,
    /// The published route table and the publishers' acknowledgements. `None`: no publishers
    /// are tracked and a valid Trigger is Ready at once (the unit tests' mocked API).
    pub routes: Option<Arc<routes::RouteBook>>,
    /// Every write goes through it: closed once this replica may have lost the leader Lease
    /// (`lease.rs`).
    pub fence: lease::Fence,
}

/// rustls needs one process-wide crypto provider; kube, reqwest and async-nats all use ring.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
