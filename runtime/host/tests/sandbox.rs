//! The sandbox under attack: hostile handlers (loops, bombs, floods, forbidden calls) each end
//! in their typed failure while well-behaved invocations on the same engine keep succeeding.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{cmd_p1, config, engine, event, init_tracing, probe};
use sluice_host::{Engine, Failure, Handler, HandlerConfig};

/// Runs `hostile` concurrently with good invocations on the same engine, then one more good
/// invocation after it, and returns the hostile outcome.
async fn isolated(engine: &Engine, hostile: &Handler, ty: &str, data: &str) -> Failure {
    let good = engine.load(probe(), config("good")).expect("good handler");
    let h = hostile.clone();
    let ev = event(ty, data);
    let bad = tokio::spawn(async move { h.handle(&ev).await });
    let g = good.clone();
    let during = tokio::spawn(async move {
        let mut ok = 0;
        for _ in 0..5 {
            let r = g
                .handle(&event("ok", "during"))
                .await
                .expect("good handler during");
            ok += r.len();
        }
        ok
    });
    let failure = bad
        .await
        .expect("hostile task must not panic")
        .expect_err("hostile handler must fail");
    assert_eq!(during.await.expect("good task"), 5);
    let after = good
        .handle(&event("ok", "after"))
        .await
        .expect("good handler after");
    assert_eq!(after[0].data.as_deref(), Some(&b"after"[..]));
    failure
}

fn load(engine: &Engine, wasm: &[u8], cfg: HandlerConfig) -> Handler {
    engine.load(wasm, cfg).expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_times_out() {
    init_tracing();
    let e = engine();
    let mut cfg = config("loop");
    cfg.timeout = Duration::from_millis(300);
    let h = load(&e, probe(), cfg.clone());
    let f = isolated(&e, &h, "loop", "").await;
    assert_eq!(f, Failure::Timeout(Duration::from_millis(300)));
    assert!(f.is_retryable());
    assert_eq!(f.to_string(), "timeout after 300ms");

    let p1 = load(&e, cmd_p1(), cfg);
    assert_eq!(isolated(&e, &p1, "loop", "").await.reason(), "timeout");
}

/// On one executor thread, a guest computing forever yields at every epoch tick: another
/// invocation on that thread completes while it still runs, and it still times out.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_hold_its_thread() {
    let e = engine();
    let mut cfg = config("loop");
    cfg.timeout = Duration::from_secs(2);
    let spinner = load(&e, probe(), cfg);
    let good = load(&e, probe(), config("good"));
    let bad = tokio::spawn(async move { spinner.handle(&event("loop", "")).await });
    // The spinner runs first, while this task sleeps.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = good
        .handle(&event("ok", "beside"))
        .await
        .expect("good handler");
    assert_eq!(r[0].data.as_deref(), Some(&b"beside"[..]));
    assert!(
        !bad.is_finished(),
        "the spinner had finished first: it held the thread until its timeout"
    );
    let f = bad.await.expect("no panic").expect_err("the spinner fails");
    assert_eq!(f.reason(), "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_in_the_host_times_out() {
    let e = engine();
    let mut cfg = config("sleep");
    cfg.timeout = Duration::from_millis(200);
    let h = load(&e, probe(), cfg);
    assert_eq!(isolated(&e, &h, "sleep", "").await.reason(), "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_limit() {
    init_tracing();
    let e = engine();
    let cfg = config("bomb");
    let h = load(&e, probe(), cfg.clone());
    let f = isolated(&e, &h, "memory", "").await;
    assert_eq!(f, Failure::MemoryLimit(32 << 20));
    assert!(f.is_retryable());

    let p1 = load(&e, cmd_p1(), cfg);
    assert_eq!(
        isolated(&e, &p1, "memory", "").await,
        Failure::MemoryLimit(32 << 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_is_a_trap() {
    let e = engine();
    let h = load(&e, probe(), config("recursion"));
    let f = isolated(&e, &h, "recursion", "").await;
    assert!(
        matches!(&f, Failure::Trap(m) if m.contains("call stack exhausted")),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_flood_hits_the_output_limit() {
    let e = engine();
    let h = load(&e, probe(), config("flood"));
    assert_eq!(
        isolated(&e, &h, "stdout", "").await,
        Failure::OutputLimit(1 << 20)
    );
    let p1 = load(&e, cmd_p1(), config("flood"));
    assert_eq!(
        isolated(&e, &p1, "stdout", "").await,
        Failure::OutputLimit(1 << 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_files_are_not_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "s3cret").unwrap();
    let e = engine();
    let h = load(&e, probe(), config("file"));
    // No directory is preopened, so the guest's open fails inside the guest and its
    // `expect` panics: a trap, and the file's content is nowhere in the outcome.
    let f = isolated(&e, &h, "file", secret.to_str().unwrap()).await;
    assert!(matches!(&f, Failure::Trap(_)), "{f}");
    assert!(!f.to_string().contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let e = engine();
    let h = load(&e, probe(), config("socket"));
    let f = isolated(&e, &h, "socket", &addr).await;
    assert!(
        matches!(&f, Failure::Denied(m) if m.contains("tcp-create-socket")),
        "{f}"
    );
    assert!(!f.is_retryable());
}

/// A one-thread HTTP server answering every request with 200 and counting them.
fn http_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_only_to_granted_hosts() {
    let (addr, hits) = http_server();
    let e = engine();

    let denied = load(&e, probe(), config("http"));
    let f = isolated(&e, &denied, "http", &addr).await;
    assert!(matches!(&f, Failure::Denied(m) if m.contains(&addr)), "{f}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    let mut cfg = config("http");
    cfg.outbound_hosts = vec!["example.com".into(), addr.clone()];
    let granted = load(&e, probe(), cfg);
    let r = granted
        .handle(&event("http", &addr))
        .await
        .expect("granted call");
    assert_eq!(r[0].ty, "test.http");
    assert_eq!(r[0].data.as_deref(), Some(&b"200"[..]));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_wait_for_an_instance_slot() {
    let e = Engine::new(sluice_host::EngineConfig {
        max_instances: 2,
        max_memory: 64 << 20,
        ..Default::default()
    })
    .unwrap();
    let h = load(&e, probe(), config("busy"));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.handle(&event("ok", &i.to_string())).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t
            .await
            .unwrap()
            .expect("every caller gets a slot eventually");
        assert_eq!(r[0].data.as_deref(), Some(i.to_string().as_bytes()));
    }
}
