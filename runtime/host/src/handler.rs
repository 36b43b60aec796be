//! A loaded handler: the module compiled (or taken from the cache), its ABI decided, and a
//! pre-instantiated handle from which every event gets a fresh instance under the Function's
//! limits. This is where guest outcomes become `Failure`s.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_api::function::Abi;
use sluice_event::CloudEvent;
use wasmtime::Store;
use wasmtime::component::Component;

use crate::batch::{self, BatchOutcome};
use crate::command;
use crate::component::{self, HandlerPre};
use crate::engine::Engine;
use crate::failure::{Failure, HostError, fmt_duration};
use crate::linker::DeniedCall;
use crate::outbound::HostPattern;
use crate::output::{Budget, GuestOutput, Sink};
use crate::record::{LogContext, Violations};
use crate::sandbox::{ComponentState, Io, MemoryCap, Outbound, P1State};

/// Everything about a Function that shapes its sandbox, resolved (env secrets already read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerConfig {
    pub namespace: String,
    pub name: String,
    /// `None`: detect from the binary.
    pub abi: Option<Abi>,
    /// The only environment the guest sees.
    pub env: Vec<(String, String)>,
    /// Bytes of linear memory over all memories of one instance.
    pub memory: u64,
    /// Wall clock per invocation.
    pub timeout: Duration,
    /// Bytes of stdout plus stderr (and `log` records) per invocation.
    pub output: u64,
    /// `host`, `host:port`, `*.domain` or `*`; empty means no outbound HTTP.
    pub outbound_hosts: Vec<String>,
}

impl HandlerConfig {
    /// The sandbox of `spec`, with `env` already resolved by the caller.
    pub fn from_spec(
        namespace: &str,
        name: &str,
        spec: &sluice_api::FunctionSpec,
        env: Vec<(String, String)>,
    ) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            abi: spec.abi,
            env,
            memory: spec.limits.memory.bytes(),
            timeout: spec.limits.timeout.as_std(),
            output: spec.limits.output.bytes(),
            outbound_hosts: spec.capabilities.outbound_hosts.clone(),
        }
    }

    /// The limits of a default Function (`64Mi`, `5s`, `1Mi`), nothing granted.
    pub fn new(namespace: &str, name: &str) -> Self {
        let limits = sluice_api::function::Limits::default();
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            abi: None,
            env: Vec::new(),
            memory: limits.memory.bytes(),
            timeout: limits.timeout.as_std(),
            output: limits.output.bytes(),
            outbound_hosts: Vec::new(),
        }
    }
}

/// A handler ready to take events. Cheap to clone; each `handle` runs in a fresh instance.
#[derive(Clone)]
pub struct Handler {
    inner: Arc<HandlerInner>,
}

struct HandlerInner {
    engine: Engine,
    /// `namespace/name`, the `function` field of every log record.
    label: String,
    /// `sluice://namespace/name`, the source of replies that name none.
    source: String,
    digest: String,
    abi: Abi,
    kind: Kind,
    env: Arc<[(String, String)]>,
    allowed: Arc<[HostPattern]>,
    memory: u64,
    timeout: Duration,
    output: u64,
}

enum Kind {
    Component(HandlerPre<ComponentState>),
    P2Command(wasmtime_wasi::p2::bindings::CommandPre<ComponentState>),
    P1Command(wasmtime::InstancePre<P1State>),
}

const RUN_EXPORT_PREFIX: &str = "wasi:cli/run@0.2";

