//! `sluice bench e2e --module M.wasm`: the whole local data path under load, in one process:
//! HTTP ingress (durable publish) → router (pattern match) → Wasm handler → ack, plus the reply
//! each handled event produces, which is how completion is observed. Reports sustained
//! throughput, latency at half that load, and the cold path of a newly added Function.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::json;
use sluice_api::FunctionSpec;

use sluice_bus::embedded::{EmbeddedBus, EmbeddedConfig, PhaseTime, WriterTimes};
use sluice_delivery::metrics::Metrics;
use sluice_ingress::{self as ingress, AppState, IngressConfig};
use sluice_process::{
    dev::HostInvoker,
    local::{FunctionDef, Local, TriggerDef},
};

use crate::progress::Progress;

#[derive(clap::Args, Debug)]
pub struct E2eArgs {
    /// A handler that answers each `com.example.work` event with one `com.example.done` reply
    /// whose `data.of` is the input's id, and a batch with one `com.example.batch` reply whose
    /// `data.ids` lists them (`tests/guests/tester` does; `make bench-e2e` builds it).
    #[arg(long, value_name = "WASM")]
    pub module: PathBuf,
    /// Events in the batched throughput run.
    #[arg(long, default_value_t = 40_000)]
    pub events: usize,
    /// Events per HTTP request in the batched runs (CloudEvents batched mode).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent HTTP connections in the batched throughput run.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Events in the one-event-per-request throughput run (binary mode).
    #[arg(long, default_value_t = 20_000)]
    pub single_events: usize,
    /// Concurrent HTTP connections in the one-event-per-request throughput run.
    #[arg(long, default_value_t = 64)]
    pub single_connections: usize,
    /// Length of each latency run, at half the throughput of the same request shape.
    #[arg(long, default_value_t = 5.0)]
    pub latency_seconds: f64,
    /// Events per second in both latency runs (default: half the throughput measured with
    /// the same request shape).
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Requests in flight at most in the latency run (one connection each); events due
    /// while all are busy wait for one, and that wait counts in their latency.
    #[arg(long, default_value_t = 256)]
    pub latency_connections: usize,
    /// Events per invocation in the handler-batch throughput run (a Trigger with
    /// `delivery.batch`, events sent as in the batched run); 0 skips it.
    #[arg(long, default_value_t = 50)]
    pub handler_batch: u32,
    /// Async worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

pub fn run(args: E2eArgs) -> anyhow::Result<i32> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build()?.block_on(bench(args))
}

fn function_spec(module: &std::path::Path) -> anyhow::Result<FunctionSpec> {
    let yaml = format!(
        "module: {{path: {}}}\nconcurrency: 64\nscaling: {{minReplicas: 0, maxReplicas: 2, targetPendingPerReplica: 1000, cooldown: 60s}}",
        module.display()
    );
    Ok(serde_yaml::from_str(&yaml)?)
}

fn trigger(ns: &str, name: &str, function: &str, ty: &str) -> anyhow::Result<TriggerDef> {
    trigger_with(ns, name, function, ty, "maxInflight: 10000")
}

