//! The fault suite: Sluice under the faults a production system meets, each test asserting
//! that every accepted event is handled at least once, none is dead-lettered wrongly, and
//! duplicates stay within what the fault explains. Each prints (and keeps under
//! `target/faults/`) the counts the README's fault table quotes.
//!
//! Here: a full disk under `sluice dev`, a handler stuck in a loop (both buses), and a worker
//! cut off from NATS by a network partition. Elsewhere, because they share their setup with
//! the tests around them: `sluice dev` or a worker killed with SIGKILL under load
//! (`conformance.rs`, both buses), nats-server killed and restarted under load and a
//! publisher killed between storing and answering (`nats.rs`), a damaged journal
//! (`local.rs`).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sluice_tests::{
    Dev, FaultCounts,
    disk::Tmpfs,
    done_counts, free_port,
    sluice::{Backend, Endpoint, Tester},
    tester_manifests, tester_trigger, wait_for,
};

fn event(ty: &str, id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/faults", "type": ty, "data": data})
}

fn readyz(at: &Endpoint) -> (u16, String) {
    let (status, _, body) = at.request("GET", "/readyz", &[], b"").expect("GET /readyz");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until every id in `accepted` has a `com.example.done` reply; returns the counts.
fn all_handled(at: &Endpoint, accepted: &HashSet<String>, secs: u64) -> HashMap<String, usize> {
    wait_for(secs, || {
        let d = done_counts(&at.events("default"));
        accepted.iter().all(|id| d.contains_key(id)).then_some(d)
    })
    .unwrap_or_else(|| {
        let d = done_counts(&at.events("default"));
        let lost: Vec<_> = accepted.iter().filter(|id| !d.contains_key(*id)).collect();
        panic!(
            "{} accepted events never handled, e.g. {:?}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        )
    })
}

/// `sluice dev` on a disk that fills up: publishing answers 503 naming the full disk and
/// `/readyz` fails, while what was accepted is still handled (deliveries write into the
/// reserve); once space is freed both recover by themselves, without a restart.
#[test]
fn a_full_disk_refuses_publishes_then_recovers_by_itself_losing_nothing() {
    let fs = Tmpfs::mount("48m");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    tester_manifests(&dir, &tester_trigger("work", "com.example.work", &[]));
    let data = fs.path().join("data");
    let dev = Dev::start(&dir, &data, free_port(), &["--disk-reserve", "8Mi"]);
    let filler = fs.fill(20 << 20);

    let pad = "x".repeat(32 * 1024);
    let (mut sent, mut accepted) = (0, HashSet::new());
    let batch_of = |sent: &mut usize| -> Vec<Value> {
        (0..10)
            .map(|_| {
                *sent += 1;
                event(
                    "com.example.work",
                    &format!("w{sent}"),
                    json!({"pad": pad, "n": *sent}),
                )
            })
            .collect()
    };
    let refusal = loop {
        assert!(sent < 2_000, "publishing was never refused");
        let batch = batch_of(&mut sent);
        match dev.post_batch(&batch) {
            (202, _) => accepted.extend(batch.iter().map(|e| e["id"].as_str().unwrap().into())),
            (503, answer) => break answer["error"].as_str().unwrap_or_default().to_owned(),
            (status, answer) => panic!("{status}: {answer}"),
        }
    };
    assert!(refusal.contains("disk full"), "{refusal}");
    assert!(refusal.contains("--disk-reserve"), "{refusal}");
    let (status, why) = readyz(&dev);
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("disk full"), "{why}");
    // Deliveries go on into the reserve: everything accepted so far is handled.
    all_handled(&dev, &accepted, 60);
    assert_eq!(dev.post_batch(&batch_of(&mut sent)).0, 503);

    std::fs::remove_file(&filler).unwrap();
    let ready = wait_for(5, || (readyz(&dev).0 == 200).then_some(()));
    assert!(
        ready.is_some(),
        "/readyz did not recover:\n{}",
        dev.log_text()
    );
    for _ in 0..10 {
        let batch = batch_of(&mut sent);
        let (status, answer) = dev.post_batch(&batch);
        assert_eq!(status, 202, "{answer}");
        accepted.extend(batch.iter().map(|e| e["id"].as_str().unwrap().into()));
    }
    let handled = all_handled(&dev, &accepted, 60);
    let counts = FaultCounts::of(sent, &accepted, &handled);
    counts.report("disk_full");
    assert_eq!(counts.lost, 0);
    assert_eq!(counts.duplicated, 0, "nothing crashed: no event runs twice");
    assert!(
        dev.log_text().contains("publishing resumes"),
        "{}",
        dev.log_text()
    );
}

/// Handlers that compute forever are stopped at the Function's timeout (5 s), retried, then
/// dead-lettered as exhausted, while the rest of the traffic on the same worker flows.
fn a_stuck_handler_is_timed_out_retried_and_dead_lettered_while_others_flow(backend: Backend) {
    let triggers = [
        tester_trigger("work", "com.example.work", &[]),
        tester_trigger(
            "stuck",
            "com.example.stuck",
            &[
                "retry: { maxAttempts: 2, initialDelay: 10ms, maxDelay: 10ms }",
                "deadLetter: { bus: dead }",
            ],
        ),
    ]
    .join("---\n");
    let Tester { sys, .. } = &Tester::start(backend, &triggers);
    let stuck: Vec<Value> = (0..3)
        .map(|i| event("com.example.stuck", &format!("s{i}"), json!({"spin": true})))
        .collect();
    assert_eq!(sys.post_batch(&stuck).0, 202);
    let started = std::time::Instant::now();
    let mut accepted = HashSet::new();
    for b in 0..3 {
        let batch: Vec<Value> = (0..100)
            .map(|i| event("com.example.work", &format!("w{b}-{i}"), json!({"n": i})))
            .collect();
        let (status, answer) = sys.post_batch(&batch);
        assert_eq!(status, 202, "{answer}");
        accepted.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    let handled = all_handled(sys, &accepted, 60);
    let dead = wait_for(60, || {
        let d = sys.events("dead");
        (d.len() >= 3).then_some(d)
    })
    .unwrap_or_else(|| panic!("the stuck events were not dead-lettered\n{}", sys.logs()));
    // Two attempts of at least the 5 s timeout each.
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(10),
        "dead-lettered after {:?}, sooner than two timeouts",
        started.elapsed()
    );
    assert_eq!(dead.len(), 3, "{dead:?}");
    for e in &dead {
        assert_eq!(e["sluicetrigger"], "e2e/stuck", "{e}");
        assert_eq!(e["sluicereason"], "exhausted", "{e}");
        assert_eq!(e["sluiceattempts"], 2, "{e}");
        assert!(
            e["sluicelasterror"].as_str().unwrap().contains("timeout"),
            "{e}"
        );
    }
    let counts = FaultCounts::of(accepted.len(), &accepted, &handled);
    counts.report(&format!(
        "stuck_handler_{}",
        format!("{backend:?}").to_lowercase()
    ));
    assert_eq!(counts.lost, 0);
    assert_eq!(counts.duplicated, 0, "{handled:?}");
}

mod a_stuck_handler {
    use sluice_tests::sluice::Backend;

    #[test]
    fn embedded() {
        super::a_stuck_handler_is_timed_out_retried_and_dead_lettered_while_others_flow(
            Backend::Embedded,
        )
    }

    #[test]
    fn nats() {
        super::a_stuck_handler_is_timed_out_retried_and_dead_lettered_while_others_flow(
            Backend::Nats,
        )
    }
}

/// A network namespace joined to this machine by a veth link: 10.250.K.1 on this side,
/// 10.250.K.2 inside. Deleted (with its link) when dropped.
struct Netns {
    name: String,
    link: String,
    host: String,
    inside: String,
}

fn run(cmd: &[&str]) {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        sluice_tests::output_text(&out)
    );
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id();
        let k = id % 250 + 1;
        let ns = Netns {
            name: format!("sluice-part-{id}"),
            link: format!("slp{}", id % 100_000),
            host: format!("10.250.{k}.1"),
            inside: format!("10.250.{k}.2"),
        };
        let (outer, inner) = (format!("{}h", ns.link), format!("{}n", ns.link));
        run(&["ip", "netns", "add", &ns.name]);
        run(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        run(&["ip", "link", "set", &inner, "netns", &ns.name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.host),
            "dev",
            &outer,
        ]);
        run(&["ip", "link", "set", &outer, "up"]);
        let cidr = format!("{}/30", ns.inside);
        ns.exec(&["ip", "addr", "add", &cidr, "dev", &inner]);
        ns.exec(&["ip", "link", "set", &inner, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, cmd: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend(cmd);
        run(&full);
    }

    /// Drops every packet crossing the link, both ways, without a word to either end (a black
    /// hole, as when a switch or a node's network dies): connections stay open and stall.
    fn cut(&self) {
        let inner = format!("{}n", self.link);
        self.exec(&["iptables", "-I", "INPUT", "-i", &inner, "-j", "DROP"]);
        self.exec(&["iptables", "-I", "OUTPUT", "-o", &inner, "-j", "DROP"]);
    }

    fn heal(&self) {
        let inner = format!("{}n", self.link);
        self.exec(&["iptables", "-D", "INPUT", "-i", &inner, "-j", "DROP"]);
        self.exec(&["iptables", "-D", "OUTPUT", "-o", &inner, "-j", "DROP"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Two workers share a Function's Trigger; one runs in a network namespace whose link to
/// NATS is then cut for 20 s, twice its lease. What it held is handed to the other worker
/// when its leases run out, traffic keeps flowing through the other one meanwhile, and once
/// the link heals the cut-off worker serves again. Duplicates are bounded by what the
/// cut-off worker held (its acks that never arrived).
#[test]
fn a_worker_cut_off_from_nats_loses_nothing_and_the_others_keep_serving() {
    let net = Netns::create();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    tester_manifests(&dir, &tester_trigger("work", "com.example.work", &[]));
    let nats = sluice_tests::nats::NatsServer::start_at(&data.join("nats"), &net.host);
    let sys = sluice_tests::sluice::System::start_on_nats(nats, &dir, &data, "e2e/tester");
    let wrapper = ["ip", "netns", "exec", net.name.as_str()];
    let listen = format!("{}:0", net.inside);
    let (cut_off, _) = sys.add_worker(&wrapper, &dir, &data, "e2e/tester", &listen, "worker-b");

    let (mut sent, mut accepted) = (0, HashSet::new());
    let publish = |n: usize, sent: &mut usize, accepted: &mut HashSet<String>| {
        for _ in 0..n / 100 {
            let batch: Vec<Value> = (0..100)
                .map(|_| {
                    *sent += 1;
                    event("com.example.work", &format!("w{sent}"), json!({"n": *sent}))
                })
                .collect();
            let (status, answer) = sys.post_batch(&batch);
            assert_eq!(status, 202, "{answer}\n{}", sys.logs());
            accepted.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        }
    };
    publish(1_000, &mut sent, &mut accepted);
    all_handled(&sys, &accepted, 60);
    assert!(
        cut_off.log_text().contains(" ok in "),
        "the second worker took part before the cut:\n{}",
        cut_off.log_text()
    );

    net.cut();
    let cut_at = std::time::Instant::now();
    let handled_by_cut_off = || cut_off.log_text().matches(" ok in ").count();
    let before = handled_by_cut_off();
    publish(1_000, &mut sent, &mut accepted);
    // Everything accepted so far is handled while the link is still down: the other worker
    // takes the new events, and the cut-off one's after its leases (10 s) run out.
    let during = wait_for(18, || {
        let d = done_counts(&sys.events("default"));
        accepted.iter().all(|id| d.contains_key(id)).then_some(())
    });
    assert!(
        during.is_some(),
        "not everything was handled while the link was down\n{}",
        sys.logs()
    );
    std::thread::sleep(std::time::Duration::from_secs(20).saturating_sub(cut_at.elapsed()));
    // A real cut: nothing reached the cut-off worker (it may finish what it had begun).
    assert!(
        handled_by_cut_off() <= before + 32,
        "the cut-off worker kept handling events\n{}",
        cut_off.log_text()
    );
    net.heal();

    publish(1_000, &mut sent, &mut accepted);
    let handled = all_handled(&sys, &accepted, 120);
    let counts = FaultCounts::of(sent, &accepted, &handled);
    counts.report("network_partition");
    assert_eq!(counts.lost, 0);
    // Only what the cut-off worker held can run twice: its handlers' 32 slots, its feed's 32
    // and one pull request's 32.
    assert!(
        counts.duplicated <= 96,
        "{} duplicates: more than the cut-off worker can have held\n{}",
        counts.duplicated,
        sys.logs()
    );
    assert!(sys.events("dead").is_empty(), "nothing dead-lettered");
}

/// libfaketime, which `scripts/setup.sh` installs: it shifts the wall clock of the process it
/// is preloaded into by the offset in a file, read again at every call.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The wall clock of `sluice dev` steps back an hour while a retry waits: retries and leases
/// are timed on the monotonic clock, so the retry still comes after its 2 s delay, not an hour
/// later, and the event is dead-lettered after its attempts as usual.
#[test]
fn a_wall_clock_step_back_does_not_hold_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let triggers = [
        tester_trigger("work", "com.example.work", &[]),
        tester_trigger(
            "flaky",
            "com.example.flaky",
            &[
                "retry: { maxAttempts: 3, initialDelay: 2s, maxDelay: 2s }",
                "deadLetter: { bus: dead }",
            ],
        ),
    ]
    .join("---\n");
    tester_manifests(&dir, &triggers);
    let offset = tmp.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let env = [
        ("LD_PRELOAD", std::ffi::OsStr::new(LIBFAKETIME)),
        ("FAKETIME_TIMESTAMP_FILE", offset.as_os_str()),
        ("FAKETIME_NO_CACHE", std::ffi::OsStr::new("1")),
        // Only the wall clock steps, as NTP or a resumed VM steps it.
        ("DONT_FAKE_MONOTONIC", std::ffi::OsStr::new("1")),
    ];
    let dev = Dev::start_with_env(&dir, &tmp.path().join("data"), free_port(), &[], &env);
    let flaky = event("com.example.flaky", "f1", json!({"fail": true}));
    assert_eq!(dev.post_batch(&[flaky]).0, 202);
    // The first attempt fails at once; its retry is due in 2 s. Step back an hour.
    let first = wait_for(10, || dev.log_text().contains("attempt 1").then_some(()));
    assert!(first.is_some(), "no first attempt:\n{}", dev.log_text());
    std::fs::write(&offset, "-1h\n").unwrap();
    let stepped = std::time::Instant::now();
    let dead = wait_for(20, || {
        let d = dev.events("dead");
        (!d.is_empty()).then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "the retries waited for the wall clock to come back:\n{}",
            dev.log_text()
        )
    });
    assert_eq!(dead[0]["sluiceattempts"], 3, "{}", dead[0]);
    // Two 2 s delays: not sooner either.
    assert!(
        stepped.elapsed() >= std::time::Duration::from_millis(3_000),
        "{:?}",
        stepped.elapsed()
    );
    // Other traffic is untouched by the step.
    let mut accepted = HashSet::new();
    let batch: Vec<Value> = (0..100)
        .map(|i| event("com.example.work", &format!("w{i}"), json!({"n": i})))
        .collect();
    assert_eq!(dev.post_batch(&batch).0, 202);
    accepted.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    let handled = all_handled(&dev, &accepted, 30);
    let counts = FaultCounts::of(accepted.len(), &accepted, &handled);
    counts.report("clock_step");
    assert_eq!((counts.lost, counts.duplicated), (0, 0));
}
