//! When a forming batch (a Trigger's `delivery.batch`) is handed to its handler, as a pure
//! function of what it holds, how long it has waited and whether the queue had more.

use std::time::Duration;

use sluice_event::CloudEvent;

use crate::{BatchResult, InvokeError};

/// A Trigger's batch limits, resolved from its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_events: usize,
    pub max_wait: Duration,
    /// Bytes of the batch's JSON array.
    pub max_bytes: usize,
    /// The Trigger has an ordering key: the next event of a key in the batch is not handed
    /// out until the batch is done, so waiting for more could only delay that key.
    pub ordered: bool,
}

impl Limits {
    pub fn of(spec: &sluice_api::trigger::Delivery) -> Option<Self> {
        let b = spec.batch.as_ref()?;
        Some(Self {
            max_events: (b.max_events as usize).max(1),
            max_wait: b.max_wait.as_std(),
            max_bytes: usize::try_from(b.max_bytes.bytes()).unwrap_or(usize::MAX),
            ordered: spec.ordering.is_some(),
        })
    }
}

/// How many of a forming batch's first events go to the handler now; 0: wait for more.
///
/// `sizes` are the events' JSON sizes in arrival order, `waited` the time since the first
/// arrived, `drained` whether the last lease found the queue with nothing more to hand out.
/// A batch goes when the next event would take its array past `max_bytes` (a first event
/// larger than that goes alone), when it holds `max_events` or no more bytes fit, when
/// `max_wait` has passed, or, for an ordered Trigger, as soon as the queue is drained.
pub fn ready(limits: &Limits, sizes: &[usize], waited: Duration, drained: bool) -> usize {
    if sizes.is_empty() {
        return 0;
    }
    // `[` + items joined by `,` + `]`.
    let mut bytes = 1;
    let mut fit = 0;
    for &s in sizes.iter().take(limits.max_events) {
        bytes += s + 1;
        if fit > 0 && bytes > limits.max_bytes {
            return fit;
        }
        fit += 1;
    }
    let full = fit == limits.max_events || bytes >= limits.max_bytes;
    if full || waited >= limits.max_wait || (limits.ordered && drained) {
        fit
    } else {
        0
    }
}

/// What a batch invocation of `n` events means for each event: the whole batch failed, or
/// the events it named failed and the rest succeeded, the first of them carrying the replies.
/// Also how many replies were dropped because no event succeeded to carry them.
pub fn per_event(
    n: usize,
    result: Result<BatchResult, InvokeError>,
) -> (Vec<Result<Vec<CloudEvent>, InvokeError>>, usize) {
    let BatchResult { replies, failed } = match result {
        Err(e) => return ((0..n).map(|_| Err(e.clone())).collect(), 0),
        Ok(r) => r,
    };
    let mut out: Vec<Result<Vec<CloudEvent>, InvokeError>> =
        (0..n).map(|_| Ok(Vec::new())).collect();
    for (i, e) in failed {
        if let Some(slot) = out.get_mut(i) {
            *slot = Err(e);
        }
    }
    match out.iter_mut().find(|o| o.is_ok()) {
        Some(first) => {
            *first = Ok(replies);
            (out, 0)
        }
        None => (out, replies.len()),
    }
}

/// How many more events to lease into a forming batch of `held` events.
pub fn room(limits: &Limits, held: usize) -> usize {
    limits.max_events.saturating_sub(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(max_events: usize, max_bytes: usize, ordered: bool) -> Limits {
        Limits {
            max_events,
            max_wait: Duration::from_secs(1),
            max_bytes,
            ordered,
        }
    }

    const SOON: Duration = Duration::from_millis(10);
    const LATE: Duration = Duration::from_secs(1);

    #[test]
    fn a_batch_goes_when_full_late_or_drained_if_ordered() {
        let l = limits(3, 1 << 20, false);
        assert_eq!(ready(&l, &[], LATE, true), 0, "nothing to hand over");
        assert_eq!(ready(&l, &[10, 10], SOON, true), 0, "waits for more");
        assert_eq!(ready(&l, &[10, 10, 10], SOON, false), 3, "full");
        assert_eq!(
            ready(&l, &[10, 10, 10, 10], SOON, false),
            3,
            "never more than maxEvents"
        );
        assert_eq!(ready(&l, &[10, 10], LATE, false), 2, "maxWait passed");
        let o = limits(3, 1 << 20, true);
        assert_eq!(ready(&o, &[10], SOON, true), 1, "ordered: drained queue");
        assert_eq!(ready(&o, &[10], SOON, false), 0, "ordered: more may come");
        assert_eq!(room(&l, 1), 2);
        assert_eq!(room(&l, 5), 0);
    }

    #[test]
    fn bytes_cut_the_batch_before_the_event_that_would_not_fit() {
        // [a,b] = 1 + 40 + 1 + 40 + 1 = 83 bytes.
        let l = limits(10, 90, false);
        assert_eq!(ready(&l, &[40, 40, 40], SOON, false), 2);
        assert_eq!(ready(&l, &[40, 40], SOON, false), 0, "fits; waits for more");
        let exact = limits(10, 83, false);
        assert_eq!(ready(&exact, &[40, 40], SOON, false), 2, "no more can fit");
        assert_eq!(
            ready(&l, &[500, 1], SOON, false),
            1,
            "too large alone: goes alone"
        );
        assert_eq!(ready(&l, &[1, 500], SOON, false), 1);
        assert_eq!(ready(&l, &[500], SOON, false), 1, "nothing more can fit");
    }

    #[test]
    fn each_event_gets_its_own_outcome_and_one_carries_the_replies() {
        let err = |m: &str| InvokeError {
            retryable: true,
            reason: "retryable".into(),
            message: m.into(),
        };
        let result = |replies, failed| BatchResult { replies, failed };
        let reply = CloudEvent::new("r", "/f", "done");
        let (out, dropped) = per_event(3, Ok(result(vec![reply.clone()], vec![(0, err("a"))])));
        assert_eq!(dropped, 0);
        assert_eq!(out[0], Err(err("a")));
        assert_eq!(
            out[1],
            Ok(vec![reply.clone()]),
            "the first success carries the replies"
        );
        assert_eq!(out[2], Ok(vec![]));
        let (out, dropped) = per_event(
            2,
            Ok(result(
                vec![reply.clone()],
                vec![(0, err("a")), (1, err("b")), (7, err("x"))],
            )),
        );
        assert_eq!((out, dropped), (vec![Err(err("a")), Err(err("b"))], 1));
        let (out, dropped) = per_event(2, Err(err("all")));
        assert_eq!((out, dropped), (vec![Err(err("all")), Err(err("all"))], 0));
    }

    proptest! {
        #[test]
        fn what_goes_is_within_the_limits(
            sizes in proptest::collection::vec(1usize..2000, 0..40),
            max_events in 1usize..20,
            max_bytes in 1usize..10_000,
            late in any::<bool>(),
            drained in any::<bool>(),
            ordered in any::<bool>(),
        ) {
            let l = limits(max_events, max_bytes, ordered);
            let n = ready(&l, &sizes, if late { LATE } else { SOON }, drained);
            prop_assert!(n <= sizes.len() && n <= max_events);
            if n > 1 {
                let bytes = 1 + sizes[..n].iter().map(|s| s + 1).sum::<usize>();
                prop_assert!(bytes <= max_bytes, "{n} events, {bytes} bytes");
            }
            if late && !sizes.is_empty() {
                prop_assert!(n >= 1, "a late batch always goes");
            }
        }
    }
}
