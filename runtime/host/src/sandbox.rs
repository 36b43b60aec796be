//! The per-invocation sandbox: store state for both ABIs, the memory limiter, the record of
//! what the guest tried and was refused, WASI contexts with nothing granted beyond `spec.env`,
//! and the linkers (built once per engine) that deny sockets and gate outbound HTTP.

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::failure::{Failure, fmt_bytes};
use crate::outbound::{self, HostPattern};
use crate::output::{Budget, GuestOutput};

/// Most elements one table may grow to. Guests need a few thousand (function tables of
/// interpreters); the cap keeps a runaway `table.grow` from taking host memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Resource handles one instance may hold open (streams, HTTP bodies…), so a guest creating
/// handles in a loop meets a limit rather than host memory exhaustion.
const MAX_RESOURCES: usize = 10_000;

/// Who is running, for every log record and refusal message of one invocation.
#[derive(Clone, Debug)]
pub(crate) struct LogContext {
    pub(crate) function: Arc<str>,
    pub(crate) event_id: Arc<str>,
}

impl LogContext {
    pub(crate) fn new(function: &str, event_id: &str) -> Self {
        Self {
            function: function.into(),
            event_id: event_id.into(),
        }
    }

    /// One line of guest stderr (or a component's stdout), with an optional level prefix.
    pub(crate) fn guest_line(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return;
        }
        let (level, msg) = split_level(line);
        self.guest_log(level, msg);
    }

    pub(crate) fn guest_log(&self, level: tracing::Level, msg: &str) {
        let (function, event_id) = (&*self.function, &*self.event_id);
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "sluice::guest", function, event_id, "{msg}")
            }
            tracing::Level::TRACE => {
                tracing::trace!(target: "sluice::guest", function, event_id, "{msg}")
            }
        }
    }
}

/// `error: disk full` → (ERROR, "disk full"); no known prefix → INFO and the whole line.
pub(crate) fn split_level(line: &str) -> (tracing::Level, &str) {
    for (prefix, level) in [
        ("error:", tracing::Level::ERROR),
        ("warn:", tracing::Level::WARN),
        ("info:", tracing::Level::INFO),
        ("debug:", tracing::Level::DEBUG),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return (level, rest.trim_start());
        }
    }
    (tracing::Level::INFO, line)
}

/// The first limit or grant the guest ran into during one invocation. It explains a failure
/// that follows (a Rust guest whose allocation was refused aborts with `unreachable`; we
/// report `memory_limit`, not `trap`). A guest that recovers and succeeds is not failed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Violations(Arc<Mutex<Option<Failure>>>);

impl Violations {
    pub(crate) fn record(&self, failure: Failure) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(failure);
    }

    pub(crate) fn take(&self) -> Option<Failure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// `spec.limits.memory` over all linear memories of one instance.
pub(crate) struct MemoryCap {
    cap: u64,
    used: u64,
    violations: Violations,
    log: LogContext,
}

impl MemoryCap {
    pub(crate) fn new(cap: u64, violations: Violations, log: LogContext) -> Self {
        Self {
            cap,
            used: 0,
            violations,
            log,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = (self.used + desired as u64).saturating_sub(current as u64);
        if next > self.cap {
            tracing::warn!(
                function = %self.log.function,
                event_id = %self.log.event_id,
                "refused memory growth to {} bytes: spec.limits.memory is {}",
                next,
                fmt_bytes(self.cap)
            );
            self.violations.record(Failure::MemoryLimit(self.cap));
            return Ok(false);
        }
        self.used = next;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            tracing::warn!(
                function = %self.log.function,
                event_id = %self.log.event_id,
                "refused table growth to {desired} elements (at most {MAX_TABLE_ELEMENTS})"
            );
            return Ok(false);
        }
        Ok(true)
    }
}

/// What every invocation's WASI context is built from.
pub(crate) struct Io {
    pub(crate) env: Arc<[(String, String)]>,
    pub(crate) stdin: bytes::Bytes,
    pub(crate) stdout: GuestOutput,
    pub(crate) stderr: GuestOutput,
    pub(crate) argv0: Arc<str>,
}

/// A WASI context granting nothing but `spec.env` and the given stdio: no preopened
/// directories, no host environment, no sockets (address check denies, no name lookup).
fn wasi_builder(io: Io) -> WasiCtxBuilder {
    let mut b = WasiCtxBuilder::new();
    b.envs(&io.env)
        .arg(&*io.argv0)
        .stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(io.stdin))
        .stdout(io.stdout)
        .stderr(io.stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    b
}

/// Store state of a component (either ABI): WASI p2, wasi:http, the `log` import.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: Outbound,
    pub(crate) limits: MemoryCap,
    pub(crate) log: LogContext,
    pub(crate) budget: Arc<Budget>,
    pub(crate) violations: Violations,
}

