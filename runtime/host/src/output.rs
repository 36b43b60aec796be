//! Guest stdout/stderr: bounded by `spec.limits.output` (one budget for both streams), and
//! either captured (a command's stdout carries its replies) or turned into log records, one per
//! line, tagged with the function and event id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::failure::Failure;
use crate::record::{LogContext, Violations};

/// Most bytes one `check-write` grants. Not the remaining budget: a guest told "0 bytes" would
/// wait forever for readiness, while a write past the budget fails it at once.
const WRITE_PERMIT: usize = 64 * 1024;

/// Bytes written so far against `spec.limits.output`, shared by stdout and stderr.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    pub(crate) fn take(&self, n: usize) -> bool {
        let n = n as u64;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sink {
    /// Keep the bytes: a command's stdout.
    Capture,
    /// Log each line, with `error:`/`warn:`/`info:`/`debug:` prefixes setting the level.
    Log,
}

/// One guest output stream. Clones share the buffer, so the host reads what the guest wrote.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    sink: Sink,
    buf: Arc<Mutex<Vec<u8>>>,
    budget: Arc<Budget>,
    violations: Violations,
    log: LogContext,
    /// The last `error:` line logged, the reason a command gives for its exit status.
    last_error: Arc<Mutex<Option<String>>>,
}

/// Longest `error:` line kept as a failure's reason: it travels in the dead letter.
const MAX_REASON: usize = 512;

impl GuestOutput {
    pub(crate) fn new(
        sink: Sink,
        budget: Arc<Budget>,
        violations: Violations,
        log: LogContext,
    ) -> Self {
        Self {
            sink,
            buf: Arc::default(),
            budget,
            violations,
            log,
            last_error: Arc::default(),
        }
    }

    fn line(&self, line: &[u8]) {
        if let Some(mut msg) = self.log.guest_line(line) {
            if msg.len() > MAX_REASON {
                let cut = (0..=MAX_REASON)
                    .rev()
                    .find(|i| msg.is_char_boundary(*i))
                    .unwrap_or(0);
                msg.truncate(cut);
                msg.push('…');
            }
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
        }
    }

    /// The last `error:` line the guest wrote here, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn push(&self, bytes: &[u8]) -> StreamResult<()> {
        if !self.budget.take(bytes.len()) {
            self.violations
                .record(Failure::OutputLimit(self.budget.limit));
            tracing::warn!(
                function = %self.log.function,
                event_id = %self.log.event_id,
                limit = self.budget.limit,
                "guest output exceeds spec.limits.output; stopping the instance"
            );
            return Err(StreamError::trap("output limit exceeded"));
        }
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        if self.sink == Sink::Log {
            // Emit every complete line now, so a hung guest's logs are visible before its
            // timeout; keep the unterminated tail for the next write or `finish`.
            if let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') {
                let rest = buf.split_off(last_nl + 1);
                for line in buf.split(|b| *b == b'\n') {
                    self.line(line);
                }
                *buf = rest;
            }
        }
        Ok(())
    }

    /// Logs an unterminated last line; returns the captured bytes (empty for a log sink).
    pub(crate) fn finish(&self) -> Vec<u8> {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = std::mem::take(&mut *buf);
        match self.sink {
            Sink::Capture => bytes,
            Sink::Log => {
                if !bytes.is_empty() {
                    self.line(&bytes);
                }
                Vec::new()
            }
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(
            self.push(buf)
                .map(|()| buf.len())
                .map_err(|_| std::io::Error::other("output limit exceeded")),
        )
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(sink: Sink, limit: u64) -> (GuestOutput, Violations) {
        let v = Violations::default();
        let log = LogContext::new("ns/fn", "ev-1");
        (
            GuestOutput::new(sink, Budget::new(limit), v.clone(), log),
            v,
        )
    }

    #[test]
    fn capture_keeps_bytes_within_budget() {
        let (mut o, v) = out(Sink::Capture, 10);
        o.write(Bytes::from_static(b"hello\n")).unwrap();
        o.write(Bytes::from_static(b"four")).unwrap();
        assert_eq!(o.finish(), b"hello\nfour");
        assert!(v.take().is_none());
    }

    #[test]
    fn exceeding_the_shared_budget_is_an_output_limit() {
        let v = Violations::default();
        let budget = Budget::new(8);
        let log = LogContext::new("ns/fn", "ev-1");
        let mut stdout = GuestOutput::new(Sink::Capture, budget.clone(), v.clone(), log.clone());
        let mut stderr = GuestOutput::new(Sink::Log, budget, v.clone(), log);
        stdout.write(Bytes::from_static(b"12345")).unwrap();
        assert!(stderr.write(Bytes::from_static(b"6789")).is_err());
        assert_eq!(v.take(), Some(Failure::OutputLimit(8)));
    }

    #[test]
    fn log_sink_keeps_nothing() {
        let (mut o, _) = out(Sink::Log, 100);
        o.write(Bytes::from_static(b"warn: a\npartial")).unwrap();
        assert!(o.finish().is_empty());
        assert!(o.buf.lock().unwrap().is_empty());
    }
}