fn trigger_with(
    ns: &str,
    name: &str,
    function: &str,
    ty: &str,
    delivery: &str,
) -> anyhow::Result<TriggerDef> {
    let spec: sluice_api::TriggerSpec = serde_yaml::from_str(&format!(
        "source: {{bus: default}}\npattern: {{type: [{ty}]}}\nfunction: {function}\ndelivery: {{{delivery}}}"
    ))?;
    let pattern = spec
        .pattern
        .as_ref()
        .map(sluice_pattern::Pattern::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(TriggerDef {
        id: format!("{ns}/{name}"),
        namespace: ns.into(),
        spec,
        pattern,
        transform: None,
        secrets: Arc::new(sluice_ingress::secrets::ManifestSecrets::default()),
    })
}

async fn bench(args: E2eArgs) -> anyhow::Result<i32> {
    let wasm = std::fs::read(&args.module)
        .with_context(|| format!("--module {}", args.module.display()))?;
    let tmp = tempfile::tempdir()?;
    let bus = EmbeddedBus::open(EmbeddedConfig::new(tmp.path().join("data")))?;
    let local = Local::new(bus.clone(), Metrics::new());
    let engine = sluice_host::Engine::new(sluice_host::EngineConfig {
        cache_dir: Some(tmp.path().join("cache")),
        ..Default::default()
    })?;

    // Compile from scratch, then once more from the disk cache (what a restart pays).
    let spec = function_spec(&args.module)?;
    let load = |name: &str| {
        let cfg = sluice_host::HandlerConfig::from_spec("bench", name, &spec, Vec::new());
        let (engine, wasm) = (engine.clone(), wasm.clone());
        tokio::task::spawn_blocking(move || engine.load(&wasm, cfg))
    };
    let t = Instant::now();
    let handler = load("work").await??;
    let compile = t.elapsed();
    let t = Instant::now();
    let _ = load("work").await??;
    let cached = t.elapsed();

    let work = FunctionDef {
        id: "bench/work".into(),
        spec: spec.clone(),
        invoker: Arc::new(HostInvoker(handler)),
    };
    let mut functions = vec![work];
    let mut triggers = vec![trigger("bench", "work", "work", WORK)?];
    if args.handler_batch > 0 {
        // The same handler, given batches: `delivery.batch`, sent as the batched run.
        functions.push(FunctionDef {
            id: "bench/batched".into(),
            spec: spec.clone(),
            invoker: Arc::new(HostInvoker(load("batched").await??)),
        });
        let delivery = format!(
            "maxInflight: 10000, batch: {{maxEvents: {}, maxWait: 10ms, maxBytes: 4Mi}}",
            args.handler_batch
        );
        triggers.push(trigger_with(
            "bench", "batched", "batched", BATCHED, &delivery,
        )?);
    }
    local.apply(functions, triggers);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(local.clone().run_background(stop_rx));
    let state = AppState {
        bus: local.shared_bus.clone(),
        metrics: local.metrics.clone(),
        http: local.clone(),
        cfg: Arc::new(IngressConfig::default()),
        ready: Arc::new(AtomicBool::new(true)),
        replays: None,
        catalog: Default::default(),
        schemas: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, ingress::app(state)).await });

    let seen: Seen = Arc::default();
    tokio::spawn(observe(bus.clone(), seen.clone()));
    let client = http_client();
    let mut handled = 0;

    // 1. Throughput, twice: batches over a few connections (the figure the goal is about),
    //    and one event per request over many (what a fleet of small producers costs).
    let (batch, connections) = (args.batch.max(1), args.connections.max(1));
    let mut progress = Progress::new("bench e2e", Some(6));
    progress.update(0, &format!("throughput, batches of {batch}"));
    let throughput = saturate(
        addr,
        &seen,
        WORK,
        "t",
        args.events,
        batch,
        connections,
        &mut handled,
    )
    .await?;
    progress.update(1, "throughput, one event per request");
    let single_throughput = saturate(
        addr,
        &seen,
        WORK,
        "s",
        args.single_events,
        1,
        args.single_connections.max(1),
        &mut handled,
    )
    .await?;

    let handler_batched = if args.handler_batch > 0 {
        progress.update(
            2,
            &format!("throughput, {} events per invocation", args.handler_batch),
        );
        Some(
            saturate(
                addr,
                &seen,
                BATCHED,
                "h",
                args.events,
                batch,
                connections,
                &mut handled,
            )
            .await?,
        )
    } else {
        None
    };

    // 2. Latency at half of each: the same request shape as its throughput run, open loop.
    //    The writer's phase times of each run tell a slow publish's cause apart.
    let rate = args.latency_rate.unwrap_or(throughput / 2.0).max(1.0);
    progress.update(3, &format!("latency at {rate:.0} events/s, batches"));
    bus.take_writer_times();
    let batched = open_loop(&args, addr, &seen, "b", rate, batch, &mut handled).await?;
    let batched_writer = bus.take_writer_times();
    let single_rate = args
        .latency_rate
        .unwrap_or(single_throughput / 2.0)
        .max(1.0);
    progress.update(
        4,
        &format!("latency at {single_rate:.0} events/s, one per request"),
    );
    let single = open_loop(&args, addr, &seen, "l", single_rate, 1, &mut handled).await?;
    let single_writer = bus.take_writer_times();

    // 3. Cold path: a new Function (module already compiled once, as after `sluice dev`
    //    saw it) is loaded, applied, and handles its first event.
    progress.update(5, "cold path");
    let t = Instant::now();
    let cold_handler = load("cold").await??;
    let cold = FunctionDef {
        id: "bench/cold".into(),
        spec: spec.clone(),
        invoker: Arc::new(HostInvoker(cold_handler)),
    };
    let work = FunctionDef {
        id: "bench/work".into(),
        spec: spec.clone(),
        invoker: Arc::new(HostInvoker(load("work").await??)),
    };
    local.apply(
        vec![work, cold],
        vec![
            trigger("bench", "work", "work", "com.example.work")?,
            trigger("bench", "cold", "cold", "com.example.cold")?,
        ],
    );
    let mut e = work_event("cold-1");
    e["type"] = "com.example.cold".into();
    post(
        &client,
        addr,
        "application/cloudevents+json",
        serde_json::to_vec(&e)?,
    )
    .await?;
    wait_until(&seen, |m| m.contains_key("cold-1"), Duration::from_secs(30)).await?;
    let cold_path = t.elapsed();
    progress.finish("done");

    println!(
        "sluice bench e2e: {} ({} bytes)",
        args.module.display(),
        wasm.len(),
    );
    println!(
        "  throughput, batches of {batch} over {connections} connections: {throughput:.0} events/s ({} events)",
        args.events
    );
    println!(
        "  throughput, one event per request over {} connections: {single_throughput:.0} events/s ({} events)",
        args.single_connections, args.single_events
    );
    if let Some(t) = handler_batched {
        println!(
            "  throughput, the same requests to a Trigger with delivery.batch of {}: {t:.0} events/s ({} events; {:.2}x one invocation per event)",
            args.handler_batch,
            args.events,
            t / throughput
        );
    }
    batched.print(&format!("batches of {batch}"));
    print_writer(&batched_writer);
    single.print("one event per request");
    print_writer(&single_writer);
    println!(
        "  cold path (load cached module, apply, first event handled): {:.1} ms",
        ms(cold_path)
    );
    println!(
        "  module compile from scratch: {:.1} ms; load from disk cache: {:.1} ms",
        ms(compile),
        ms(cached)
    );
    local.shutdown().await;
    Ok(0)
}

