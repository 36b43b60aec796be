//! The Sluice runtime: manifests, events, patterns, buses, the Wasm host, delivery, HTTP
//! ingress and the `sluice` command line. Data flows one way: ingress → bus → router →
//! queue → worker → (ack | retry | dead-letter).

pub mod bridge;
pub mod bus;
pub mod cli;
pub mod delivery;
pub mod dev;
pub mod distributed;
pub mod ingress;
pub mod local;
pub mod manifests;
pub mod metrics;
pub mod router;
