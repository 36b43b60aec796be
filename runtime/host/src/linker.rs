//! The linkers (built once per engine) every guest is instantiated through: WASI, wasi:http
//! gated by the Function's outbound grants, Sluice's component interface, and socket calls
//! that trap with `denied`.

use crate::sandbox::{ComponentState, P1State};

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
