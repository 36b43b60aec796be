//! The processes Sluice runs as, wired from the crates below: `local` is the whole system in
//! one process on the embedded bus (`sluice dev`), `dev` loads and watches manifest files and
//! runs handlers with the Wasm host, `distributed` is the `sluice ingress`, `sluice router` and
//! `sluice worker` processes on NATS JetStream; `manifests` reads manifest files.
//!
//! Owns: which components run together and how manifests become running routers, workers,
//! bridges and routes, re-applied on change. Must not know: the command line (flags, exit
//! codes, printing) or the operator; that is `sluice-cli` above it.

pub mod catalog;
pub mod dev;
pub mod distributed;
mod error;
pub mod local;
pub mod manifests;

pub use error::ProcessError;
