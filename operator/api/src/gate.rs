//! A Trigger's gate: how many of its events may go to the handler now. Two parts, both pure
//! functions of a small state and the time, so each backend only has to keep the state where
//! every worker of the Trigger sees it (the embedded bus in its process, the NATS bus in a
//! key-value bucket updated by compare-and-set):
//!
//! * a **rate limit**, a token bucket (`delivery.rateLimit`): `perSecond` tokens a second, at
//!   most `burst` saved; an event leased takes one;
//! * a **circuit breaker** (`delivery.circuitBreaker`): closed until `consecutiveFailures`
//!   attempts in a row failed, then open (nothing leased) for `coolOff`, then half-open: one
//!   event, the trial, is leased; its success closes the breaker and its failure opens it again.
//!
//! The gate is applied when events are leased, so an event held back is never handed out and
//! its attempt count does not move. The state is here, with the spec types, because the
//! operator reads what the workers write (the Trigger's `status.circuit`).

use crate::trigger::Delivery;
use serde::{Deserialize, Serialize};

/// A Trigger's gate settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    pub rate: Option<RateLimit>,
    pub breaker: Option<BreakerConfig>,
}

impl Gate {
    pub fn of(d: &Delivery) -> Self {
        Self {
            rate: d.rate_limit.as_ref().map(|r| RateLimit {
                per_second: r.per_second.max(1),
                burst: r.burst().max(1),
            }),
            breaker: d.circuit_breaker.as_ref().map(|c| BreakerConfig {
                failures: c.consecutive_failures.max(1),
                cool_off_ms: u64::try_from(c.cool_off.as_std().as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    pub fn is_unset(&self) -> bool {
        self.rate.is_none() && self.breaker.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// One token, in the bucket's unit: a thousandth of a token refills per millisecond at one
/// event a second, so refills are exact integers.
const TOKEN: u64 = 1000;

/// A token bucket's state: `milli` thousandths of a token as of `at_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub milli: u64,
    pub at_ms: u64,
}

impl Bucket {
    /// The bucket as of `now`: refilled for the time since `at_ms`, at most `burst` tokens. A
    /// bucket never seen before (`at_ms` 0) is full; a clock behind `at_ms` refills nothing.
    fn refilled(self, now: u64, limit: &RateLimit) -> Bucket {
        let cap = u64::from(limit.burst) * TOKEN;
        let milli = if self.at_ms == 0 {
            cap
        } else {
            let grown = now
                .saturating_sub(self.at_ms)
                .saturating_mul(u64::from(limit.per_second));
            self.milli.saturating_add(grown).min(cap)
        };
        Bucket {
            milli,
            at_ms: now.max(self.at_ms),
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(self, now: u64, limit: &RateLimit) -> u32 {
        u32::try_from(self.refilled(now, limit).milli / TOKEN).unwrap_or(u32::MAX)
    }
}

/// What [`take`] granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub bucket: Bucket,
    pub granted: u32,
    /// When the next token is there, if the bucket is now empty (ms, the same clock as `now`).
    pub next_ms: Option<u64>,
}

/// Takes up to `want` tokens at `now`.
pub fn take(b: Bucket, now: u64, limit: &RateLimit, want: u32) -> Taken {
    let mut b = b.refilled(now, limit);
    let granted = want.min(u32::try_from(b.milli / TOKEN).unwrap_or(u32::MAX));
    b.milli -= u64::from(granted) * TOKEN;
    let next_ms = (b.milli < TOKEN).then(|| {
        let short = TOKEN - b.milli;
        b.at_ms + short.div_ceil(u64::from(limit.per_second))
    });
    Taken {
        bucket: b,
        granted,
        next_ms,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failed attempts in a row that open it.
    pub failures: u32,
    pub cool_off_ms: u64,
}

/// A circuit breaker's state. `open_until` 0: closed; otherwise open until then, half-open
/// after. `trial_until`: a trial event is out until then (its lease); another may go after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pub failures: u32,
    pub open_until: u64,
    #[serde(default)]
    pub trial_until: u64,
    /// Times it opened, for metrics.
    #[serde(default)]
    pub opened: u64,
}

/// The breaker's state by name, as `kubectl get trg` and the metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half-open",
        }
    }
}

/// A breaker as shown to people (metrics, `kubectl get trg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerStatus {
    pub circuit: Circuit,
    pub failures: u32,
    /// When the cool-off ends, by the wall clock (ms since the epoch); 0 when closed.
    pub open_until_ms: u64,
    /// Times it opened.
    pub opened: u64,
}

/// The depth a Trigger's autoscaling counts: while its breaker is open or half-open nothing
/// (or one trial event) can go, so its backlog asks for one worker, to run the trial, not for
/// as many as it would need once delivery resumes (they would sit idle, and scaling out does
/// not heal what the handler calls). Once closed, the whole backlog counts again.
pub fn scaling_depth(pending: u64, circuit: Option<Circuit>) -> u64 {
    match circuit {
        Some(Circuit::Open | Circuit::HalfOpen) => pending.min(1),
        _ => pending,
    }
}

impl Circuit {
    /// The state by the name [`Circuit::as_str`] gives it (a Trigger's `status.circuit.state`).
    pub fn parse(s: &str) -> Option<Circuit> {
        [Circuit::Closed, Circuit::Open, Circuit::HalfOpen]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// How many events the breaker lets go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Closed: any number.
    All,
    /// Half-open and no trial out: this one event is the trial (the state to store says so).
    Trial,
    /// Open, or a trial is out: none before this time.
    NoneUntil(u64),
}

impl Breaker {
    pub fn circuit(&self, now: u64) -> Circuit {
        match self.open_until {
            0 => Circuit::Closed,
            t if now < t => Circuit::Open,
            _ => Circuit::HalfOpen,
        }
    }

    /// Its status at `now` on the clock its times are on, which reads `wall` (ms since the
    /// epoch) at that moment.
    pub fn status(&self, now: u64, wall: u64) -> BreakerStatus {
        BreakerStatus {
            circuit: self.circuit(now),
            failures: self.failures,
            open_until_ms: match self.open_until {
                0 => 0,
                t => (wall + t).saturating_sub(now),
            },
            opened: self.opened,
        }
    }

    /// Whether an event may be leased at `now`; with [`Admit::Trial`], the state that records
    /// the trial (out until `now + lease_ms`), which must be stored before the event is leased.
    pub fn admit(&self, now: u64, lease_ms: u64) -> (Admit, Breaker) {
        match self.circuit(now) {
            Circuit::Closed => (Admit::All, *self),
            Circuit::Open => (Admit::NoneUntil(self.open_until), *self),
            Circuit::HalfOpen if now < self.trial_until => {
                (Admit::NoneUntil(self.trial_until), *self)
            }
            Circuit::HalfOpen => (
                Admit::Trial,
                Breaker {
                    trial_until: now.saturating_add(lease_ms.max(1)),
                    ..*self
                },
            ),
        }
    }

    /// The state after an attempt's outcome at `now`. A success closes the breaker whatever
    /// its state (the handler works again); a failure counts, and opens it at the threshold,
    /// or at once when it was open or half-open (the trial failed).
    pub fn record(&self, now: u64, cfg: &BreakerConfig, ok: bool) -> Breaker {
        if ok {
            return Breaker {
                opened: self.opened,
                ..Breaker::default()
            };
        }
        let failures = self.failures.saturating_add(1);
        let opens = self.open_until != 0 || failures >= cfg.failures;
        if !opens {
            return Breaker { failures, ..*self };
        }
        Breaker {
            failures,
            open_until: now.saturating_add(cfg.cool_off_ms).max(1),
            trial_until: 0,
            opened: self.opened + u64::from(self.open_until == 0 || now >= self.open_until),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RATE: RateLimit = RateLimit {
        per_second: 10,
        burst: 5,
    };

    #[test]
    fn a_new_bucket_is_full_and_refills_at_the_rate() {
        let t = take(Bucket::default(), 1_000, &RATE, 8);
        assert_eq!(t.granted, 5, "the burst");
        assert_eq!(t.next_ms, Some(1_100), "one token every 100 ms");
        let t = take(t.bucket, 1_099, &RATE, 1);
        assert_eq!((t.granted, t.next_ms), (0, Some(1_100)));
        let t = take(t.bucket, 1_100, &RATE, 3);
        assert_eq!((t.granted, t.next_ms), (1, Some(1_200)));
        let t = take(t.bucket, 1_350, &RATE, 1);
        assert_eq!(t.granted, 1, "2.5 tokens refilled, one taken");
        assert_eq!(t.next_ms, None, "1.5 left");
        let t = take(t.bucket, 10_000, &RATE, 100);
        assert_eq!(t.granted, 5, "idle refills to the burst only");
    }

    #[test]
    fn a_clock_behind_the_bucket_refills_nothing() {
        let t = take(Bucket::default(), 5_000, &RATE, 5);
        let t = take(t.bucket, 4_000, &RATE, 1);
        assert_eq!(t.granted, 0);
        assert_eq!(t.bucket.at_ms, 5_000);
    }

    proptest! {
        /// Over any sequence of takes, the tokens granted never exceed the burst plus the rate
        /// times the time passed, and a taker asking at every token's time gets that many.
        #[test]
        fn grants_stay_within_burst_plus_rate(
            per_second in 1u32..5_000,
            burst in 1u32..200,
            steps in proptest::collection::vec((0u64..300, 0u32..50), 1..200),
        ) {
            let limit = RateLimit { per_second, burst };
            let (start, mut now) = (1_000u64, 1_000u64);
            let mut b = Bucket::default();
            let mut granted = 0u64;
            for (dt, want) in steps {
                now += dt;
                let t = take(b, now, &limit, want);
                prop_assert!(t.granted <= want);
                granted += u64::from(t.granted);
                b = t.bucket;
                if let Some(next) = t.next_ms {
                    prop_assert!(next > now);
                    prop_assert_eq!(take(b, next, &limit, 1).granted, 1, "a token at next_ms");
                    prop_assert_eq!(take(b, next - 1, &limit, 1).granted, 0, "none before");
                }
            }
            let allowed = u64::from(burst) + (now - start) * u64::from(per_second) / 1000;
            prop_assert!(granted <= allowed, "{granted} > {allowed}");
        }
    }

    const CFG: BreakerConfig = BreakerConfig {
        failures: 3,
        cool_off_ms: 1_000,
    };

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let b = Breaker::default();
        let b = b.record(10, &CFG, false).record(11, &CFG, false);
        assert_eq!((b.failures, b.circuit(12)), (2, Circuit::Closed));
        let b = b.record(12, &CFG, true);
        assert_eq!(b.failures, 0, "not consecutive any more");
        let b = (0..3).fold(b, |b, i| b.record(20 + i, &CFG, false));
        assert_eq!(b.circuit(22), Circuit::Open);
        assert_eq!((b.open_until, b.opened), (1_022, 1));
        assert_eq!(b.admit(500, 100).0, Admit::NoneUntil(1_022));
    }

    #[test]
    fn half_open_lets_one_trial_go_whose_outcome_decides() {
        let open = (0..3).fold(Breaker::default(), |b, i| b.record(i, &CFG, false));
        assert_eq!(open.circuit(1_002), Circuit::HalfOpen);
        let (admit, trying) = open.admit(1_002, 300);
        assert_eq!(admit, Admit::Trial);
        assert_eq!(
            trying.admit(1_100, 300).0,
            Admit::NoneUntil(1_302),
            "one trial at a time"
        );
        assert_eq!(
            trying.admit(1_302, 300).0,
            Admit::Trial,
            "a lost trial is retried after its lease"
        );

        let reopened = trying.record(1_200, &CFG, false);
        assert_eq!(reopened.circuit(1_200), Circuit::Open);
        assert_eq!((reopened.open_until, reopened.opened), (2_200, 2));
        let closed = trying.record(1_200, &CFG, true);
        assert_eq!(closed.circuit(1_200), Circuit::Closed);
        assert_eq!((closed.failures, closed.opened), (0, 1));
        assert_eq!(closed.admit(1_200, 300).0, Admit::All);
    }

    #[test]
    fn a_failure_while_open_extends_the_cool_off_without_counting_a_new_opening() {
        let open = (0..3).fold(Breaker::default(), |b, i| b.record(i, &CFG, false));
        let later = open.record(500, &CFG, false);
        assert_eq!((later.open_until, later.opened), (1_500, 1));
    }

    #[test]
    fn a_paused_trigger_asks_for_one_worker() {
        assert_eq!(scaling_depth(500, None), 500);
        assert_eq!(scaling_depth(500, Some(Circuit::Closed)), 500);
        assert_eq!(scaling_depth(500, Some(Circuit::Open)), 1);
        assert_eq!(scaling_depth(500, Some(Circuit::HalfOpen)), 1);
        assert_eq!(scaling_depth(0, Some(Circuit::Open)), 0);
        for c in [Circuit::Closed, Circuit::Open, Circuit::HalfOpen] {
            assert_eq!(Circuit::parse(c.as_str()), Some(c));
        }
        assert_eq!(Circuit::parse("ajar"), None);
    }

    #[test]
    fn settings_come_from_the_manifest() {
        let d: Delivery = serde_json::from_value(serde_json::json!({
            "rateLimit": {"perSecond": 20},
            "circuitBreaker": {"coolOff": "10s"}
        }))
        .unwrap();
        let g = Gate::of(&d);
        assert_eq!(
            g.rate,
            Some(RateLimit {
                per_second: 20,
                burst: 20
            })
        );
        assert_eq!(
            g.breaker,
            Some(BreakerConfig {
                failures: 5,
                cool_off_ms: 10_000
            })
        );
        assert!(Gate::of(&Delivery::default()).is_unset());
    }
}
