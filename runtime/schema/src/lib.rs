//! Event contracts: the `EventSchema` resources of a process compiled into one [`Registry`]
//! that validates an event's `data` and stamps the version it passed, the compatibility rules
//! between consecutive versions ([`compat`]), and a schema proposed from sample events
//! ([`infer`]).
//!
//! Owns: JSON Schema (draft 2020-12) and what "compatible" means. Must not know: manifests,
//! buses or HTTP; the publishers (ingress, bridges, workers) call [`Registry::check`] before
//! they store an event, and `sluice-api` calls [`compile`] and [`compat`] to validate manifests.

pub mod compat;
pub mod infer;
mod path;
mod reach;
mod registry;

pub use compat::Compatibility;
pub use reach::cannot_reach;
pub use registry::{
    Failure, Invalid, Registry, SchemaDef, Shared, Stamp, VERSION_ATTRIBUTE, compile, version_uri,
};
