//! What happens after a failed delivery, as a pure function of the attempt, the failure and the
//! Trigger's retry policy: retry after a jittered backoff, or give up with a reason.

use std::time::Duration;

use sluice_api::trigger::{Backoff, Retry};

/// The next step for a failed delivery.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Retry(Duration),
    DeadLetter(GiveUp),
}

/// Why an event is dead-lettered; the string is the `sluicereason` extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// `maxAttempts` deliveries all failed.
    Exhausted,
    /// The handler said retrying cannot help (or the sandbox denied what it tried).
    Fatal,
    /// The next attempt would come after `maxAge`.
    Expired,
    /// A reply chain exceeded the hop limit.
    Loop,
}

impl GiveUp {
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUp::Exhausted => "exhausted",
            GiveUp::Fatal => "fatal",
            GiveUp::Expired => "expired",
            GiveUp::Loop => "loop",
        }
    }
}

/// Whether a failed attempt counts toward the Trigger's circuit breaker: a failure another
/// attempt could help (the handler's dependency down, a timeout, a trap) says the handler is
/// failing now; a fatal one (an event it refuses, a transform that cannot apply) says only that
/// the event is bad, and must not pause the good events behind it.
pub fn trips_breaker(err: &crate::InvokeError) -> bool {
    err.retryable
}

/// The upper bound of the delay before attempt `attempt + 1`, before jitter.
pub fn backoff_cap(attempt: u32, retry: &Retry) -> Duration {
    let initial = retry.initial_delay.as_std();
    let max = retry.max_delay.as_std().max(initial);
    let n = attempt.max(1);
    let grown = match retry.backoff {
        Backoff::Exponential => initial.checked_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX)),
        Backoff::Linear => initial.checked_mul(n),
        Backoff::Constant => Some(initial),
    };
    grown.unwrap_or(max).min(max)
}

/// Decides what follows failed attempt number `attempt` (1-based).
///
/// Full jitter within bounds: the delay is uniform in `[initialDelay, cap]` where `cap` grows
/// with the backoff and never exceeds `maxDelay`, so retries from many failed events spread
/// out instead of arriving in waves. `jitter` is a uniform sample in `[0, 1)`.
pub fn after_failure(
    attempt: u32,
    retryable: bool,
    retry: &Retry,
    age: Duration,
    jitter: f64,
) -> Step {
    if !retryable {
        return Step::DeadLetter(GiveUp::Fatal);
    }
    if attempt >= retry.max_attempts {
        return Step::DeadLetter(GiveUp::Exhausted);
    }
    let low = retry.initial_delay.as_std();
    let cap = backoff_cap(attempt, retry);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let delay = low + (cap.saturating_sub(low)).mul_f64(jitter);
    if age + delay > retry.max_age.as_std() {
        return Step::DeadLetter(GiveUp::Expired);
    }
    Step::Retry(delay)
}

/// True when an event accepted `age` ago may no longer be delivered.
pub fn expired(age: Duration, retry: &Retry) -> bool {
    age > retry.max_age.as_std()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn retry(backoff: Backoff, max_attempts: u32) -> Retry {
        Retry {
            max_attempts,
            backoff,
            initial_delay: sluice_api::Duration::from_secs(1),
            max_delay: sluice_api::Duration::from_secs(60),
            max_age: sluice_api::Duration::from_secs(3600),
        }
    }

    #[test]
    fn caps_grow_by_backoff_kind_and_stop_at_max_delay() {
        let caps = |b| {
            (1..=8)
                .map(|a| backoff_cap(a, &retry(b, 10)).as_secs())
                .collect::<Vec<_>>()
        };
        assert_eq!(caps(Backoff::Exponential), vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(caps(Backoff::Linear), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(caps(Backoff::Constant), vec![1; 8]);
        assert_eq!(
            backoff_cap(200, &retry(Backoff::Exponential, 185)).as_secs(),
            60,
            "no overflow"
        );
    }

    #[test]
    fn gives_up_for_the_right_reason() {
        let r = retry(Backoff::Exponential, 3);
        assert_eq!(
            after_failure(1, false, &r, Duration::ZERO, 0.5),
            Step::DeadLetter(GiveUp::Fatal)
        );
        assert_eq!(
            after_failure(3, true, &r, Duration::ZERO, 0.5),
            Step::DeadLetter(GiveUp::Exhausted)
        );
        assert_eq!(
            after_failure(1, true, &r, Duration::from_secs(3600), 0.5),
            Step::DeadLetter(GiveUp::Expired)
        );
        assert_eq!(
            after_failure(2, true, &r, Duration::ZERO, 0.0),
            Step::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            after_failure(2, true, &r, Duration::ZERO, 1.0),
            Step::Retry(Duration::from_secs(2))
        );
        assert!(expired(Duration::from_secs(3601), &r) && !expired(Duration::from_secs(3600), &r));
    }

    proptest! {
        #[test]
        fn delays_stay_within_initial_and_max(attempt in 1u32..200, jitter in any::<f64>(), kind in 0..3u8) {
            let b = [Backoff::Exponential, Backoff::Linear, Backoff::Constant][kind as usize];
            let r = retry(b, 185);
            if let Step::Retry(d) = after_failure(attempt, true, &r, Duration::ZERO, jitter) {
                prop_assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(60), "{d:?}");
            } else {
                prop_assert!(attempt >= 185);
            }
        }
    }
}