/// Sends `n` events, `batch` per request, as fast as `connections` connections allow, and
/// waits for every reply. Events per second from the first send to the last reply.
#[allow(clippy::too_many_arguments)]
async fn saturate(
    addr: std::net::SocketAddr,
    seen: &Seen,
    ty: &'static str,
    prefix: &'static str,
    n: usize,
    batch: usize,
    connections: usize,
    handled: &mut usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    as_client(move |client| async move {
        let per = n.div_ceil(connections);
        let mut senders = Vec::new();
        for c in 0..connections {
            let client = client.clone();
            let ids: Vec<usize> = (c * per..((c + 1) * per).min(n)).collect();
            senders.push(tokio::spawn(async move {
                for chunk in ids.chunks(batch) {
                    let ids: Vec<String> = chunk.iter().map(|i| format!("{prefix}{i}")).collect();
                    send(&client, addr, ty, &ids).await?;
                }
                anyhow::Ok(())
            }));
        }
        for s in senders {
            s.await??;
        }
        Ok(())
    })
    .await?;
    *handled += n;
    let target = *handled;
    // Replies are keyed by the id they answer, so the number of keys says when all are in;
    // which ids they are is checked once, after the clock stopped.
    wait_until(seen, |m| m.len() >= target, Duration::from_secs(600)).await?;
    let total = started.elapsed();
    let m = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    anyhow::ensure!(
        (0..n).all(|i| m.contains_key(&format!("{prefix}{i}"))),
        "a reply answered an unknown event"
    );
    Ok(n as f64 / total.as_secs_f64())
}

