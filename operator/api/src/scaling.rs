//! The one scaling policy (DESIGN §6), a pure function so `sluice dev` (worker tasks) and the
//! operator (Deployment replicas) make identical decisions and both are tested on traces.

use std::time::Duration;

use crate::FunctionSpec;

/// What `decide` concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to run now.
    pub replicas: u32,
    /// True when the current load needs at least the current replicas; the caller then
    /// records `now` as the new `last_needed` (the cooldown runs from there).
    pub needed: bool,
}

/// The replicas a worker Deployment is created with: `spec.replicas` when it pins the count,
/// else `minReplicas`. Kubernetes would otherwise start one replica of a scale-to-zero
/// Function at every apply, to run idle for a whole cooldown.
pub fn initial_replicas(spec: &FunctionSpec) -> u32 {
    match spec.replicas {
        Some(pinned) => u32::try_from(pinned).unwrap_or(0),
        None => spec.scaling.min_replicas,
    }
}

/// Desired replicas for a Function.
///
/// * `pending`: queued plus in-flight events over all of its triggers;
/// * `current`: replicas running now;
/// * `last_needed`: when the current replica count was last needed (or last changed); the
///   scale-down cooldown runs from then, so a brief dip does not shed workers;
/// * `now`: the caller's clock, as a duration since any fixed origin.
///
/// Scale up at once to `ceil(pending / targetPendingPerReplica)`; scale down only after
/// `cooldown` without need; clamp to `[minReplicas, maxReplicas]`; one pending event wakes a
/// Function scaled to zero. `spec.replicas`, when set, pins the count.
pub fn decide(
    pending: u64,
    current: u32,
    spec: &FunctionSpec,
    last_needed: Duration,
    now: Duration,
) -> Decision {
    if let Some(pinned) = spec.replicas {
        let pinned = u32::try_from(pinned).unwrap_or(0);
        return Decision {
            replicas: pinned,
            needed: true,
        };
    }
    let s = &spec.scaling;
    let target = u64::from(s.target_pending_per_replica.max(1));
    let raw = pending.div_ceil(target);
    let max = s.max_replicas.max(s.min_replicas);
    let want = u32::try_from(raw)
        .unwrap_or(u32::MAX)
        .clamp(s.min_replicas, max);
    if want >= current {
        return Decision {
            replicas: want,
            needed: true,
        };
    }
    let cooled = now.saturating_sub(last_needed) >= s.cooldown.as_std();
    Decision {
        replicas: if cooled { want } else { current },
        needed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{function::ModuleSource, function::Scaling};

    #[test]
    fn workers_are_created_at_min_replicas_or_the_pinned_count() {
        assert_eq!(initial_replicas(&spec(0, 5, 10, 30)), 0);
        assert_eq!(initial_replicas(&spec(2, 5, 10, 30)), 2);
        let mut pinned = spec(0, 5, 10, 30);
        pinned.replicas = Some(3);
        assert_eq!(initial_replicas(&pinned), 3);
    }

    fn spec(min: u32, max: u32, target: u32, cooldown_s: u64) -> FunctionSpec {
        let yaml = format!(
            "module: {{path: a.wasm}}\nscaling: {{minReplicas: {min}, maxReplicas: {max}, targetPendingPerReplica: {target}, cooldown: {cooldown_s}s}}"
        );
        let s: FunctionSpec = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(
            s.scaling,
            Scaling {
                min_replicas: min,
                max_replicas: max,
                target_pending_per_replica: target,
                cooldown: crate::Duration::from_secs(cooldown_s)
            }
        );
        assert!(matches!(s.module, ModuleSource { path: Some(_), .. }));
        s
    }

    /// Replays (second, pending) samples through `decide` the way a caller does and returns
    /// the replica count after each sample.
    fn replay(spec: &FunctionSpec, trace: &[(u64, u64)]) -> Vec<u32> {
        let mut current = 0;
        let mut last_needed = Duration::ZERO;
        trace
            .iter()
            .map(|&(t, pending)| {
                let now = Duration::from_secs(t);
                let d = decide(pending, current, spec, last_needed, now);
                if d.needed || d.replicas != current {
                    last_needed = now;
                }
                current = d.replicas;
                current
            })
            .collect()
    }

    #[test]
    fn scales_up_at_once_and_down_after_cooldown_to_zero() {
        let s = spec(0, 5, 100, 60);
        let trace = [
            (0, 0),
            (1, 1),
            (2, 250),
            (3, 900),
            (10, 120),
            (30, 0),
            (69, 0),
            (71, 0),
            (100, 0),
        ];
        // 1 event wakes one; 250 → 3; 900 → capped 5; dips wait 60 s from the last need (t=3),
        // then drop straight to what is needed (0 at t=69, 66 s after the last need).
        assert_eq!(replay(&s, &trace), vec![0, 1, 3, 5, 5, 5, 0, 0, 0]);
    }

    #[test]
    fn a_brief_dip_does_not_shed_workers() {
        let s = spec(0, 10, 10, 30);
        let trace = [(0, 100), (20, 0), (25, 100), (50, 0), (54, 0), (56, 0)];
        assert_eq!(replay(&s, &trace), vec![10, 10, 10, 10, 10, 0]);
    }

    #[test]
    fn min_replicas_is_a_floor_and_max_a_ceiling() {
        let s = spec(2, 4, 10, 0);
        assert_eq!(replay(&s, &[(0, 0), (1, 1_000_000), (2, 0)]), vec![2, 4, 2]);
    }

    #[test]
    fn pinned_replicas_win() {
        let mut s = spec(0, 4, 10, 0);
        s.replicas = Some(7);
        assert_eq!(
            decide(1_000, 1, &s, Duration::ZERO, Duration::from_secs(5)),
            Decision {
                replicas: 7,
                needed: true
            }
        );
    }

    #[test]
    fn zero_cooldown_follows_load_exactly() {
        let s = spec(0, 100, 1, 0);
        assert_eq!(
            replay(&s, &[(0, 5), (1, 3), (2, 8), (3, 0)]),
            vec![5, 3, 8, 0]
        );
    }
}
