//! What a process runs, as the console lists it: a pure function of the applied Functions and
//! Triggers and the problems of the last load.

use std::collections::BTreeMap;

use sluice_ingress::console::{CatalogSnapshot, FunctionInfo, TriggerInfo};

use crate::local::{FunctionDef, TriggerDef};

/// `problems` is keyed `Kind namespace/name` (a Function kept at its last good version has
/// one; a Function that never loaded is listed from it alone).
pub fn snapshot(
    functions: &[FunctionDef],
    triggers: &[TriggerDef],
    problems: &BTreeMap<String, String>,
) -> CatalogSnapshot {
    let problem = |kind: &str, id: &str| problems.get(&format!("{kind} {id}")).cloned();
    let mut fns: Vec<FunctionInfo> = functions
        .iter()
        .map(|f| FunctionInfo {
            id: f.id.clone(),
            ready: true,
            message: problem("Function", &f.id)
                .map(|m| format!("serving the last good version; {m}")),
        })
        .collect();
    for (object, message) in problems {
        if let Some(id) = object.strip_prefix("Function ")
            && !fns.iter().any(|f| f.id == id)
        {
            fns.push(FunctionInfo {
                id: id.to_owned(),
                ready: false,
                message: Some(message.clone()),
            });
        }
    }
    fns.sort_by(|a, b| a.id.cmp(&b.id));
    let mut trs: Vec<TriggerInfo> = triggers
        .iter()
        .map(|t| TriggerInfo {
            id: t.id.clone(),
            function: t.function_id(),
            source: serde_json::to_value(&t.spec.source).unwrap_or_default(),
            pattern: t.spec.pattern.clone(),
            queued: t.spec.source.http.is_none(),
            message: problem("Trigger", &t.id),
        })
        .collect();
    trs.sort_by(|a, b| a.id.cmp(&b.id));
    CatalogSnapshot {
        functions: fns,
        triggers: trs,
    }
}