/// What an open-loop latency run measured.
struct Latency {
    rate: f64,
    /// Due time of each event's request → its reply on the bus, sorted.
    handled: Vec<Duration>,
    /// Due time of each request → its 202 (the durable publish alone), sorted.
    accepted: Vec<Duration>,
}

impl Latency {
    fn print(&self, shape: &str) {
        let (h, a) = (&self.handled, &self.accepted);
        println!(
            "  latency at {:.0} events/s, {shape}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} events)",
            self.rate,
            ms(pct(h, 0.50)),
            ms(pct(h, 0.99)),
            ms(pct(h, 1.0)),
            h.len()
        );
        println!(
            "    of which the durable publish (the 202): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(pct(a, 0.50)),
            ms(pct(a, 0.99)),
            ms(pct(a, 1.0)),
        );
    }
}

fn print_writer(w: &WriterTimes) {
    let phase = |p: &PhaseTime| {
        let mean = p
            .total
            .checked_div(p.count.max(1) as u32)
            .unwrap_or_default();
        format!(
            "{} (mean {:.2} ms, max {:.2} ms)",
            p.count,
            ms(mean),
            ms(p.max)
        )
    };
    println!(
        "    bus writer: commits {}, of which journal appends {}; checkpoints {}",
        phase(&w.commit),
        phase(&w.journal),
        phase(&w.checkpoint)
    );
}

/// Sends events at `rate`, `batch` per request, each request on the clock whether or not
/// earlier ones were answered (open loop), for `--latency-seconds`; then waits for the replies.
async fn open_loop(
    args: &E2eArgs,
    addr: std::net::SocketAddr,
    seen: &Seen,
    prefix: &'static str,
    rate: f64,
    batch: usize,
    handled: &mut usize,
) -> anyhow::Result<Latency> {
    let count = ((rate * args.latency_seconds) as usize).max(batch);
    let requests = count.div_ceil(batch);
    let interval = Duration::from_secs_f64(batch as f64 / rate);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let accepted: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (sent_c, accepted_c) = (sent.clone(), accepted.clone());
    let open = Arc::new(tokio::sync::Semaphore::new(args.latency_connections.max(1)));
    as_client(move |client| async move {
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for r in 0..requests {
            let due = t0 + interval * r as u32;
            tokio::time::sleep_until(due.into()).await;
            let ids: Vec<String> = (r * batch..((r + 1) * batch).min(count))
                .map(|i| format!("{prefix}{i}"))
                .collect();
            let (client, sent, accepted) = (client.clone(), sent_c.clone(), accepted_c.clone());
            let open = open.clone();
            tasks.spawn(async move {
                // Requests beyond the open connections wait here, on the clock.
                let _open = open.acquire_owned().await?;
                // Timed from when the request was due, so a client that fell behind (the
                // cores are shared) counts against the latency instead of hiding it.
                {
                    let mut sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    for id in &ids {
                        sent.insert(id.clone(), due);
                    }
                }
                send(&client, addr, WORK, &ids).await?;
                accepted
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(due.elapsed());
                anyhow::Ok(())
            });
            while let Some(r) = tasks.try_join_next() {
                r??;
            }
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(())
    })
    .await?;
    *handled += count;
    let target = *handled;
    wait_until(seen, |m| m.len() >= target, Duration::from_secs(120)).await?;
    let mut lat: Vec<Duration> = {
        let (sent, seen) = (
            sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
            seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
        );
        sent.iter()
            .filter_map(|(id, s)| seen.get(id).map(|r| r.saturating_duration_since(*s)))
            .collect()
    };
    lat.sort();
    let mut acc = std::mem::take(&mut *accepted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    acc.sort();
    Ok(Latency {
        rate,
        handled: lat,
        accepted: acc,
    })
}

/// One publish request: CloudEvents binary mode for a single event, batched mode for more.
async fn send(
    client: &HttpClient,
    addr: std::net::SocketAddr,
    ty: &str,
    ids: &[String],
) -> anyhow::Result<()> {
    let [id] = ids else {
        let events: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut e = work_event(id);
                e["type"] = ty.into();
                e
            })
            .collect();
        let body = serde_json::to_vec(&events)?;
        return post(client, addr, "application/cloudevents-batch+json", body).await;
    };
    let data = &work_event(id)["data"];
    let req = hyper::Request::post(format!("http://{addr}/"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/bench")
        .header("ce-type", ty)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(data)?)))?;
    let resp = client.request(req).await?;
    anyhow::ensure!(resp.status() == 202, "publish answered {}", resp.status());
    Ok(())
}

