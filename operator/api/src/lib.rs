//! Sluice's resource types, `Function`, `Trigger` and `EventSchema` (`sluice.dev/v1alpha1`): the single source
//! of truth for the CRDs, for `sluice dev` manifests, and for validation. No Kubernetes client.
//!
//! Owns: the spec types, their validation, the JetStream names and route buckets shared by the
//! operator and the routers, and the gates' state (rate limit, circuit breaker) both read. The Kubernetes object wrappers, CRD generation and manifest files
//! are the `crd` feature (kube's derive types), so the data-plane crates use the spec types
//! without kube. Must not know: how anything runs; it describes, it does not act.

pub mod buckets;
pub mod condition;
#[cfg(feature = "crd")]
pub mod crd;
pub mod credentials;
pub mod duration;
pub mod event_schema;
pub mod function;
pub mod gate;
pub mod jetstream;
#[cfg(feature = "crd")]
pub mod manifest;
pub mod quantity;
pub mod scaling;
#[cfg(feature = "crd")]
pub mod schema;
pub mod trigger;
pub mod validate;

pub use condition::{Condition, ConditionStatus};
pub use duration::Duration;
#[cfg(feature = "crd")]
pub use event_schema::EventSchema;
pub use event_schema::{EventSchemaSpec, EventSchemaStatus};
#[cfg(feature = "crd")]
pub use function::Function;
pub use function::{FunctionSpec, FunctionStatus};
#[cfg(feature = "crd")]
pub use manifest::{Document, ObjectRef, Outcome, Resource};
pub use quantity::ByteSize;
#[cfg(feature = "crd")]
pub use trigger::Trigger;
pub use trigger::{TriggerSpec, TriggerStatus};
pub use validate::FieldError;
