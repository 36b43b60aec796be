//! Component rung: the NATS bus's Trigger queues against a private nats-server (2.15.1, or
//! `SLUICE_NATS_SERVER`): what a worker process's feed holds ahead of its leases.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_bus::{
    Bus, Publish, QueueConfig, Route, Routes, TriggerId,
    nats::{NatsBus, NatsConfig},
};
use sluice_event::CloudEvent;
use sluice_tests::nats::NatsServer;

const TRIGGER: &str = "t/feed";

/// Routes every event of bus `b` to [`TRIGGER`].
struct ToTrigger;

impl Routes for ToTrigger {
    fn route(&self, bus: &str, _json: &[u8]) -> Result<Vec<Route>, String> {
        Ok(match bus {
            "b" => vec![Route {
                trigger: TRIGGER.into(),
                key: None,
            }],
            _ => Vec::new(),
        })
    }
    fn home(&self, trigger: &str) -> Option<String> {
        (trigger == TRIGGER).then(|| "b".into())
    }
    fn triggers_of(&self, bus: &str) -> Vec<TriggerId> {
        match bus {
            "b" => vec![TRIGGER.into()],
            _ => Vec::new(),
        }
    }
}

/// A minute's lease: anything handed over sooner was handed back, not expired.
fn queue() -> QueueConfig {
    QueueConfig {
        bus: "b".into(),
        max_inflight: 100,
        ordered: false,
        lease: Duration::from_secs(60),
        prefetch: 10,
        gate: Default::default(),
    }
}

async fn process(url: &str) -> NatsBus {
    let bus = NatsBus::connect(NatsConfig::new(url)).await.unwrap();
    bus.set_routes(Arc::new(ToTrigger));
    bus.configure_queue(TRIGGER, &queue()).await.unwrap();
    bus
}

async fn lease_ids(bus: &NatsBus, want: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut ids = Vec::new();
    while ids.len() < want && Instant::now() < deadline {
        for d in bus.lease(TRIGGER, want - ids.len()).await.unwrap() {
            ids.push(d.event.id.clone());
            bus.ack(&d, Vec::new()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_dropping_a_queue_hands_back_what_its_feed_held_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&dir.path().join("nats"));
    let a = process(&server.url()).await;
    let events: Vec<Publish> = (0..5)
        .map(|i| Publish {
            bus: "b".into(),
            event: CloudEvent::new(format!("e{i}"), "/test", "com.example.t"),
            dedupe: true,
        })
        .collect();
    a.publish(events).await.unwrap();
    // A's feed takes all five off the consumer (JetStream counts them in flight) though no
    // worker of A leased one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.depth(TRIGGER).await.unwrap().inflight < 5 {
        assert!(Instant::now() < deadline, "A's feed never took the events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = process(&server.url()).await;
    assert!(
        lease_ids(&b, 5, Duration::from_millis(500))
            .await
            .is_empty(),
        "B leased events A's feed holds"
    );
    a.unconfigure_queue(TRIGGER).await;
    // Handed back, B gets them within seconds, not after the minute's lease.
    let got = lease_ids(&b, 5, Duration::from_secs(10)).await;
    assert_eq!(got, ["e0", "e1", "e2", "e3", "e4"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = b.depth(TRIGGER).await.unwrap();
        if d.pending() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "acks never counted: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// JetStream itself takes the ack of a delivery whose AckWait passed after it sent the message
/// again: the reason Sluice fences leases on its side (the next test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_takes_a_stale_ack() {
    use async_nats::jetstream::{self, consumer::pull};
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&dir.path().join("nats"));
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let s = js
        .create_stream(jetstream::stream::Config {
            name: "p".into(),
            subjects: vec!["p".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    js.publish("p", "x".into()).await.unwrap().await.unwrap();
    let mut c = s
        .create_consumer(pull::Config {
            durable_name: Some("c".into()),
            ack_wait: Duration::from_millis(500),
            ..Default::default()
        })
        .await
        .unwrap();
    let next = async || {
        let mut batch = c.fetch().max_messages(1).messages().await.unwrap();
        batch.next().await.unwrap().unwrap()
    };
    let first = next().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = next().await;
    assert_eq!(second.info().unwrap().delivered, 2);
    first.double_ack().await.unwrap();
    let info = c.info().await.unwrap();
    assert_eq!(
        (info.num_ack_pending, info.ack_floor.stream_sequence),
        (0, 1),
        "the first delivery's ack settled the message the second one holds"
    );
}

/// A worker whose lease ran out can neither ack nor retry: the event comes again and the
/// delivery that has it decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_after_the_lease_ran_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(&dir.path().join("nats"));
    let bus = NatsBus::connect(NatsConfig::new(server.url()))
        .await
        .unwrap();
    bus.set_routes(Arc::new(ToTrigger));
    let short = QueueConfig {
        lease: Duration::from_millis(3000),
        ..queue()
    };
    bus.configure_queue(TRIGGER, &short).await.unwrap();
    let event = CloudEvent::new("late", "/test", "com.example.t");
    bus.publish(vec![Publish {
        bus: "b".into(),
        event,
        dedupe: true,
    }])
    .await
    .unwrap();
    let lease = async || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(d) = bus.lease(TRIGGER, 1).await.unwrap().pop() {
                return d;
            }
            assert!(Instant::now() < deadline, "nothing to lease");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let first = lease().await;
    assert_eq!(first.attempt, 1);
    // Held for the AckWait less a second: 2 s here.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for outcome in [
        bus.ack(&first, Vec::new()).await,
        bus.retry(&first, Duration::ZERO, "late").await,
    ] {
        assert!(
            matches!(
                outcome,
                Err(sluice_bus::BusError::LeaseLost { attempt: 1, .. })
            ),
            "{outcome:?}"
        );
    }
    let second = lease().await;
    assert_eq!(second.attempt, 2, "delivered again after its AckWait");
    bus.ack(&second, Vec::new()).await.unwrap();
}
