//! `sluice bench nats --module M.wasm`: distributed mode's data path on a real nats-server,
//! next to a raw JetStream baseline measured in the same run. Baseline: publish N messages
//! to a stream and consume them with a durable pull consumer, acking each (`async-nats`, no
//! Sluice). Sluice: publish N events to a bus (matched against the bus's Triggers as they are
//! stored, durable, deduplicated), consume each Trigger's copies with its worker, handle each
//! in a fresh Wasm instance, then ack. Streams made by the run are deleted afterwards.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull};
use sluice_event::CloudEvent;
use tokio::sync::watch;

use sluice_bus::{
    Publish, QueueConfig, SharedBus,
    nats::{NatsBus, NatsConfig, pull as pull_now},
};
use sluice_delivery::{
    DEFAULT_HOP_LIMIT,
    metrics::Metrics,
    router::{BusRoutes, RouteTarget},
    worker::{FunctionRuntime, SharedFunction, TriggerRoute, run_worker},
};
use sluice_process::dev::HostInvoker;

#[derive(clap::Args, Debug)]
pub struct NatsBenchArgs {
    /// The handler; omitted: a trivial WASI command that reads nothing and replies nothing,
    /// so the figure measures Sluice and JetStream, not the handler.
    #[arg(long, value_name = "FILE")]
    pub module: Option<PathBuf>,
    #[arg(
        long = "nats",
        env = "SLUICE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// Events per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// The Function's `concurrency`: deliveries in flight in the worker.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// `(module (func (export "_start")))`: the smallest WASI command there is.
const TRIVIAL_COMMAND: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // export _start
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
];

pub fn run(args: NatsBenchArgs) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

fn payload(i: usize) -> Vec<u8> {
    let mut e = CloudEvent::new(format!("e{i}"), "/bench", "com.example.work");
    e.datacontenttype = Some("application/json".into());
    e.data = Some(format!(r#"{{"n":{i}}}"#).into_bytes());
    e.to_json()
}

async fn bench(args: NatsBenchArgs) -> anyhow::Result<i32> {
    let run = format!("b{}", std::process::id());
    let bus = NatsBus::connect(NatsConfig::new(args.url.clone())).await?;
    let js = bus.jetstream().clone();
    // The server's INFO (its version) is known once the connection is up.
    bus.client().flush().await?;
    println!(
        "nats-server {} at {}",
        bus.client().server_info().version,
        args.url
    );

    let raw = raw_baseline(&js, &run, args.events).await?;
    println!(
        "raw JetStream publish+consume+ack: {:>8.0} msgs/s ({} messages)",
        raw, args.events
    );
    let sluice = sluice_path(&bus, &run, &args).await;
    cleanup(&js, &run).await;
    let sluice = sluice?;
    println!(
        "sluice publish+route→handle→ack:  {:>8.0} events/s ({} events) = {:.0}% of raw",
        sluice,
        args.events,
        100.0 * sluice / raw
    );
    Ok(0)
}

async fn raw_baseline(js: &jetstream::Context, run: &str, n: usize) -> anyhow::Result<f64> {
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: format!("bench_raw_{run}"),
            subjects: vec![format!("bench.raw.{run}")],
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("c".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            let msgs = pull_now(&consumer, 512).await?;
            if msgs.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for m in msgs {
                m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                got += 1;
            }
        }
        anyhow::Ok(())
    });
    let subject = format!("bench.raw.{run}");
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut acks = Vec::with_capacity(chunk.len());
        for &i in chunk {
            acks.push(js.publish(subject.clone(), payload(i).into()).await?);
        }
        for a in acks {
            a.await?;
        }
    }
    consume.await??;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn sluice_path(bus: &NatsBus, run: &str, args: &NatsBenchArgs) -> anyhow::Result<f64> {
    let (wasm, abi) = match &args.module {
        Some(m) => (
            std::fs::read(m).with_context(|| format!("--module {}", m.display()))?,
            "",
        ),
        None => (TRIVIAL_COMMAND.to_vec(), "\nabi: command"),
    };
    let spec: sluice_api::FunctionSpec = serde_yaml::from_str(&format!(
        "module: {{path: x}}\nconcurrency: {}{abi}",
        args.concurrency
    ))?;
    let engine = sluice_host::Engine::new(sluice_host::EngineConfig::default())?;
    let cfg = sluice_host::HandlerConfig::from_spec("bench", "work", &spec, Vec::new());
    let handler = tokio::task::spawn_blocking(move || engine.load(&wasm, cfg)).await??;
    let trigger = format!("{run}/work");
    let bus_name = format!("bench-{run}");
    let pattern =
        sluice_pattern::Pattern::parse(&serde_json::json!({"type": ["com.example.work"]}))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    bus.set_routes(Arc::new(BusRoutes::new(
        HashMap::from([(
            bus_name.clone(),
            vec![RouteTarget {
                id: trigger.clone(),
                pattern: Some(pattern),
                ordering_key: None,
            }],
        )]),
        HashMap::from([(trigger.clone(), bus_name.clone())]),
    )));
    bus.configure_queue(
        &trigger,
        &QueueConfig {
            bus: bus_name.clone(),
            max_inflight: 1_000,
            ordered: false,
            lease: Duration::from_secs(30),
            prefetch: args.concurrency,
            gate: Default::default(),
        },
    )
    .await?;
    let metrics = Metrics::new();
    let shared_bus: SharedBus = Arc::new(bus.clone());
    let func: SharedFunction = Arc::new(RwLock::new(Arc::new(FunctionRuntime {
        id: "bench/work".into(),
        invoker: Arc::new(HostInvoker(handler)),
        concurrency: args.concurrency,
        triggers: vec![TriggerRoute {
            id: trigger.clone(),
            retry: Default::default(),
            dead_letter_bus: None,
            reply_bus: format!("{bus_name}-replies"),
            transform: None,
            batch: None,
            gate: Default::default(),
        }],
        hop_limit: DEFAULT_HOP_LIMIT,
        emits: Vec::new(),
        schemas: Default::default(),
    })));
    let (desired, desired_rx) = watch::channel(1u32);
    tokio::spawn(run_worker(
        0,
        func,
        shared_bus.clone(),
        metrics.clone(),
        desired_rx,
    ));

    let started = Instant::now();
    let publisher = {
        let shared_bus = shared_bus.clone();
        let (n, bus_name) = (args.events, bus_name.clone());
        tokio::spawn(async move {
            for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
                let items = chunk
                    .iter()
                    .map(|&i| {
                        Ok(Publish {
                            bus: bus_name.clone(),
                            event: CloudEvent::from_json(&payload(i))?,
                            dedupe: true,
                        })
                    })
                    .collect::<Result<Vec<_>, sluice_event::EventError>>()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                shared_bus.publish(items).await?;
            }
            anyhow::Ok(())
        })
    };
    publisher.await??;
    let published = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while metrics.delivered_count(&trigger) < args.events as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} events handled",
            metrics.delivered_count(&trigger),
            args.events
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = args.events as f64 / started.elapsed().as_secs_f64();
    println!(
        "  (all published after {:.2}s, all handled after {:.2}s)",
        published.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    desired.send_replace(0);
    bus.unconfigure_queue(&trigger).await;
    Ok(rate)
}

/// Deletes every stream this run made.
async fn cleanup(js: &jetstream::Context, run: &str) {
    use futures::TryStreamExt;
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap_or_default();
    for n in names.iter().filter(|n| n.contains(run)) {
        let _ = js.delete_stream(n).await;
    }
}
