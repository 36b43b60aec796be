//! Sluice's Wasm sandbox host: runs one CloudEvent through a handler module in a fresh,
//! limited instance and returns its reply events or a typed `Failure` the delivery engine can
//! retry or dead-letter. Two ABIs: a `sluice:function/handler` component, or a WASI command.
//!
//! Owns: wasmtime, the module cache, sandbox limits and grants, and the translation of guest
//! outcomes into `Failure`s. Must not know: buses, queues, retries or HTTP ingress; whether a
//! failure is retried is `sluice-delivery`'s decision.

pub mod batch;
mod cache;
mod command;
mod component;
mod engine;
mod failure;
mod handler;
mod linker;
mod outbound;
mod output;
mod record;
mod sandbox;

pub use batch::{BatchOutcome, ItemFailure};
pub use command::EXIT_FATAL;
pub use engine::{Engine, EngineConfig, EngineStats};
pub use failure::{Failure, HostError};
pub use handler::{Handler, HandlerConfig};
pub use sluice_api::function::Abi;

#[cfg(test)]
mod tests {
    /// Workers share engines and handlers across tasks and threads.
    #[test]
    fn engine_and_handler_are_shareable() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<super::Engine>();
        shareable::<super::Handler>();
    }
}
