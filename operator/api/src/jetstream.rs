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

/// Key-value bucket the operator writes the routers' table to (key [`ROUTES_KEY`]): routers
/// watch it, so a Trigger reaches every router within a round trip of the operator's write,
/// not after a kubelet's ConfigMap volume refresh (20–85 s), and routers need no API token.
pub const ROUTES_BUCKET: &str = "sluice_routes";

/// Key of the route table (multi-document YAML of Triggers) in [`ROUTES_BUCKET`]; the key's
/// revision is the table's generation.
pub const ROUTES_KEY: &str = "table";

/// Key-value bucket where each router says which route-table revision it routes with. Its
/// entries expire after [`ROUTER_ACK_TTL`]: a router refreshes its own every
/// [`ROUTER_ACK_EVERY`], so a router that died stops counting on its own.
pub fn routers_bucket(routes_bucket: &str) -> String {
    format!("{routes_bucket}_routers")
}

pub const ROUTER_ACK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
pub const ROUTER_ACK_TTL: std::time::Duration = std::time::Duration::from_secs(20);

/// Key of one router's acknowledgement: its identity (a pod name), with anything a KV key
/// may not hold replaced by `_`.
pub fn router_ack_key(identity: &str) -> String {
    let clean: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("router.{clean}")
}

/// What a router writes under [`router_ack_key`]: the route-table revision it has loaded and
/// routes every event it acks from now on with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouterAck {
    pub identity: String,
    pub revision: u64,
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
        assert_eq!(
            router_ack_key("sluice-router-7d9f.x/y"),
            "router.sluice-router-7d9f_x_y"
        );
        assert_eq!(routers_bucket(ROUTES_BUCKET), "sluice_routes_routers");
        assert_eq!(queue_consumer(Some(2)), "p2");
    }
}
