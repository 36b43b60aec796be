//! The Sluice operator: reconciles Functions into worker Deployments and Triggers into router
//! configuration, and scales workers by queue depth. Built out by the operator issue; today it
//! only re-exports the resource types it will reconcile.

pub use sluice_api::{Function, Trigger};
