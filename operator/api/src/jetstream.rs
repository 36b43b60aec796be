//! The names Sluice gives its JetStream objects. The runtime (router, workers, ingress) creates
//! them and the operator reads their depth, so both take the names from here and nothing else.
//! Bus, namespace and object names are DNS labels (validated), so `_` and `.` never occur in
//! them and every name below is unambiguous.

/// Stream holding the events of bus `bus` (EventBridge's event bus). A limits stream (age and
/// size): it is both every Trigger's delivery queue and the bus's archive for `sluice tail` and
/// `sluice replay`.
pub fn bus_stream(bus: &str) -> String {
    format!("sluice_bus_{bus}")
}

/// Every subject of bus `bus`'s stream.
pub fn bus_subjects(bus: &str) -> String {
    format!("sluice.bus.{bus}.>")
}

/// Subject of an event of bus `bus` that matched no Trigger when it was published: kept for
/// the archive, delivered to nobody.
pub fn unrouted_subject(bus: &str) -> String {
    format!("sluice.bus.{bus}.none")
}

/// Subject of an event of bus `bus` routed to Trigger `namespace/trigger`. Publishers match
/// each event against the bus's Triggers and store one copy per match under this subject;
/// the last token is the ordering partition (`0` when the Trigger has no `ordering.key`).
pub fn trigger_subject(bus: &str, namespace: &str, trigger: &str, partition: u32) -> String {
    format!("sluice.bus.{bus}.t.{namespace}.{trigger}.{partition}")
}

/// Every partition of Trigger `namespace/trigger` on bus `bus`.
pub fn trigger_subjects(bus: &str, namespace: &str, trigger: &str) -> String {
    format!("sluice.bus.{bus}.t.{namespace}.{trigger}.*")
}

/// Durable pull consumer(s) of Trigger `namespace/trigger` on its bus's stream, filtered to
/// [`trigger_subjects`]. Without ordering one consumer is shared by every worker replica; with
/// ordering each partition has its own consumer with one event in flight. The Trigger's
/// pending count is the sum of `num_pending + num_ack_pending` over them.
pub fn trigger_consumer(namespace: &str, trigger: &str, partition: Option<u32>) -> String {
    match partition {
        None => format!("t_{namespace}_{trigger}"),
        Some(p) => format!("t_{namespace}_{trigger}_p{p}"),
    }
}

/// Whether consumer `name` of a bus stream belongs to Trigger `namespace/trigger`.
pub fn is_trigger_consumer(name: &str, namespace: &str, trigger: &str) -> bool {
    let base = trigger_consumer(namespace, trigger, None);
    name == base
        || name
            .strip_prefix(&base)
            .and_then(|r| r.strip_prefix("_p"))
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Stream keeping dead letters of every trigger for `sluice dlq list|redrive|purge`.
pub const DEAD_LETTER_STREAM: &str = "sluice_dead_letters";

/// Subject of Trigger `namespace/name`'s dead letters in [`DEAD_LETTER_STREAM`].
pub fn dead_letter_subject(namespace: &str, trigger: &str) -> String {
    format!("sluice.dlq.{namespace}.{trigger}")
}

/// Stream of the steps of events' journeys (`sluice trace`, the console's recent deliveries):
/// a limits stream kept for a day, one subject per event id (`sluice.trace.<hash of the id>`).
pub const TRACE_STREAM: &str = "sluice_trace";

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

/// Key-value bucket holding each Trigger's gate (`delivery.rateLimit`'s token bucket and
/// `delivery.circuitBreaker`'s state), shared by all its workers and updated by
/// compare-and-set; the operator reads the breaker for the Trigger's status.
pub const GATES_BUCKET: &str = "sluice_gates";

/// Key of Trigger `namespace/trigger`'s token bucket in [`GATES_BUCKET`].
pub fn rate_key(namespace: &str, trigger: &str) -> String {
    format!("{namespace}.{trigger}.rate")
}

/// Key of Trigger `namespace/trigger`'s circuit breaker in [`GATES_BUCKET`].
pub fn breaker_key(namespace: &str, trigger: &str) -> String {
    format!("{namespace}.{trigger}.breaker")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_do_not_collide_across_namespace_and_name_boundaries() {
        // `a-b`/`c` and `a`/`b-c` must not share a consumer.
        assert_ne!(
            trigger_consumer("a-b", "c", None),
            trigger_consumer("a", "b-c", None)
        );
        assert_eq!(trigger_consumer("shop", "paid", None), "t_shop_paid");
        assert_eq!(
            trigger_subject("orders", "shop", "paid", 3),
            "sluice.bus.orders.t.shop.paid.3"
        );
        assert_eq!(unrouted_subject("default"), "sluice.bus.default.none");
        assert!(is_trigger_consumer("t_shop_paid_p3", "shop", "paid"));
        assert!(is_trigger_consumer("t_shop_paid", "shop", "paid"));
        assert!(!is_trigger_consumer("t_shop_paid-x", "shop", "paid"));
        assert!(!is_trigger_consumer("t_shop_paid_p", "shop", "paid"));
        assert_eq!(
            router_ack_key("sluice-router-7d9f.x/y"),
            "router.sluice-router-7d9f_x_y"
        );
        assert_eq!(routers_bucket(ROUTES_BUCKET), "sluice_routes_routers");
    }
}
