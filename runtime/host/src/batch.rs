//! Batches (a Trigger's `delivery.batch`): several events in one invocation. The handler gets a
//! CloudEvents batch, a JSON array of events in structured form
//! (`application/cloudevents-batch+json`): a command on stdin as it is, a component as the
//! `data` of one event of type [`BATCH_TYPE`]. It names the items that failed the way AWS Lambda's partial batch responses
//! do, `{"batchItemFailures": [{"itemIdentifier": "<event id>"}]}`: a command as a line of its
//! stdout, a component as the data of a reply of type [`RESPONSE_TYPE`]. Every item it does
//! not name succeeded.

use serde_json::Value;
use sluice_event::{CloudEvent, Extension};

use crate::failure::Failure;

/// The type of the event a component receives a batch in.
pub const BATCH_TYPE: &str = "dev.sluice.batch";
/// The media type of a CloudEvents batch.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// The type of the reply in which a component names the items that failed. It is never
/// published.
pub const RESPONSE_TYPE: &str = "dev.sluice.batch.response";

/// A batch invocation that ran: the replies to publish and the items that failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOutcome {
    pub replies: Vec<CloudEvent>,
    pub failed: Vec<ItemFailure>,
}

/// An item the handler reported as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFailure {
    /// Position of the item in the batch.
    pub index: usize,
    /// Whether another attempt can help (`"retryable": false` in the response: no).
    pub retryable: bool,
    /// The handler's `reason`, or a default naming the batch.
    pub message: String,
}

/// The batch as the JSON array the handler reads.
pub(crate) fn json_array(items: &[&CloudEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + items.iter().map(|e| e.size() + 128).sum::<usize>());
    out.push(b'[');
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.to_json());
    }
    out.push(b']');
    out
}

/// The one event a component receives a batch in. Its id names the batch's first event and
/// size (`batch-3-of-o-17`), so the logs of the invocation say which events it held; it carries
/// the first event's trace context.
pub(crate) fn envelope(items: &[&CloudEvent], json: Vec<u8>, source: &str) -> CloudEvent {
    let first = items.first().map_or("", |e| e.id.as_str());
    let mut e = CloudEvent::new(
        format!("batch-{}-of-{first}", items.len()),
        source,
        BATCH_TYPE,
    );
    e.datacontenttype = Some(BATCH_CONTENT_TYPE.into());
    e.data = Some(json);
    if let Some(first) = items.first() {
        for k in ["traceparent", "tracestate"] {
            if let Some(v) = first.extensions.get(k) {
                e.extensions.insert(k.into(), v.clone());
            }
        }
    }
    e.extensions.insert(
        "sluicebatchsize".into(),
        Extension::Integer(items.len() as i64),
    );
    e
}

/// Splits a batch's replies into the ones to publish and the item failures the handler
/// reported (at most one response). An identifier that names no item fails the whole batch,
/// as Lambda does: the handler's view of the batch is not the one it was given.
pub(crate) fn split_response(
    replies: Vec<CloudEvent>,
    items: &[&CloudEvent],
) -> Result<BatchOutcome, Failure> {
    let mut out = BatchOutcome::default();
    let mut seen = false;
    for r in replies {
        if r.ty != RESPONSE_TYPE {
            out.replies.push(r);
            continue;
        }
        if std::mem::replace(&mut seen, true) {
            return Err(Failure::InvalidReply(
                "more than one batchItemFailures response".into(),
            ));
        }
        let value: Value = r
            .data
            .as_deref()
            .map(serde_json::from_slice)
            .transpose()
            .map_err(|e| Failure::InvalidReply(format!("batch response: not JSON: {e}")))?
            .unwrap_or(Value::Null);
        out.failed = item_failures(&value, items).map_err(Failure::InvalidReply)?;
    }
    Ok(out)
}

/// `{"batchItemFailures": [{"itemIdentifier", "retryable"?, "reason"?}]}` as item failures.
fn item_failures(value: &Value, items: &[&CloudEvent]) -> Result<Vec<ItemFailure>, String> {
    let Some(list) = value.get("batchItemFailures").and_then(Value::as_array) else {
        return Err("batch response: batchItemFailures must be a list".into());
    };
    let mut out: Vec<ItemFailure> = Vec::new();
    for (n, entry) in list.iter().enumerate() {
        let at = format!("batchItemFailures[{n}]");
        let Some(id) = entry.get("itemIdentifier").and_then(Value::as_str) else {
            return Err(format!(
                "{at}.itemIdentifier must be the id of an event in the batch"
            ));
        };
        let retryable = match entry.get("retryable") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(format!("{at}.retryable must be true or false")),
        };
        let message = match entry.get("reason") {
            None | Some(Value::Null) => "failed in its batch".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("{at}.reason must be a string")),
        };
        // Ids are unique per source, not per batch: every item with this id failed.
        let mut matched = false;
        for (index, e) in items.iter().enumerate() {
            if e.id == id {
                matched = true;
                match out.iter_mut().find(|f| f.index == index) {
                    // Named twice: fatal wins, the first reason stays.
                    Some(f) => f.retryable &= retryable,
                    None => out.push(ItemFailure {
                        index,
                        retryable,
                        message: message.clone(),
                    }),
                }
            }
        }
        if !matched {
            return Err(format!(
                "{at}.itemIdentifier {id:?} is not the id of an event in the batch"
            ));
        }
    }
    out.sort_by_key(|f| f.index);
    Ok(out)
}

