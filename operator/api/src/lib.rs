//! Sluice's resource types, `Function` and `Trigger` (`sluice.dev/v1alpha1`): the single source
//! of truth for the CRDs, for `sluice dev` manifests, and for validation. No Kubernetes client.

pub mod buckets;
pub mod condition;
#[cfg(feature = "crd")]
pub mod crd;
pub mod duration;
pub mod function;
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
pub use function::Function;
pub use function::{FunctionSpec, FunctionStatus};
#[cfg(feature = "crd")]
pub use manifest::{Document, ObjectRef, Outcome, Resource};
pub use quantity::ByteSize;
#[cfg(feature = "crd")]
pub use trigger::Trigger;
pub use trigger::{TriggerSpec, TriggerStatus};
pub use validate::FieldError;
