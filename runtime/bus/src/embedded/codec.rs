//! Byte layouts of the embedded bus's records. Fixed-width headers before the event's JSON
//! keep a queue write to one copy of the event, with no JSON-in-JSON escaping.

use std::sync::Arc;

use sluice_event::CloudEvent;

use crate::BusError;

fn corrupt(what: &str) -> BusError {
    BusError::Storage(format!("corrupt {what} record"))
}

pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str16(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    pub(super) fn str32(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s);
}

pub(super) fn put_str32(out: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u32::MAX as usize)];
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

/// A bus log record: when it was accepted, then the structured-mode event.
pub fn encode_logged(accepted_ms: u64, event_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + event_json.len());
    out.extend_from_slice(&accepted_ms.to_le_bytes());
    out.extend_from_slice(event_json);
    out
}

/// A stored event's JSON (any record's tail).
pub fn decode_event(json: &[u8]) -> Result<CloudEvent, BusError> {
    CloudEvent::from_json(json).map_err(|e| BusError::Storage(format!("stored event: {e}")))
}

/// A bus log record's acceptance time and the event's JSON, undecoded.
pub fn split_logged(b: &[u8]) -> Result<(u64, &[u8]), BusError> {
    let mut r = Reader(b);
    let at = r.u64().ok_or_else(|| corrupt("event"))?;
    Ok((at, r.0))
}

/// Sets the acceptance time of a record made by [`encode_logged`]: the writer stamps it at
/// commit, after the publisher encoded the rest.
pub fn stamp_logged(record: &mut [u8], accepted_ms: u64) {
    if let Some(head) = record.get_mut(..8) {
        head.copy_from_slice(&accepted_ms.to_le_bytes());
    }
}

/// A queue entry as stored: everything needed to rebuild the in-memory queue on restart.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueRecord {
    pub attempts: u32,
    pub not_before: u64,
    pub accepted_ms: u64,
    pub key: Option<String>,
    pub last_error: String,
    pub event: Arc<CloudEvent>,
}

pub fn encode_queued(r: &QueueRecord) -> Vec<u8> {
    encode_queued_json(r, &r.event.to_json())
}

/// [`encode_queued`] with the event's JSON already at hand (the router has the stored bytes).
pub fn encode_queued_json(r: &QueueRecord, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + json.len() + r.last_error.len());
    out.extend_from_slice(&r.attempts.to_le_bytes());
    out.extend_from_slice(&r.not_before.to_le_bytes());
    out.extend_from_slice(&r.accepted_ms.to_le_bytes());
    match &r.key {
        Some(k) => {
            out.push(1);
            put_str16(&mut out, k);
        }
        None => out.push(0),
    }
    put_str32(&mut out, &r.last_error);
    out.extend_from_slice(json);
    out
}

pub fn decode_queued(b: &[u8]) -> Result<QueueRecord, BusError> {
    let mut r = Reader(b);
    let bad = || corrupt("queue");
    let attempts = r.u32().ok_or_else(bad)?;
    let not_before = r.u64().ok_or_else(bad)?;
    let accepted_ms = r.u64().ok_or_else(bad)?;
    let key = match r.take(1).ok_or_else(bad)?[0] {
        0 => None,
        _ => Some(r.str16().ok_or_else(bad)?),
    };
    let last_error = r.str32().ok_or_else(bad)?;
    let event = decode_event(r.0)?;
    Ok(QueueRecord {
        attempts,
        not_before,
        accepted_ms,
        key,
        last_error,
        event: Arc::new(event),
    })
}

/// A dead letter as stored in the per-trigger dead-letter table.
pub fn encode_dead(
    reason: &str,
    attempts: u32,
    at_ms: u64,
    last_error: &str,
    event: &CloudEvent,
) -> Vec<u8> {
    let json = event.to_json();
    let mut out = Vec::with_capacity(32 + json.len());
    out.extend_from_slice(&attempts.to_le_bytes());
    out.extend_from_slice(&at_ms.to_le_bytes());
    put_str16(&mut out, reason);
    put_str32(&mut out, last_error);
    out.extend_from_slice(&json);
    out
}

pub fn decode_dead(b: &[u8]) -> Result<(String, u32, u64, String, CloudEvent), BusError> {
    let mut r = Reader(b);
    let bad = || corrupt("dead-letter");
    let attempts = r.u32().ok_or_else(bad)?;
    let at = r.u64().ok_or_else(bad)?;
    let reason = r.str16().ok_or_else(bad)?;
    let last_error = r.str32().ok_or_else(bad)?;
    let event = decode_event(r.0)?;
    Ok((reason, attempts, at, last_error, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_an_error() {
        let e =
            Arc::new(CloudEvent::new("1", "/s", "t").with_json_data(&serde_json::json!({"a": 1})));
        let q = QueueRecord {
            attempts: 3,
            not_before: 9,
            accepted_ms: 7,
            key: Some("k".into()),
            last_error: "boom".into(),
            event: e.clone(),
        };
        let b = encode_queued(&q);
        assert_eq!(decode_queued(&b).unwrap(), q);
        for cut in [0, 3, 10, 21, 25] {
            assert!(decode_queued(&b[..cut]).is_err(), "cut {cut}");
        }
        let d = encode_dead("exhausted", 8, 5, "trap: unreachable", &e);
        let (reason, attempts, at, err, ev) = decode_dead(&d).unwrap();
        assert_eq!(
            (reason.as_str(), attempts, at, err.as_str(), &ev),
            ("exhausted", 8, 5, "trap: unreachable", &*e)
        );
        let l = encode_logged(42, &e.to_json());
        let (at, json) = split_logged(&l).unwrap();
        assert_eq!((at, decode_event(json).unwrap()), (42, (*e).clone()));
    }
}