/// A command's stdout line that is a batch response rather than a reply event: an object with
/// `batchItemFailures` and no `type`. It becomes a [`RESPONSE_TYPE`] reply so both ABIs end in
/// [`split_response`].
pub(crate) fn response_line(value: &Value, source: &str) -> Option<CloudEvent> {
    let obj = value.as_object()?;
    if !obj.contains_key("batchItemFailures") || obj.contains_key("type") {
        return None;
    }
    let mut e = CloudEvent::new("-", source, RESPONSE_TYPE);
    e.datacontenttype = Some("application/json".into());
    e.data = Some(value.to_string().into_bytes());
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str) -> CloudEvent {
        CloudEvent::new(id, "/s", "t").with_json_data(&json!({"id": id}))
    }

    fn response(v: Value) -> CloudEvent {
        response_line(&v, "s").expect("a response line")
    }

    #[test]
    fn the_array_is_the_events_in_structured_form() {
        let (a, b) = (ev("a"), ev("b"));
        let json = json_array(&[&a, &b]);
        let back = sluice_event::from_batch_json(&json).unwrap();
        assert_eq!(back, vec![a.clone(), b.clone()]);
        assert_eq!(json_array(&[]), b"[]");
        let env = envelope(&[&a, &b], json.clone(), "sluice://ns/f");
        assert_eq!(env.id, "batch-2-of-a");
        assert_eq!(env.ty, BATCH_TYPE);
        assert_eq!(env.datacontenttype.as_deref(), Some(BATCH_CONTENT_TYPE));
        assert_eq!(env.data.as_deref(), Some(&json[..]));
        assert!(env.validate().is_ok());
    }

    #[test]
    fn failures_name_items_by_id() {
        let (a, b, c) = (ev("a"), ev("b"), ev("a"));
        let items = [&a, &b, &c];
        let replies = vec![
            CloudEvent::new("r", "/f", "done"),
            response(json!({"batchItemFailures": [
                {"itemIdentifier": "a", "reason": "no stock"},
                {"itemIdentifier": "b", "retryable": false},
            ]})),
        ];
        let out = split_response(replies, &items).unwrap();
        assert_eq!(out.replies.len(), 1);
        assert_eq!(out.replies[0].ty, "done");
        assert_eq!(
            out.failed,
            vec![
                ItemFailure {
                    index: 0,
                    retryable: true,
                    message: "no stock".into()
                },
                ItemFailure {
                    index: 1,
                    retryable: false,
                    message: "failed in its batch".into()
                },
                ItemFailure {
                    index: 2,
                    retryable: true,
                    message: "no stock".into()
                },
            ]
        );
        let none = split_response(vec![response(json!({"batchItemFailures": []}))], &items);
        assert_eq!(none.unwrap(), BatchOutcome::default());
    }

    #[test]
    fn a_response_that_does_not_fit_the_batch_fails_it_naming_the_entry() {
        let a = ev("a");
        let bad = |v: Value| {
            split_response(vec![response(v)], &[&a])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(json!({"batchItemFailures": [{"itemIdentifier": "zz"}]})),
            "invalid reply: batchItemFailures[0].itemIdentifier \"zz\" is not the id of an event in the batch"
        );
        assert!(bad(json!({"batchItemFailures": {}})).contains("must be a list"));
        assert!(
            bad(json!({"batchItemFailures": [{"itemIdentifier": "a", "retryable": "no"}]}))
                .contains("batchItemFailures[0].retryable")
        );
        assert!(bad(json!({"batchItemFailures": [{"id": "a"}]})).contains("[0].itemIdentifier"));
        let twice = split_response(
            vec![
                response(json!({"batchItemFailures": []})),
                response(json!({"batchItemFailures": []})),
            ],
            &[&a],
        );
        assert!(twice.unwrap_err().to_string().contains("more than one"));
    }

    #[test]
    fn only_objects_without_a_type_are_responses() {
        assert!(response_line(&json!({"batchItemFailures": []}), "s").is_some());
        assert!(response_line(&json!({"type": "x", "batchItemFailures": []}), "s").is_none());
        assert!(response_line(&json!({"type": "x"}), "s").is_none());
        assert!(response_line(&json!([1]), "s").is_none());
    }
}
