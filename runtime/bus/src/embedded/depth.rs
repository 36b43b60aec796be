//! Depth comes from the in-memory queues, which hold every entry not yet acked or
//! dead-lettered, so asking for it never touches the store.

use super::EmbeddedBus;
use crate::Depth;

impl EmbeddedBus {
    pub fn depth(&self, trigger: &str) -> Depth {
        let s = self.shared.state();
        s.queues
            .get(trigger)
            .map_or_else(Depth::default, |q| Depth {
                queued: q.queued() as u64,
                inflight: q.inflight() as u64,
            })
    }
}
