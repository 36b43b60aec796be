//! Sluice's resource types, `Function` and `Trigger` (`sluice.dev/v1alpha1`): the single source
//! of truth for the CRDs, for `sluice dev` manifests, and for validation. No Kubernetes client.

pub mod buckets;
pub mod condition;
pub mod crd;
pub mod duration;
pub mod function;
pub mod jetstream;
pub mod manifest;
pub mod quantity;
pub mod scaling;
pub mod schema;
pub mod trigger;
pub mod validate;

pub use condition::{Condition, ConditionStatus};
pub use duration::Duration;
pub use function::{Function, FunctionSpec, FunctionStatus};
pub use manifest::{Document, ObjectRef, Outcome, Resource};
pub use quantity::ByteSize;
pub use trigger::{Trigger, TriggerSpec, TriggerStatus};
pub use validate::FieldError;
