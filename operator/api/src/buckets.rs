//! The route table's two key-value buckets ([`crate::jetstream::ROUTES_BUCKET`] and its
//! acknowledgement bucket), created the same way by whichever process comes first: the
//! operator or any router.
//!
//! The streams are created directly rather than with `create_key_value`: async-nats 0.51 reads
//! the account's API level first, which NATS servers before 2.11 do not send, so it fails there
//! (Debian ships 2.9). The stream settings are the ones a key-value bucket has.

use async_nats::jetstream::{self, kv, stream};

use crate::jetstream::{ROUTER_ACK_TTL, routers_bucket};

/// Opening or creating a bucket failed; names the bucket and what NATS said.
#[derive(Debug, thiserror::Error)]
#[error("key-value bucket {bucket}: {reason}")]
pub struct BucketError {
    pub bucket: String,
    pub reason: String,
}

/// The route-table bucket: one key, only the latest table kept, on disk.
pub fn routes_stream(bucket: &str) -> stream::Config {
    kv_stream(
        bucket,
        "Sluice: the routers' table, written by the operator",
        stream::StorageType::File,
        std::time::Duration::ZERO,
    )
}

/// The acknowledgement bucket: in memory, entries expire, so a router that died stops counting.
pub fn routers_stream(routes_bucket: &str) -> stream::Config {
    kv_stream(
        &routers_bucket(routes_bucket),
        "Sluice: the route-table revision each router routes with",
        stream::StorageType::Memory,
        ROUTER_ACK_TTL,
    )
}

/// The gates bucket ([`crate::jetstream::GATES_BUCKET`]): rate-limit buckets and circuit
/// breakers, on disk so a breaker stays open across a server restart.
pub fn gates_stream() -> stream::Config {
    kv_stream(
        crate::jetstream::GATES_BUCKET,
        "Sluice: each Trigger's rate-limit tokens and circuit breaker, shared by its workers",
        stream::StorageType::File,
        std::time::Duration::ZERO,
    )
}

fn kv_stream(
    bucket: &str,
    description: &str,
    storage: stream::StorageType,
    max_age: std::time::Duration,
) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Opens the bucket of `config` (from [`routes_stream`], [`routers_stream`] or
/// [`gates_stream`]), creating it if it does not exist yet.
pub async fn open(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<kv::Store, BucketError> {
    let bucket = config.name.trim_start_matches("KV_").to_owned();
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    // Another process may create it in between: then the create fails and the get succeeds.
    let created = js.create_stream(config).await.err();
    js.get_key_value(&bucket).await.map_err(|e| BucketError {
        reason: match created {
            Some(c) => format!("creating it: {c}; then opening it: {e}"),
            None => format!("opening it after creating it: {e}"),
        },
        bucket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_key_value_streams() {
        let routes = routes_stream("sluice_routes");
        assert_eq!(routes.name, "KV_sluice_routes");
        assert_eq!(routes.subjects, ["$KV.sluice_routes.>"]);
        assert_eq!(routes.max_messages_per_subject, 1);
        assert!(routes.allow_rollup && routes.deny_delete && routes.allow_direct);
        assert_eq!(routes.max_age, std::time::Duration::ZERO);
        let acks = routers_stream("sluice_routes");
        assert_eq!(acks.name, "KV_sluice_routes_routers");
        assert_eq!(acks.storage, stream::StorageType::Memory);
        assert_eq!(acks.max_age, ROUTER_ACK_TTL);
    }
}
