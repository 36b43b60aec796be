//! Reading a bus as its archive by time: where the events accepted from a given moment start,
//! and what the oldest retained event is. Written once over [`Bus::read`], so both backends
//! answer alike (`sluice tail --since`, `sluice replay`).

use crate::{Bus, BusError};

/// A retained event's place: its position and when it was accepted (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub position: u64,
    pub accepted_ms: u64,
}

/// The oldest event `bus` still retains, if any.
pub async fn oldest(bus: &dyn Bus, name: &str) -> Result<Option<Mark>, BusError> {
    Ok(bus.read(name, 0, 1).await?.first().map(|(p, a, _)| Mark {
        position: *p,
        accepted_ms: *a,
    }))
}

/// The position to read `bus` after so that the first event returned is the first one
/// accepted at or after `at_ms` (or nothing, when none is). A binary search over positions:
/// acceptance times grow with position (on NATS several ingress replicas' clocks may
/// disagree by their skew, which moves the boundary by at most that).
pub async fn seek(bus: &dyn Bus, name: &str, at_ms: u64) -> Result<u64, BusError> {
    let (mut lo, mut hi) = (0u64, bus.head(name).await?);
    // Invariant: reading after `hi` yields nothing earlier than `at_ms`; after `lo` it may.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match bus.read(name, mid, 1).await?.first() {
            Some((_, accepted, _)) if *accepted < at_ms => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        Publish,
        embedded::{EmbeddedBus, EmbeddedConfig},
    };
    use sluice_event::CloudEvent;

    #[tokio::test]
    async fn seek_finds_the_first_event_at_or_after_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedBus::open(EmbeddedConfig::new(dir.path())).unwrap();
        let bus: &dyn Bus = &embedded;
        assert_eq!(oldest(bus, "b").await.unwrap(), None);
        assert_eq!(seek(bus, "b", 0).await.unwrap(), 0);
        let mut times = Vec::new();
        for i in 0..9 {
            let e = CloudEvent::new(format!("e{i}"), "test", "t");
            bus.publish(vec![Publish {
                bus: "b".into(),
                event: e,
                dedupe: false,
            }])
            .await
            .unwrap();
            let read = bus.read("b", i, 1).await.unwrap();
            times.push(read[0].1);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        assert_eq!(
            oldest(bus, "b").await.unwrap(),
            Some(Mark {
                position: 1,
                accepted_ms: times[0]
            })
        );
        for (i, t) in times.iter().enumerate() {
            let after = seek(bus, "b", *t).await.unwrap();
            let first = &bus.read("b", after, 1).await.unwrap()[0];
            assert_eq!(first.2.id, format!("e{i}"), "seek to event {i}'s time");
        }
        assert_eq!(seek(bus, "b", 0).await.unwrap(), 0);
        let past_end = seek(bus, "b", times[8] + 1).await.unwrap();
        assert!(bus.read("b", past_end, 1).await.unwrap().is_empty());
    }
}
