//! Status conditions as pure functions: set one, keeping its transition time when its status
//! did not change, and list which ones changed so each change gets one Kubernetes Event.

use sluice_api::{Condition, ConditionStatus, FieldError};

/// The desired state of one condition, before times are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

impl Want {
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn ok(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(type_, ConditionStatus::True, reason, message)
    }
    pub fn failed(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(type_, ConditionStatus::False, reason, message)
    }
}

/// The conditions after applying `wants` to `old`: conditions of other types are kept, the
/// transition time moves only when a condition's status changes.
pub fn merge(
    old: &[Condition],
    wants: &[Want],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = old
        .iter()
        .filter(|c| !wants.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    for w in wants {
        let prev = old.iter().find(|c| c.type_ == w.type_);
        let time = match prev {
            Some(p) if p.status == w.status => p.last_transition_time.clone(),
            _ => Some(now.to_owned()),
        };
        out.push(Condition {
            type_: w.type_.into(),
            status: w.status,
            reason: w.reason.clone(),
            message: w.message.clone(),
            last_transition_time: time,
            observed_generation: generation,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The wants that differ from `old` in status, reason or message: each deserves an Event.
pub fn changed<'a>(old: &[Condition], wants: &'a [Want]) -> Vec<&'a Want> {
    wants
        .iter()
        .filter(|w| {
            !old.iter().any(|c| {
                c.type_ == w.type_
                    && c.status == w.status
                    && c.reason == w.reason
                    && c.message == w.message
            })
        })
        .collect()
}

/// True when `a` and `b` say the same, ignoring times and generations.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            format!("{:?}", c.status),
            c.reason.clone(),
            c.message.clone(),
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

/// Field errors as one condition message: `spec.x: …; spec.y: …`.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The current time as RFC 3339, for `lastTransitionTime`.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = merge(
            &[],
            &[Want::failed("Ready", "FunctionNotFound", "x")],
            Some(1),
            "t1",
        );
        assert_eq!(first[0].last_transition_time.as_deref(), Some("t1"));
        let same_status = merge(
            &first,
            &[Want::failed("Ready", "Other", "y")],
            Some(2),
            "t2",
        );
        assert_eq!(same_status[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(same_status[0].observed_generation, Some(2));
        let flipped = merge(
            &same_status,
            &[Want::ok("Ready", "Routed", "z")],
            Some(2),
            "t3",
        );
        assert_eq!(flipped[0].last_transition_time.as_deref(), Some("t3"));
    }

    #[test]
    fn other_types_are_kept_and_changes_listed() {
        let old = merge(
            &[],
            &[
                Want::ok("ModuleResolved", "Resolved", "a"),
                Want::ok("Ready", "R", "b"),
            ],
            None,
            "t",
        );
        let wants = [Want::ok("Ready", "R", "b2")];
        let new = merge(&old, &wants, None, "t");
        assert_eq!(new.len(), 2);
        assert_eq!(changed(&old, &wants).len(), 1);
        assert!(changed(&new, &wants).is_empty());
        assert!(same(&new, &new.clone()));
        assert!(!same(&old, &new));
    }
}