impl ComponentState {
    pub(crate) fn new(
        io: Io,
        outbound: Outbound,
        limits: MemoryCap,
        log: LogContext,
        budget: Arc<Budget>,
        violations: Violations,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: wasi_builder(io).build(),
            table,
            http: WasiHttpCtx::new(),
            hooks: outbound,
            limits,
            log,
            budget,
            violations,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Store state of a WASI preview 1 command.
pub(crate) struct P1State {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limits: MemoryCap,
}

impl P1State {
    pub(crate) fn new(io: Io, limits: MemoryCap) -> Self {
        Self {
            wasi: wasi_builder(io).build_p1(),
            limits,
        }
    }
}

/// The outbound-HTTP gate: requests go out only to `capabilities.outboundHosts`.
pub(crate) struct Outbound {
    pub(crate) allowed: Arc<[HostPattern]>,
    pub(crate) violations: Violations,
    pub(crate) log: LogContext,
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let authority = uri.authority().map(|a| a.as_str().to_owned());
        let permitted = authority
            .as_deref()
            .is_some_and(|a| outbound::allowed(&self.allowed, a, default_port));
        if !permitted {
            let what = format!(
                "outbound HTTP to {} (not in capabilities.outboundHosts)",
                authority.as_deref().unwrap_or("a request without a host")
            );
            tracing::warn!(function = %self.log.function, event_id = %self.log.event_id, "refused {what}");
            self.violations.record(Failure::Denied(what));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The typed error a denied sandbox call traps with.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DeniedCall(pub(crate) String);

/// WASI p2 socket factories, replaced by functions that trap with `denied`: no Sluice handler
/// may open a socket (outbound HTTP goes through wasi:http), and trapping at once makes the
/// attempt visible as a typed failure instead of an error code the guest may swallow.
const DENIED_SOCKET_CALLS: [(&str, &str); 3] = [
    ("wasi:sockets/tcp-create-socket@0.2.12", "create-tcp-socket"),
    ("wasi:sockets/udp-create-socket@0.2.12", "create-udp-socket"),
    ("wasi:sockets/ip-name-lookup@0.2.12", "resolve-addresses"),
];

/// The linker every component (handler or p2 command) is instantiated through.
pub(crate) fn component_linker(
    engine: &wasmtime::Engine,
) -> wasmtime::Result<wasmtime::component::Linker<ComponentState>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    // Includes `wasi:cli/exit#exit-with-code` (stable since 0.2.12), so p2 commands can exit 65.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::component::add_to_linker(&mut linker)?;
    linker.allow_shadowing(true);
    for (instance, func) in DENIED_SOCKET_CALLS {
        let what = format!("{instance}#{func} (sockets are never granted)");
        linker
            .instance(instance)?
            .func_new(func, move |store, _ty, _params, _results| {
                let log = &store.data().log;
                tracing::warn!(function = %log.function, event_id = %log.event_id, "refused {what}");
                Err(wasmtime::Error::new(DeniedCall(what.clone())))
            })?;
    }
    linker.allow_shadowing(false);
    Ok(linker)
}

/// The linker every WASI preview 1 command is instantiated through. Preview 1 cannot create
/// sockets; its `sock_*` calls on inherited sockets trap with `denied` for the same reason as
/// above.
pub(crate) fn p1_linker(engine: &wasmtime::Engine) -> wasmtime::Result<wasmtime::Linker<P1State>> {
    const M: &str = "wasi_snapshot_preview1";
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut P1State| &mut s.wasi)?;
    linker.allow_shadowing(true);
    let deny = |name: &str| {
        wasmtime::Error::new(DeniedCall(format!(
            "{M}::{name} (sockets are never granted)"
        )))
    };
    linker.func_wrap(
        M,
        "sock_accept",
        move |_: i32, _: i32, _: i32| -> wasmtime::Result<i32> { Err(deny("sock_accept")) },
    )?;
    linker.func_wrap(
        M,
        "sock_recv",
        move |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
            Err(deny("sock_recv"))
        },
    )?;
    linker.func_wrap(
        M,
        "sock_send",
        move |_: i32, _: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
            Err(deny("sock_send"))
        },
    )?;
    linker.func_wrap(
        M,
        "sock_shutdown",
        move |_: i32, _: i32| -> wasmtime::Result<i32> { Err(deny("sock_shutdown")) },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn level_prefixes() {
        assert_eq!(split_level("error: boom"), (tracing::Level::ERROR, "boom"));
        assert_eq!(split_level("warn:x"), (tracing::Level::WARN, "x"));
        assert_eq!(split_level("debug: d"), (tracing::Level::DEBUG, "d"));
        assert_eq!(split_level("plain"), (tracing::Level::INFO, "plain"));
        assert_eq!(split_level("Error: x"), (tracing::Level::INFO, "Error: x"));
    }

    #[test]
    fn memory_cap_counts_all_memories_and_records_refusal() {
        let v = Violations::default();
        let mut cap = MemoryCap::new(100, v.clone(), LogContext::new("a/b", "e"));
        assert!(cap.memory_growing(0, 60, None).unwrap());
        assert!(cap.memory_growing(0, 30, None).unwrap());
        assert!(v.take().is_none());
        assert!(!cap.memory_growing(30, 50, None).unwrap());
        assert_eq!(v.take(), Some(Failure::MemoryLimit(100)));
        assert!(cap.memory_growing(30, 40, None).unwrap());
    }

    #[test]
    fn first_violation_wins() {
        let v = Violations::default();
        v.record(Failure::MemoryLimit(1));
        v.record(Failure::OutputLimit(2));
        assert_eq!(v.take(), Some(Failure::MemoryLimit(1)));
        assert_eq!(v.take(), None);
    }
}
