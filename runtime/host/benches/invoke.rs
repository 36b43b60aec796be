//! What one event costs: instantiate a fresh instance from the pre-instantiated handle, run
//! `handle`, drop the instance. For a minimal Rust component and a minimal WASI p1 command,
//! with and without epoch interruption, and (when built) the Python and JavaScript example
//! components, whose compile and cached-load times are measured too. After criterion's
//! figures, a plain loop prints p50/p99 per case, which criterion does not report.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use sluice_event::CloudEvent;
use sluice_host::{Engine, EngineConfig, Handler};

fn engine(epoch: bool) -> Engine {
    Engine::new(EngineConfig {
        max_instances: 16,
        max_memory: 256 << 20,
        epoch_tick: epoch.then(|| Duration::from_millis(10)),
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn handler(engine: &Engine, wasm: &[u8], name: &str) -> Handler {
    let mut cfg = common::config(name);
    cfg.memory = 128 << 20;
    cfg.timeout = Duration::from_secs(10);
    engine.load(wasm, cfg).expect("load")
}

/// Example components of the other languages, when their modules have been built.
fn examples() -> Vec<(&'static str, Vec<u8>, CloudEvent)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../functions");
    [
        ("python", "python/fraud.wasm"),
        ("javascript", "javascript/invoice.wasm"),
    ]
    .into_iter()
    .filter_map(|(lang, module)| {
        let wasm = std::fs::read(root.join(module)).ok()?;
        let event = std::fs::read(root.join(lang).join("event.json")).ok()?;
        Some((lang, wasm, CloudEvent::from_json(&event).ok()?))
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let noop = common::event("noop", "");
    let mut g = c.benchmark_group("handle");
    for (label, epoch) in [("epoch", true), ("no-epoch", false)] {
        let e = engine(epoch);
        let component = handler(&e, common::probe(), "probe");
        let command = handler(&e, common::cmd_p1(), "cmd");
        g.bench_function(format!("component/{label}"), |b| {
            b.iter(|| black_box(rt.block_on(component.handle(&noop)).expect("noop")))
        });
        g.bench_function(format!("command-p1/{label}"), |b| {
            b.iter(|| black_box(rt.block_on(command.handle(&noop)).expect("noop")))
        });
    }
    let e = engine(true);
    for (lang, wasm, event) in examples() {
        let h = handler(&e, &wasm, lang);
        g.bench_function(format!("{lang}-component/epoch"), |b| {
            b.iter(|| black_box(rt.block_on(h.handle(&event))).ok())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    for (lang, wasm, _) in examples() {
        g.bench_function(format!("{lang}/compile"), |b| {
            b.iter(|| black_box(handler(&engine(false), &wasm, lang)))
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let cached = || {
            Engine::new(EngineConfig {
                cache_dir: Some(dir.path().to_owned()),
                max_instances: 2,
                max_memory: 256 << 20,
                epoch_tick: None,
                ..EngineConfig::default()
            })
            .expect("engine")
        };
        handler(&cached(), &wasm, lang);
        g.bench_function(format!("{lang}/cached"), |b| {
            b.iter(|| {
                let e = cached();
                black_box(handler(&e, &wasm, lang));
                assert_eq!(e.stats().compiled, 0, "a cache hit compiles nothing");
            })
        });
    }
    g.finish();
}

/// p50/p99 of single invocations, each timed on its own.
fn percentiles() {
    let rt = rt();
    let noop = common::event("noop", "");
    let mut cases: Vec<(String, Handler, CloudEvent, usize)> = Vec::new();
    for (label, epoch) in [("epoch", true), ("no-epoch", false)] {
        let e = engine(epoch);
        cases.push((
            format!("component/{label}"),
            handler(&e, common::probe(), "p"),
            noop.clone(),
            20_000,
        ));
        cases.push((
            format!("command-p1/{label}"),
            handler(&e, common::cmd_p1(), "c"),
            noop.clone(),
            20_000,
        ));
    }
    let e = engine(true);
    for (lang, wasm, event) in examples() {
        cases.push((
            format!("{lang}-component/epoch"),
            handler(&e, &wasm, lang),
            event,
            2_000,
        ));
    }
    println!("\nper-invocation latency (instantiate + handle + drop), single thread:");
    for (name, h, ev, n) in cases {
        for _ in 0..n / 10 {
            let _ = rt.block_on(h.handle(&ev));
        }
        let mut samples: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                let _ = black_box(rt.block_on(h.handle(&ev)));
                t.elapsed()
            })
            .collect();
        samples.sort();
        let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        println!(
            "  {name:<28} p50 {:>9.1?}  p99 {:>9.1?}  (n={n})",
            p(0.50),
            p(0.99)
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    percentiles();
}
