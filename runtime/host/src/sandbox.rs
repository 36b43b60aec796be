//! The per-invocation sandbox: store state for both ABIs, the memory limiter, WASI contexts
//! with nothing granted beyond `spec.env`, and the outbound HTTP gate. The linkers that
//! instantiate guests against this state are in `linker`.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::failure::{Failure, fmt_bytes};
use crate::outbound::{self, HostPattern};
use crate::output::{Budget, GuestOutput};
use crate::record::{LogContext, Violations};

/// Most elements one table may grow to. Guests need a few thousand (function tables of
/// interpreters); the cap keeps a runaway `table.grow` from taking host memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Resource handles one instance may hold open (streams, HTTP bodies…), so a guest creating
/// handles in a loop meets a limit rather than host memory exhaustion.
const MAX_RESOURCES: usize = 10_000;

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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

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
}
