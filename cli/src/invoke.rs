//! `sluice invoke MODULE.wasm --event E`: runs one event through a handler in the same sandbox a
//! worker uses and prints the reply events as JSON lines, or the failure and exit status 1.
//! The quickest way to try a handler while writing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sluice_api::ByteSize;
use sluice_api::function::Abi;
use sluice_event::CloudEvent;
use sluice_host::{Engine, EngineConfig, Handler, HandlerConfig};

use crate::project::Project;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The handler: a Wasm component or a WASI command module.
    #[arg(value_name = "MODULE.wasm")]
    pub module: PathBuf,
    /// The event: inline JSON, `@file.json`, or a path. `specversion`, `id` and `source` may be
    /// left out.
    #[arg(long, value_name = "JSON|@FILE|FILE")]
    pub event: String,
    /// Wall-clock limit, as `spec.limits.timeout`.
    #[arg(long, default_value = "5s")]
    pub timeout: sluice_api::Duration,
    /// Memory limit, as `spec.limits.memory`.
    #[arg(long, default_value = "64Mi")]
    pub memory: ByteSize,
    /// stdout+stderr limit, as `spec.limits.output`.
    #[arg(long, default_value = "1Mi")]
    pub output: ByteSize,
    /// An environment variable for the handler (repeatable); nothing else is visible.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The ABI; detected from the binary when omitted.
    #[arg(long, value_parser = parse_abi)]
    pub abi: Option<Abi>,
    /// A host the handler may call over outgoing HTTP (repeatable): host, host:port, *.domain, *.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Function name, for the reply source `sluice://NAMESPACE/NAME` and logs.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Defaults to the module's file stem.
    #[arg(long)]
    pub name: Option<String>,
    /// Compiled-module cache; defaults to $SLUICE_CACHE_DIR or ~/.cache/sluice/wasm.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

fn parse_abi(s: &str) -> Result<Abi, String> {
    match s {
        "component" => Ok(Abi::Component),
        "command" => Ok(Abi::Command),
        _ => Err(format!("{s:?}: expected component or command")),
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    // Guest logs go to stderr; RUST_LOG overrides the level. WASI p1 calls open tracing
    // spans at info, which would prefix every guest line; they are silenced by default.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,wasmtime_wasi=warn,wiggle=warn")
            }),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();

    let event = read_event(&args.event)?;
    let wasm = std::fs::read(&args.module)
        .with_context(|| format!("reading {}", args.module.display()))?;
    let name = match args.name.clone() {
        Some(n) => n,
        None => args
            .module
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "invoke".into()),
    };
    let env = args
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--env {kv:?}: expected NAME=VALUE"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = HandlerConfig {
        namespace: args.namespace.clone(),
        name,
        abi: args.abi,
        env,
        memory: args.memory.bytes(),
        timeout: Duration::from(args.timeout),
        output: args.output.bytes(),
        outbound_hosts: args.allow_host.clone(),
    };
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(default_cache_dir)
    };
    let handler = engine(args.memory.bytes(), cache_dir)?.load(&wasm, cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match rt.block_on(handler.handle(&event)) {
        Ok(replies) => {
            for r in replies {
                println!("{}", String::from_utf8_lossy(&r.to_json()));
            }
            Ok(0)
        }
        Err(failure) => {
            eprintln!("error: {failure}");
            Ok(1)
        }
    }
}

/// An engine for one handler at a time, as a worker would run it.
fn engine(memory: u64, cache_dir: Option<PathBuf>) -> anyhow::Result<Engine> {
    Ok(Engine::new(EngineConfig {
        cache_dir,
        max_instances: 1,
        // One pooled slot exactly as large as this handler's limit.
        max_memory: memory.next_multiple_of(64 << 10).max(64 << 10),
        ..EngineConfig::default()
    })?)
}

/// A project's module loaded with its Function's limits and ABI (`sluice build`, `sluice
/// test`), the compiled code cached as `sluice invoke` caches it.
pub fn load(project: &Project, wasm: &[u8], env: Vec<(String, String)>) -> anyhow::Result<Handler> {
    let f = &project.function;
    let namespace = f.metadata.namespace.as_deref().unwrap_or("default");
    let cfg = HandlerConfig::from_spec(namespace, project.name(), &f.spec, env);
    Ok(engine(f.spec.limits.memory.bytes(), default_cache_dir())?.load(wasm, cfg)?)
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(dir.into());
    }
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".cache/sluice/wasm"))
}

/// `--event`: inline JSON, `@file`, or a file path.
pub fn read_event(arg: &str) -> anyhow::Result<CloudEvent> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_owned()
    } else {
        let path = arg.strip_prefix('@').unwrap_or(arg);
        std::fs::read_to_string(path).with_context(|| format!("--event: reading {path}"))?
    };
    parse_event(&text).map_err(|e| anyhow::anyhow!("--event: {e}"))
}

/// A hand-written test event: leniently fills `specversion`, `id` and `source`, which such an
/// event rarely cares about.
pub fn parse_event(text: &str) -> Result<CloudEvent, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(obj) = value.as_object_mut() else {
        return Err("a CloudEvent must be a JSON object".into());
    };
    obj.entry("specversion").or_insert_with(|| "1.0".into());
    obj.entry("id").or_insert_with(|| "invoke-1".into());
    obj.entry("source")
        .or_insert_with(|| "sluice://invoke".into());
    CloudEvent::from_json_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_inline_file_and_at_file() {
        let e = read_event(r#"{"type":"a.b","data":{"x":1}}"#).unwrap();
        assert_eq!((e.ty.as_str(), e.id.as_str()), ("a.b", "invoke-1"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.json");
        std::fs::write(&p, r#"{"type":"t","id":"9","source":"/s"}"#).unwrap();
        let by_path = read_event(p.to_str().unwrap()).unwrap();
        let by_at = read_event(&format!("@{}", p.display())).unwrap();
        assert_eq!(by_path, by_at);
        assert_eq!(by_path.id, "9");
        assert!(read_event("[1]").is_err());
        assert!(read_event("@/nonexistent/e.json").is_err());
    }
}
