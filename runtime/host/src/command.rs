//! The `command` ABI: a WASI program (preview 1 core module with `_start`, or preview 2
//! component exporting `wasi:cli/run`) that reads the event as JSON on stdin and writes reply
//! events as JSON lines on stdout. Exit 0 succeeds, 65 (EX_DATAERR) is fatal, any other
//! status is retryable.

use serde_json::Value;
use sluice_event::CloudEvent;
use wasmtime_wasi::I32Exit;

use crate::failure::Failure;
use crate::sandbox::{ComponentState, P1State};

/// `sysexits.h` EX_DATAERR: the input data was incorrect; retrying cannot help.
pub const EXIT_FATAL: i32 = 65;

/// Runs `_start`; returns the exit status.
pub(crate) async fn run_p1(
    pre: &wasmtime::InstancePre<P1State>,
    store: &mut wasmtime::Store<P1State>,
) -> wasmtime::Result<i32> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
    exit_status(start.call_async(&mut *store, ()).await)
}

/// Runs `wasi:cli/run`; returns the exit status.
pub(crate) async fn run_p2(
    pre: &wasmtime_wasi::p2::bindings::CommandPre<ComponentState>,
    store: &mut wasmtime::Store<ComponentState>,
) -> wasmtime::Result<i32> {
    let command = pre.instantiate_async(&mut *store).await?;
    match command.wasi_cli_run().call_run(&mut *store).await {
        Ok(Ok(())) => Ok(0),
        // `run` returning `err` is what `exit(1)` looks like without exit-with-code.
        Ok(Err(())) => Ok(1),
        Err(e) => exit_status(Err(e)),
    }
}

/// `proc_exit(n)` / `exit-with-code(n)` unwind as an `I32Exit` error; that is a status,
/// not a trap.
fn exit_status(r: wasmtime::Result<()>) -> wasmtime::Result<i32> {
    match r {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(*code),
            None => Err(e),
        },
    }
}

/// What an exit status means. The reason is the last `error:` line the command wrote to
/// stderr, so a dead letter says why (`data.name: missing`), not only `exit status 65`.
pub(crate) fn status_failure(code: i32, reason: Option<String>) -> Option<Failure> {
    let why = match reason {
        Some(reason) => format!("{reason} (exit status {code})"),
        None => format!("exit status {code}"),
    };
    match code {
        0 => None,
        EXIT_FATAL => Some(Failure::Fatal(why)),
        _ => Some(Failure::Retryable(why)),
    }
}

/// Reply events from stdout: one JSON object per non-blank line. Only `type` is required;
/// `specversion`, `id` and `source` are filled here or by `finish_replies`. A batch's
/// `batchItemFailures` line comes back as a [`crate::batch::RESPONSE_TYPE`] reply.
pub(crate) fn parse_replies(stdout: &[u8], source: &str) -> Result<Vec<CloudEvent>, Failure> {
    let text = std::str::from_utf8(stdout)
        .map_err(|e| Failure::InvalidReply(format!("stdout is not UTF-8: {e}")))?;
    let mut replies = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad =
            |reason: String| Failure::InvalidReply(format!("stdout line {}: {reason}", n + 1));
        let mut value: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        if let Some(response) = crate::batch::response_line(&value, source) {
            replies.push(response);
            continue;
        }
        let Some(obj) = value.as_object_mut() else {
            return Err(bad("a reply must be a JSON object".into()));
        };
        obj.entry("specversion")
            .or_insert_with(|| sluice_event::SPEC_VERSION.into());
        // Placeholders satisfy the parser's required-attribute check; the real defaults
        // (a fresh id) are filled by `finish_replies`.
        let had_id = obj
            .get("id")
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
        if !had_id {
            obj.insert("id".into(), "-".into());
        }
        if obj.get("source").is_none_or(|v| v.as_str() == Some("")) {
            obj.insert("source".into(), source.into());
        }
        let mut event = CloudEvent::from_json_value(value).map_err(|e| bad(e.to_string()))?;
        if !had_id {
            event.id.clear();
        }
        replies.push(event);
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(status_failure(0, None), None);
        assert!(matches!(status_failure(65, None), Some(Failure::Fatal(_))));
        assert!(matches!(
            status_failure(1, None),
            Some(Failure::Retryable(_))
        ));
        assert_eq!(
            status_failure(65, Some("data.name: missing".into())),
            Some(Failure::Fatal("data.name: missing (exit status 65)".into()))
        );
        assert!(
            matches!(status_failure(101, None), Some(Failure::Retryable(m)) if m == "exit status 101")
        );
    }

    #[test]
    fn replies_need_only_a_type() {
        let out = b"{\"type\":\"a.b\",\"data\":{\"x\":1}}\n\n{\"type\":\"c\",\"id\":\"7\",\"source\":\"/me\"}\n";
        let r = parse_replies(out, "sluice://ns/fn").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].ty, "a.b");
        assert_eq!(r[0].id, "");
        assert_eq!(r[0].source, "sluice://ns/fn");
        assert_eq!(r[0].data.as_deref(), Some(&b"{\"x\":1}"[..]));
        assert_eq!((r[1].id.as_str(), r[1].source.as_str()), ("7", "/me"));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = parse_replies(b"{\"type\":\"a\"}\nnot json\n", "s").unwrap_err();
        assert!(
            matches!(&err, Failure::InvalidReply(m) if m.starts_with("stdout line 2: not JSON")),
            "{err}"
        );
        let err = parse_replies(b"[1]\n", "s").unwrap_err();
        assert!(err.to_string().contains("JSON object"), "{err}");
        let err = parse_replies(b"{\"id\":\"1\"}\n", "s").unwrap_err();
        assert!(err.to_string().contains("type"), "{err}");
        assert!(parse_replies(&[0xff, b'\n'], "s").is_err());
        assert!(parse_replies(b"", "s").unwrap().is_empty());
    }
}
