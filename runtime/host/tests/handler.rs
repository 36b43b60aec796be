//! The handler contract of both ABIs: detection, replies and their defaults, the guest's own
//! verdicts, exit statuses, the environment, and the compiled-code cache.

mod common;

use common::{cmd_p1, cmd_p2, config, engine, event, probe};
use sluice_event::{CloudEvent, Extension};
use sluice_host::{Abi, Engine, EngineConfig, Failure};

#[test]
fn abi_is_detected_from_the_binary() {
    let e = engine();
    assert_eq!(e.load(probe(), config("c")).unwrap().abi(), Abi::Component);
    assert_eq!(e.load(cmd_p1(), config("p1")).unwrap().abi(), Abi::Command);
    assert_eq!(e.load(cmd_p2(), config("p2")).unwrap().abi(), Abi::Command);

    let mut wrong = config("wrong");
    wrong.abi = Some(Abi::Command);
    let err = e.load(probe(), wrong.clone()).unwrap_err().to_string();
    assert!(
        err.contains("test/wrong") && err.contains("wasi:cli/run"),
        "{err}"
    );
    wrong.abi = Some(Abi::Component);
    let err = e.load(cmd_p1(), wrong.clone()).unwrap_err().to_string();
    assert!(err.contains("core module"), "{err}");
    let err = e.load(cmd_p2(), wrong).unwrap_err().to_string();
    assert!(err.contains("handle"), "{err}");
    let err = e.load(b"not wasm", config("junk")).unwrap_err().to_string();
    assert!(err.contains("not a WebAssembly binary"), "{err}");
}

#[test]
fn bad_configuration_names_the_field() {
    let e = engine();
    let mut cfg = config("big");
    cfg.memory = 1 << 30;
    let err = e.load(probe(), cfg).unwrap_err().to_string();
    assert!(err.contains("test/big: spec.limits.memory"), "{err}");
    let mut cfg = config("hosts");
    cfg.outbound_hosts = vec!["ok.com".into(), "a.com:notaport".into()];
    let err = e.load(probe(), cfg).unwrap_err().to_string();
    assert!(
        err.contains("spec.capabilities.outboundHosts: [1]"),
        "{err}"
    );
}

#[test]
fn digest_is_the_sha256_of_the_module() {
    let h = engine().load(probe(), config("d")).unwrap();
    assert!(h.digest().starts_with("sha256:"));
    assert_eq!(h.digest().len(), "sha256:".len() + 64);
}

#[tokio::test]
async fn component_replies_get_defaults_and_the_trace_context() {
    let h = engine().load(probe(), config("probe")).unwrap();
    let mut ev = event("defaults", "");
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    ev.extensions
        .insert("traceparent".into(), Extension::String(tp.into()));
    let r = h.handle(&ev).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].ty, "test.defaulted");
    assert!(!r[0].id.is_empty());
    assert_eq!(r[0].source, "sluice://test/probe");
    assert!(r[0].time.is_some());
    assert_eq!(r[0].extension("traceparent").as_deref(), Some(tp));
    assert_eq!((r[1].id.as_str(), r[1].source.as_str()), ("own-id", "/own"));
    assert_eq!(r[1].extension("traceparent").as_deref(), Some("00-own"));
}

#[tokio::test]
async fn component_sees_its_event() {
    let h = engine().load(probe(), config("probe")).unwrap();
    let r = h.handle(&event("ok", "payload")).await.unwrap();
    assert_eq!(r[0].ty, "test.ok");
    assert_eq!(r[0].data.as_deref(), Some(&b"payload"[..]));
}

#[tokio::test]
async fn guest_verdicts_are_typed() {
    let h = engine().load(probe(), config("probe")).unwrap();
    let f = h.handle(&event("retryable", "")).await.unwrap_err();
    assert_eq!(f, Failure::Retryable("database down".into()));
    assert!(f.is_retryable());
    let f = h.handle(&event("fatal", "")).await.unwrap_err();
    assert_eq!(f, Failure::Fatal("order has no items".into()));
    assert!(!f.is_retryable());
    let f = h.handle(&event("invalid", "")).await.unwrap_err();
    assert_eq!(f.reason(), "invalid_reply");
}