/// The `p` quantile of sorted durations.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const WORK: &str = "com.example.work";
const BATCHED: &str = "com.example.batched";

fn work_event(id: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "/bench", "type": "com.example.work",
        "datacontenttype": "application/json", "data": {"orderId": id, "total": 120.5, "country": "NL"}})
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Runs a load generator on a thread and runtime of its own, as a separate client process
/// would: the OS shares the cores between client and server, and the client's tasks do not
/// queue behind the server's (nor the server's behind the client's).
async fn as_client<F>(load: impl FnOnce(HttpClient) -> F + Send + 'static) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            let done = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(load(http_client())));
            let _ = tx.send(done);
        })?;
    rx.await?
}

async fn post(
    client: &HttpClient,
    addr: std::net::SocketAddr,
    ct: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let req = hyper::Request::post(format!("http://{addr}/buses/default/events"))
        .header("content-type", ct)
        .body(Full::new(Bytes::from(body)))?;
    let resp = client.request(req).await?;
    anyhow::ensure!(resp.status() == 202, "publish answered {}", resp.status());
    Ok(())
}

/// Records when each `com.example.done` reply appears on the bus, keyed by the id it answers
/// (a `com.example.batch` reply answers each id it lists).
async fn observe(bus: EmbeddedBus, seen: Seen) {
    let mut after = bus.head("default");
    loop {
        let notified = bus.published();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Ok(events) = bus.read_raw("default", after, 4096) else {
            return;
        };
        if events.is_empty() {
            notified.await;
            continue;
        }
        let now = Instant::now();
        // The observer shares the cores with what it measures: only replies are decoded, and
        // only their `data.of`.
        #[derive(serde::Deserialize)]
        struct Reply {
            #[serde(rename = "type")]
            ty: String,
            data: Option<Of>,
        }
        #[derive(serde::Deserialize)]
        struct Of {
            of: Option<String>,
            ids: Option<Vec<String>>,
        }
        let done = memchr::memmem::Finder::new(b"com.example.done");
        let batch = memchr::memmem::Finder::new(b"com.example.batch\"");
        if let Ok(mut m) = seen.lock() {
            for (seq, _, json) in &events {
                after = *seq;
                if done.find(json).is_none() && batch.find(json).is_none() {
                    continue;
                }
                let Ok(Reply { ty, data: Some(of) }) = serde_json::from_slice(json) else {
                    continue;
                };
                match (ty.as_str(), of) {
                    ("com.example.done", Of { of: Some(of), .. }) => {
                        m.entry(of).or_insert(now);
                    }
                    ("com.example.batch", Of { ids: Some(ids), .. }) => {
                        for id in ids {
                            m.entry(id).or_insert(now);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

async fn wait_until(
    seen: &Seen,
    done: impl Fn(&HashMap<String, Instant>) -> bool,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if seen.lock().map(|m| done(&m)).unwrap_or(false) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "events were not all handled within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