impl Engine {
    /// Compiles `wasm` (or loads it from the cache), decides its ABI and pre-instantiates it.
    /// Blocking: compiling takes milliseconds to seconds; async callers use `spawn_blocking`.
    pub fn load(&self, wasm: &[u8], cfg: HandlerConfig) -> Result<Handler, HostError> {
        let label = format!("{}/{}", cfg.namespace, cfg.name);
        let config_err = |field: &'static str, reason: String| HostError::Config {
            function: label.clone(),
            field,
            reason,
        };
        if cfg.memory > self.inner.max_memory {
            return Err(config_err(
                "spec.limits.memory",
                format!(
                    "{} bytes exceeds this worker's largest memory slot of {} bytes",
                    cfg.memory, self.inner.max_memory
                ),
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(config_err("spec.limits.timeout", "must be positive".into()));
        }
        let allowed = cfg
            .outbound_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                HostPattern::parse(h).map_err(|r| {
                    config_err("spec.capabilities.outboundHosts", format!("[{i}] {r}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let module_err = |reason: String| HostError::Module {
            function: label.clone(),
            reason,
        };
        let digest_hex = hex::encode(Sha256::digest(wasm));
        let (abi, kind) = if wasmtime::wasmparser::Parser::is_component(wasm) {
            let component = self.compile_component(wasm, &digest_hex, &label)?;
            let exports: Vec<String> = component
                .component_type()
                .exports(&self.inner.wasmtime)
                .map(|(name, _)| name.to_owned())
                .collect();
            let has_handle = exports.iter().any(|n| n == "handle");
            let has_run = exports.iter().any(|n| n.starts_with(RUN_EXPORT_PREFIX));
            let abi = match (cfg.abi, has_handle, has_run) {
                (Some(Abi::Component), true, _) | (None, true, _) => Abi::Component,
                (Some(Abi::Command), _, true) | (None, false, true) => Abi::Command,
                (want, _, _) => {
                    let what = match want {
                        Some(Abi::Component) => "spec.abi is component, but the component",
                        Some(Abi::Command) => "spec.abi is command, but the component",
                        None => "the component",
                    };
                    return Err(module_err(format!(
                        "{what} exports neither `handle` (world sluice:function/handler) nor \
                         `wasi:cli/run` as needed; it exports [{}]",
                        exports.join(", ")
                    )));
                }
            };
            let pre = self
                .inner
                .component_linker
                .instantiate_pre(&component)
                .map_err(|e| module_err(format!("cannot be linked: {e:#}")))?;
            let kind = match abi {
                Abi::Component => {
                    Kind::Component(HandlerPre::new(pre).map_err(|e| module_err(format!("{e:#}")))?)
                }
                Abi::Command => Kind::P2Command(
                    wasmtime_wasi::p2::bindings::CommandPre::new(pre)
                        .map_err(|e| module_err(format!("{e:#}")))?,
                ),
            };
            (abi, kind)
        } else if wasmtime::wasmparser::Parser::is_core_wasm(wasm) {
            if cfg.abi == Some(Abi::Component) {
                return Err(module_err(
                    "spec.abi is component, but this is a core module (a WASI preview 1 \
                     command?); build a component or set abi: command"
                        .into(),
                ));
            }
            let module = self.compile_module(wasm, &digest_hex, &label)?;
            if module.get_export("_start").is_none() {
                return Err(module_err(
                    "a core module must be a WASI command exporting `_start`".into(),
                ));
            }
            let pre = self
                .inner
                .p1_linker
                .instantiate_pre(&module)
                .map_err(|e| module_err(format!("cannot be linked: {e:#}")))?;
            (Abi::Command, Kind::P1Command(pre))
        } else {
            return Err(module_err(
                "not a WebAssembly binary (no \\0asm header of a module or component)".into(),
            ));
        };
        tracing::debug!(function = %label, digest = %digest_hex, ?abi, "handler loaded");
        Ok(Handler {
            inner: Arc::new(HandlerInner {
                engine: self.clone(),
                source: format!("sluice://{}/{}", cfg.namespace, cfg.name),
                label,
                digest: format!("sha256:{digest_hex}"),
                abi,
                kind,
                env: cfg.env.into(),
                allowed: allowed.into(),
                memory: cfg.memory,
                timeout: cfg.timeout,
                output: cfg.output,
            }),
        })
    }

    fn compile_component(
        &self,
        wasm: &[u8],
        digest_hex: &str,
        label: &str,
    ) -> Result<Component, HostError> {
        self.compile(
            wasm,
            digest_hex,
            label,
            "component",
            |engine, wasm| Component::new(engine, wasm),
            // SAFETY: the file was written by `ModuleCache::store` from `serialize` of this
            // engine configuration (the directory name carries its compatibility hash) and is
            // renamed into place whole; wasmtime checks its header and version.
            |engine, path| unsafe { Component::deserialize_file(engine, path) },
            Component::serialize,
        )
    }

    fn compile_module(
        &self,
        wasm: &[u8],
        digest_hex: &str,
        label: &str,
    ) -> Result<wasmtime::Module, HostError> {
        self.compile(
            wasm,
            digest_hex,
            label,
            "module",
            |engine, wasm| wasmtime::Module::new(engine, wasm),
            // SAFETY: as for components above.
            |engine, path| unsafe { wasmtime::Module::deserialize_file(engine, path) },
            wasmtime::Module::serialize,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn compile<T>(
        &self,
        wasm: &[u8],
        digest_hex: &str,
        label: &str,
        kind: &str,
        compile: impl Fn(&wasmtime::Engine, &[u8]) -> wasmtime::Result<T>,
        deserialize: impl Fn(&wasmtime::Engine, &std::path::Path) -> wasmtime::Result<T>,
        serialize: impl Fn(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> Result<T, HostError> {
        let engine = &self.inner.wasmtime;
        let cached = self.inner.cache.as_ref().map(|c| c.path(digest_hex, kind));
        if let Some(path) = cached.as_deref().filter(|p| p.exists()) {
            match deserialize(engine, path) {
                Ok(t) => {
                    self.inner
                        .cache_hits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(t);
                }
                // A stale or foreign file: compile afresh and replace it.
                Err(e) => tracing::warn!(
                    function = label,
                    path = %path.display(),
                    "ignoring unusable cached module: {e:#}"
                ),
            }
        }
        let compiled = compile(engine, wasm).map_err(|e| HostError::Module {
            function: label.to_owned(),
            reason: format!("does not compile: {e:#}"),
        })?;
        self.inner
            .compiled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let (Some(cache), Some(path)) = (&self.inner.cache, &cached) {
            // A cache that cannot be written costs a recompile on restart, not the handler.
            match serialize(&compiled) {
                Ok(bytes) => {
                    if let Err(e) = cache.store(path, &bytes) {
                        tracing::warn!(function = label, "{e}");
                    }
                }
                Err(e) => tracing::warn!(function = label, "serializing compiled module: {e:#}"),
            }
        }
        Ok(compiled)
    }
}

impl Handler {
    pub fn abi(&self) -> Abi {
        self.inner.abi
    }

    /// `sha256:<hex>` of the module bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Runs one event in a fresh instance and returns its reply events, defaults filled and
    /// validated. Waits for an instance slot when the engine is saturated.
    pub async fn handle(&self, event: &CloudEvent) -> Result<Vec<CloudEvent>, Failure> {
        let h = &*self.inner;
        let log = LogContext::new(&h.label, &event.id);
        let stdin = || event.to_json();
        let result = self.run(event, stdin, &log).await.and_then(|replies| {
            if let Some(i) = replies.iter().position(|r| r.ty == batch::RESPONSE_TYPE) {
                return Err(Failure::InvalidReply(format!(
                    "reply {i}: batchItemFailures answers a batch, but this invocation had one \
                     event (its Trigger has no delivery.batch)"
                )));
            }
            finish_replies(replies, event, &h.source)
        });
        log_failure(&log, &result);
        result
    }

    /// Runs a batch of events in one fresh instance (see [`crate::batch`]): the replies,
    /// defaults filled and validated, and the items the handler said failed. An `Err` fails
    /// every item.
    pub async fn handle_batch(&self, items: &[&CloudEvent]) -> Result<BatchOutcome, Failure> {
        let h = &*self.inner;
        let json = batch::json_array(items);
        let (envelope, stdin) = match h.kind {
            Kind::Component(_) => (batch::envelope(items, json, &h.source), None),
            _ => (batch::envelope(items, Vec::new(), &h.source), Some(json)),
        };
        let log = LogContext::new(&h.label, &envelope.id);
        let stdin = || stdin.unwrap_or_default();
        let result = self
            .run(&envelope, stdin, &log)
            .await
            .and_then(|replies| batch::split_response(replies, items))
            .and_then(|mut out| {
                out.replies = finish_replies(out.replies, &envelope, &h.source)?;
                Ok(out)
            });
        log_failure(&log, &result);
        result
    }

    /// Runs `event` in a fresh instance: a component gets `event`, a command `stdin()`.
    async fn run(
        &self,
        event: &CloudEvent,
        stdin: impl FnOnce() -> Vec<u8>,
        log: &LogContext,
    ) -> Result<Vec<CloudEvent>, Failure> {
        let h = &*self.inner;
        let engine = &h.engine.inner;
        // The semaphore is never closed, so acquiring only fails if it were; treat that as
        // a retryable trap rather than panicking.
        let _permit = engine
            .permits
            .acquire()
            .await
            .map_err(|_| Failure::Trap("instance pool closed".into()))?;
        let violations = Violations::default();
        let budget = Budget::new(h.output);
        let stdout_sink = match h.kind {
            Kind::Component(_) => Sink::Log,
            Kind::P2Command(_) | Kind::P1Command(_) => Sink::Capture,
        };
        let stdout = GuestOutput::new(stdout_sink, budget.clone(), violations.clone(), log.clone());
        let stderr = GuestOutput::new(Sink::Log, budget.clone(), violations.clone(), log.clone());
        let io = Io {
            env: h.env.clone(),
            stdin: match h.kind {
                Kind::Component(_) => bytes::Bytes::new(),
                _ => stdin().into(),
            },
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            argv0: h.label.as_str().into(),
        };
        let limits = MemoryCap::new(h.memory, violations.clone(), log.clone());
        let deadline_ticks = engine
            .epoch_tick
            .map(|tick| h.timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) as u64 + 1);

        // Ok(Ok(replies)) | Ok(Err(guest verdict)) | Err(wasmtime error: trap, exit…)
        let outcome = match &h.kind {
            Kind::Component(pre) => {
                let state = ComponentState::new(
                    io,
                    self.outbound(&violations, log),
                    limits,
                    log.clone(),
                    budget,
                    violations.clone(),
                );
                let mut store = Store::new(&engine.wasmtime, state);
                store.limiter(|s| &mut s.limits);
                arm_deadline(&mut store, deadline_ticks);
                let run = component::run(pre, &mut store, event);
                with_timeout(h.timeout, run).await
            }
            Kind::P2Command(pre) => {
                let state = ComponentState::new(
                    io,
                    self.outbound(&violations, log),
                    limits,
                    log.clone(),
                    budget,
                    violations.clone(),
                );
                let mut store = Store::new(&engine.wasmtime, state);
                store.limiter(|s| &mut s.limits);
                arm_deadline(&mut store, deadline_ticks);
                let run = command::run_p2(pre, &mut store);
                with_timeout(h.timeout, run)
                    .await
                    .map(|r| r.map(|status| self.command_outcome(status, &stdout, &stderr)))
            }
            Kind::P1Command(pre) => {
                let mut store = Store::new(&engine.wasmtime, P1State::new(io, limits));
                store.limiter(|s| &mut s.limits);
                arm_deadline(&mut store, deadline_ticks);
                let run = command::run_p1(pre, &mut store);
                with_timeout(h.timeout, run)
                    .await
                    .map(|r| r.map(|status| self.command_outcome(status, &stdout, &stderr)))
            }
        };
        // Flush unterminated log lines whatever happened.
        stderr.finish();
        if stdout_sink == Sink::Log {
            stdout.finish();
        }
        let failed = match outcome {
            Err(()) => return Err(Failure::Timeout(h.timeout)),
            Ok(Ok(Ok(replies))) => return Ok(replies),
            Ok(Ok(Err(verdict))) => verdict,
            Ok(Err(error)) => self.classify(error, log),
        };
        // A refused resource explains the failure that followed it.
        Err(violations.take().unwrap_or(failed))
    }

    fn outbound(&self, violations: &Violations, log: &LogContext) -> Outbound {
        Outbound {
            allowed: self.inner.allowed.clone(),
            violations: violations.clone(),
            log: log.clone(),
        }
    }

    fn command_outcome(
        &self,
        status: i32,
        stdout: &GuestOutput,
        stderr: &GuestOutput,
    ) -> Result<Vec<CloudEvent>, Failure> {
        let captured = stdout.finish();
        // An unterminated last line may hold the reason.
        stderr.finish();
        match command::status_failure(status, stderr.last_error()) {
            Some(failure) => Err(failure),
            None => command::parse_replies(&captured, &self.inner.source),
        }
    }

    /// A wasmtime error (trap, host error, denied call) as a `Failure`.
    fn classify(&self, error: wasmtime::Error, log: &LogContext) -> Failure {
        if let Some(DeniedCall(what)) = error.downcast_ref::<DeniedCall>() {
            return Failure::Denied(what.clone());
        }
        if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
            if *trap == wasmtime::Trap::Interrupt {
                return Failure::Timeout(self.inner.timeout);
            }
            // The backtrace names the guest's functions; it goes to the log, the short
            // message into the failure (and the dead letter).
            tracing::debug!(
                function = %log.function,
                event_id = %log.event_id,
                "guest trap: {error:?}"
            );
            return Failure::Trap(trap.to_string());
        }
        Failure::Trap(format!("{error:#}"))
    }
}

fn log_failure<T>(log: &LogContext, result: &Result<T, Failure>) {
    if let Err(failure) = result {
        tracing::warn!(
            function = %log.function,
            event_id = %log.event_id,
            reason = failure.reason(),
            retryable = failure.is_retryable(),
            "handler failed: {failure}"
        );
    }
}

/// A guest that computes gives its thread back at every epoch tick (10 ms), so other
/// invocations on the same executor thread keep running; once `ticks` have passed it traps
/// (the timeout).
fn arm_deadline<T: 'static>(store: &mut Store<T>, ticks: Option<u64>) {
    if let Some(ticks) = ticks {
        let mut left = ticks;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            left = left.saturating_sub(1);
            if left == 0 {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
    }
}

/// The epoch deadline stops a guest that computes; this stops one that waits in the host
/// (a sleep, a slow HTTP response), where no epoch check runs.
async fn with_timeout<F: Future>(limit: Duration, fut: F) -> Result<F::Output, ()> {
    tokio::time::timeout(limit, fut).await.map_err(|_| ())
}

/// Fills what a reply may leave out, carries the trace context, and validates.
pub(crate) fn finish_replies(
    mut replies: Vec<CloudEvent>,
    input: &CloudEvent,
    source: &str,
) -> Result<Vec<CloudEvent>, Failure> {
    let trace = ["traceparent", "tracestate"].map(|k| (k, input.extensions.get(k)));
    for (i, reply) in replies.iter_mut().enumerate() {
        reply.fill_reply_defaults(source);
        if !reply.extensions.contains_key("traceparent") {
            for (k, v) in &trace {
                if let Some(v) = v {
                    reply.extensions.insert((*k).to_owned(), (*v).clone());
                }
            }
        }
        reply
            .validate()
            .map_err(|e| Failure::InvalidReply(format!("reply {i}: {e}")))?;
    }
    Ok(replies)
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("function", &self.inner.label)
            .field("digest", &self.inner.digest)
            .field("abi", &self.inner.abi)
            .field("timeout", &fmt_duration(self.inner.timeout))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_event::Extension;

    #[test]
    fn replies_get_defaults_and_trace_context() {
        let mut input = CloudEvent::new("in-1", "/shop", "com.example.order.paid");
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        input
            .extensions
            .insert("traceparent".into(), Extension::String(tp.into()));
        let mut own = CloudEvent::new("r2", "/x", "b");
        own.extensions
            .insert("traceparent".into(), Extension::String("00-own".into()));
        let out = finish_replies(
            vec![CloudEvent::new("", "", "a"), own],
            &input,
            "sluice://shop/invoice",
        )
        .unwrap();
        assert!(!out[0].id.is_empty());
        assert_eq!(out[0].source, "sluice://shop/invoice");
        assert!(out[0].time.is_some());
        assert_eq!(out[0].extension("traceparent").as_deref(), Some(tp));
        assert_eq!(out[1].extension("traceparent").as_deref(), Some("00-own"));
        assert_eq!(out[1].source, "/x");
    }

    #[test]
    fn invalid_reply_is_typed() {
        let input = CloudEvent::new("1", "/s", "t");
        let err = finish_replies(vec![CloudEvent::new("", "", "")], &input, "s").unwrap_err();
        assert_eq!(err.reason(), "invalid_reply");
        assert!(err.to_string().contains("reply 0: type"), "{err}");
        let mut bad = CloudEvent::new("", "", "t");
        bad.extensions
            .insert("Bad-Name".into(), Extension::String("x".into()));
        assert!(finish_replies(vec![bad], &input, "s").is_err());
    }

    #[test]
    fn from_spec_takes_limits_and_grants() {
        let spec: sluice_api::FunctionSpec = serde_json::from_value(serde_json::json!({
            "module": {"path": "x.wasm"},
            "abi": "command",
            "limits": {"memory": "32Mi", "timeout": "2s", "output": "4Ki"},
            "capabilities": {"outboundHosts": ["api.example.com"]}
        }))
        .unwrap();
        let cfg = HandlerConfig::from_spec("shop", "inv", &spec, vec![("A".into(), "1".into())]);
        assert_eq!(cfg.abi, Some(Abi::Command));
        assert_eq!(cfg.memory, 32 << 20);
        assert_eq!(cfg.timeout, Duration::from_secs(2));
        assert_eq!(cfg.output, 4096);
        assert_eq!(cfg.outbound_hosts, ["api.example.com"]);
        assert_eq!(cfg.env, [("A".to_string(), "1".to_string())]);
    }
}
