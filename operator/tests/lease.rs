//! Component rung: leader election against a real kube-apiserver v1.20.2 (`make
//! control-plane` builds it). A leader that stops renewing is fenced (its writes refused)
//! before any other replica can take the Lease, and a holder's clock is never trusted: a
//! `renewTime` far in the past does not hand the Lease over while the holder keeps renewing,
//! nor does one far in the future hold it after the holder stopped.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client, Config as KubeConfig,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use sluice_operator::lease::Elector;
use sluice_tests::control_plane::ControlPlane;

const DURATION: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_millis(500);

async fn client(cp: &ControlPlane) -> Client {
    let kc = Kubeconfig::read_from(&cp.kubeconfig).unwrap();
    let config = KubeConfig::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn elector(client: &Client, lease: &str, id: &str) -> Elector {
    Elector::new(client.clone(), "default", lease, id).timed(DURATION, RENEW)
}

/// Writes the Lease as a holder `id` whose clock reads `renewed` would.
async fn write_lease(api: &Api<Lease>, name: &str, id: &str, renewed: Timestamp) {
    let spec = LeaseSpec {
        holder_identity: Some(id.into()),
        lease_duration_seconds: Some(DURATION.as_secs() as i32),
        renew_time: Some(MicroTime(renewed)),
        acquire_time: Some(MicroTime(renewed)),
        ..Default::default()
    };
    match api.get_opt(name).await.unwrap() {
        Some(mut l) => {
            l.spec = Some(spec);
            api.replace(name, &PostParams::default(), &l).await.unwrap();
        }
        None => {
            let l = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &l).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_is_fenced_before_another_takes_over_and_clocks_are_not_trusted() {
    sluice_operator::install_crypto_provider();
    let cp = ControlPlane::start();
    let client = client(&cp).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");

    // A leads, then stalls: no more renewals. B tries all along.
    let (a, b) = (
        elector(&client, "fence", "a"),
        elector(&client, "fence", "b"),
    );
    assert!(a.try_acquire().await.unwrap());
    let fence = a.fence();
    assert!(fence.check().is_ok(), "a fresh leader may write");
    let stalled = Instant::now();
    let took = loop {
        // Read before B's attempt: when B wins, A was fenced already.
        let fenced = fence.check().is_err();
        if b.try_acquire().await.unwrap() {
            assert!(fenced, "B took the Lease while A could still write");
            break stalled.elapsed();
        }
        assert!(stalled.elapsed() < Duration::from_secs(20), "B never led");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(took >= DURATION, "B led {took:?} after A's last renewal");
    assert!(!a.try_acquire().await.unwrap(), "A cannot take it back");
    assert!(fence.check().is_err());

    // A holder whose clock is an hour behind keeps renewing: its renewTime always looks an
    // hour old, yet C never takes the Lease while the record keeps changing.
    let c = elector(&client, "skew", "c");
    let started = Instant::now();
    while started.elapsed() < DURATION * 2 {
        write_lease(
            &leases,
            "skew",
            "z",
            Timestamp::now() - SignedDuration::from_hours(1),
        )
        .await;
        assert!(
            !c.try_acquire().await.unwrap(),
            "C took a Lease its holder still renews"
        );
        tokio::time::sleep(RENEW).await;
    }
    // It stops; its last renewTime reads an hour ahead (a clock ahead, say): C still takes over
    // one duration after it last saw the record change, not an hour later.
    write_lease(
        &leases,
        "skew",
        "z",
        Timestamp::now() + SignedDuration::from_hours(1),
    )
    .await;
    let stopped = Instant::now();
    while !c.try_acquire().await.unwrap() {
        assert!(
            stopped.elapsed() < DURATION * 3,
            "C waited for the holder's clock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped.elapsed() >= DURATION);
    let held = leases.get("skew").await.unwrap();
    assert_eq!(
        held.spec.unwrap().holder_identity.as_deref(),
        Some("c"),
        "the Lease names its new holder"
    );
}
