//! The names Sluice gives its JetStream objects. The runtime (router, workers, ingress) creates
//! them and the operator reads their depth, so both take the names from here and nothing else.
//! Bus, namespace and object names are DNS labels (validated), so `_` and `.` never occur in
//! them and every name below is unambiguous.

/// Stream holding the events of bus `bus` (EventBridge's event bus).
pub fn bus_stream(bus: &str) -> String {
    format!("sluice_bus_{bus}")
}

/// Subject events of bus `bus` are published on.
pub fn bus_subject(bus: &str) -> String {
    format!("sluice.bus.{bus}")
}

/// Durable consumer the routers of a bus share: every event is routed once by one of them.
pub const ROUTER_CONSUMER: &str = "router";

/// Work-queue stream holding the delivery queue of Trigger `namespace/name`. Queued and
/// in-flight events (including scheduled retries) stay in it until acked.
pub fn queue_stream(namespace: &str, trigger: &str) -> String {
    format!("sluice_q_{namespace}_{trigger}")
}

/// Subject prefix of a trigger's queue; the last token is the ordering partition (`0` when
/// the trigger has no `ordering.key`).
pub fn queue_subject(namespace: &str, trigger: &str, partition: u32) -> String {
    format!("sluice.q.{namespace}.{trigger}.{partition}")
}

/// Durable pull consumer(s) of a trigger's queue. Without ordering one consumer named
/// `worker` is shared by every worker replica; with ordering each partition has its own
/// consumer `p<partition>` with one event in flight. The queue's pending count is the sum
/// of `num_pending + num_ack_pending` over all consumers of [`queue_stream`].
pub fn queue_consumer(partition: Option<u32>) -> String {
    match partition {
        None => "worker".into(),
        Some(p) => format!("p{p}"),
    }
}

/// Stream keeping dead letters of every trigger for `sluice dlq list|redrive|purge`.
pub const DEAD_LETTER_STREAM: &str = "sluice_dead_letters";

/// Subject of Trigger `namespace/name`'s dead letters in [`DEAD_LETTER_STREAM`].
pub fn dead_letter_subject(namespace: &str, trigger: &str) -> String {
    format!("sluice.dlq.{namespace}.{trigger}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_do_not_collide_across_namespace_and_name_boundaries() {
        // `a-b`/`c` and `a`/`b-c` must not share a queue.
        assert_ne!(queue_stream("a-b", "c"), queue_stream("a", "b-c"));
        assert_eq!(queue_stream("shop", "paid"), "sluice_q_shop_paid");
        assert_eq!(queue_subject("shop", "paid", 3), "sluice.q.shop.paid.3");
        assert_eq!(bus_subject("default"), "sluice.bus.default");
        assert_eq!(queue_consumer(Some(2)), "p2");
    }
}
