//! Status conditions, shaped like `metav1.Condition` so `kubectl wait --for=condition=Ready`
//! and every dashboard that reads conditions work on Sluice resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `ModuleResolved`, …
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase machine-readable cause, e.g. `FunctionNotFound`.
    #[serde(default)]
    pub reason: String,
    /// What a human should know, naming the field at fault when there is one.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}