#[tokio::test]
async fn only_spec_env_is_visible() {
    let e = engine();
    let mut cfg = config("env");
    cfg.env = vec![
        ("TAX_RATE".into(), "0.2".into()),
        ("CURRENCY".into(), "EUR".into()),
    ];
    for wasm in [probe(), cmd_p1(), cmd_p2()] {
        let h = e.load(wasm, cfg.clone()).unwrap();
        let r = h.handle(&event("env", "")).await.unwrap();
        let vars: serde_json::Value =
            serde_json::from_slice(r[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(
            vars,
            serde_json::json!({"TAX_RATE": "0.2", "CURRENCY": "EUR"}),
            "{:?}",
            h.abi()
        );
    }
}

#[tokio::test]
async fn command_exit_statuses() {
    let e = engine();
    for (label, wasm) in [("p1", cmd_p1()), ("p2", cmd_p2())] {
        let h = e.load(wasm, config(label)).unwrap();
        let r = h.handle(&event("ok", "")).await.unwrap();
        assert_eq!(r.len(), 2, "{label}");
        assert_eq!(r[0].ty, "test.ok");
        assert!(r[0].data_json().unwrap()["len"].as_u64().unwrap() > 10);
        assert_eq!(r[0].source, format!("sluice://test/{label}"));
        assert!(!r[0].id.is_empty());
        assert_eq!(r[1].subject.as_deref(), Some("s"));

        let f = h.handle(&event("exit65", "")).await.unwrap_err();
        // The command's last `error:` line is the reason.
        assert_eq!(
            f,
            Failure::Fatal("malformed order (exit status 65)".into()),
            "{label}"
        );
        let f = h.handle(&event("exit3", "")).await.unwrap_err();
        assert_eq!(f, Failure::Retryable("exit status 3".into()), "{label}");
        let f = h.handle(&event("garbage", "")).await.unwrap_err();
        assert!(
            matches!(&f, Failure::InvalidReply(m) if m.contains("stdout line 1")),
            "{f}"
        );
    }
}

#[test]
fn compiled_code_is_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || EngineConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 2,
        max_memory: 64 << 20,
        ..EngineConfig::default()
    };
    let first = Engine::new(cfg()).unwrap();
    first.load(probe(), config("a")).unwrap();
    first.load(cmd_p1(), config("b")).unwrap();
    assert_eq!(first.stats().compiled, 2);
    assert_eq!(first.stats().cache_hits, 0);

    // A restarted worker: a new engine on the same directory compiles nothing.
    {
        let second = Engine::new(cfg()).unwrap();
        let h = second.load(probe(), config("a")).unwrap();
        second.load(cmd_p1(), config("b")).unwrap();
        assert_eq!(second.stats().compiled, 0);
        assert_eq!(second.stats().cache_hits, 2);
        let rt = tokio::runtime::Runtime::new().unwrap();
        assert_eq!(
            rt.block_on(h.handle(&event("ok", "x"))).unwrap()[0].ty,
            "test.ok"
        );
    }

    // A damaged cache file is replaced, not trusted. (Replaced by rename, as `ModuleCache`
    // writes: cached code is memory-mapped, so a file must never be rewritten in place.)
    let files: Vec<_> = walk(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, b"garbage").unwrap();
        std::fs::rename(&tmp, f).unwrap();
    }
    let third = Engine::new(cfg()).unwrap();
    third.load(probe(), config("a")).unwrap();
    assert_eq!(third.stats().compiled, 1);
    assert_eq!(third.stats().cache_hits, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A batch of events with these ids and types (the guests' batch behaviour is by type).
fn batch_of(items: &[(&str, &str)]) -> Vec<CloudEvent> {
    items
        .iter()
        .map(|(id, ty)| {
            let mut e = event(ty, "x");
            e.id = (*id).into();
            e
        })
        .collect()
}

fn listed_ids(reply: &CloudEvent) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(reply.data.as_deref().unwrap()).unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Both ABIs get the whole batch in one instance and name the items that failed; the
/// response is not a reply.
#[tokio::test]
async fn a_batch_runs_once_and_names_its_failed_items_in_both_abis() {
    let e = engine();
    let events = batch_of(&[("a", "ok"), ("b", "fail"), ("c", "fatal"), ("d", "ok")]);
    let items: Vec<&CloudEvent> = events.iter().collect();
    for (name, wasm) in [("probe", probe()), ("p1", cmd_p1()), ("p2", cmd_p2())] {
        let h = e.load(wasm, config(name)).unwrap();
        let out = h.handle_batch(&items).await.unwrap();
        assert_eq!(out.replies.len(), 1, "{name}: {:?}", out.replies);
        assert_eq!(out.replies[0].ty, "test.batch", "{name}");
        assert_eq!(out.replies[0].source, format!("sluice://test/{name}"));
        assert_eq!(listed_ids(&out.replies[0]), ["a", "b", "c", "d"], "{name}");
        let failed: Vec<(usize, bool)> =
            out.failed.iter().map(|f| (f.index, f.retryable)).collect();
        assert_eq!(failed, [(1, true), (2, false)], "{name}");
    }
    let p1 = e.load(cmd_p1(), config("p1")).unwrap();
    let out = p1.handle_batch(&items).await.unwrap();
    assert_eq!(out.failed[1].message, "bad item");
}

#[tokio::test]
async fn a_batch_fails_whole_or_for_a_wrong_response() {
    let e = engine();
    let probe = e.load(probe(), config("probe")).unwrap();
    let crash = batch_of(&[("a", "ok"), ("b", "crash")]);
    let err = probe
        .handle_batch(&crash.iter().collect::<Vec<_>>())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Failure::Retryable(m) if m == "the whole batch failed"),
        "{err}"
    );
    let stranger = batch_of(&[("a", "stranger")]);
    let err = probe
        .handle_batch(&stranger.iter().collect::<Vec<_>>())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid reply: batchItemFailures[0].itemIdentifier \"nobody\" is not the id of an event in the batch"
    );
    let p1 = e.load(cmd_p1(), config("p1")).unwrap();
    let poisoned = batch_of(&[("a", "ok"), ("b", "exit65")]);
    let err = p1
        .handle_batch(&poisoned.iter().collect::<Vec<_>>())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Failure::Fatal(m) if m.contains("a poisoned batch")),
        "{err}"
    );
    // A batch response from a handler that was given one event is a broken reply.
    let err = probe
        .handle(&event("dev.sluice.batch", "[]"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no delivery.batch"), "{err}");
}
