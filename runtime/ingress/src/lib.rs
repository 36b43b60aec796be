//! Entry points: how events from outside reach a bus. `http` is the CloudEvents HTTP binding
//! (binary, structured and batched modes) answering 202 only once the append is durable, plus
//! synchronous invocation of HTTP-source Triggers, `tail`, the dead-letter endpoints, health and
//! metrics; `bridge` turns MQTT and plain NATS messages into events on a trigger's queue.
//!
//! Owns: the wire formats and HTTP semantics of entering Sluice. Must not know: which process
//! it runs in (`sluice dev` or `sluice ingress`/`worker`): HTTP-source routes come through
//! [`HttpRoutes`], the bus through `SharedBus`, handlers through `sluice_delivery::Invoker`.

pub mod bridge;
pub mod console;
pub mod http;
pub mod secrets;
pub mod tls;

pub use http::*;
