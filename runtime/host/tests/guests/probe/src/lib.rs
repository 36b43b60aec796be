//! A component handler whose behaviour is chosen by the event type: well-behaved cases for the
//! host's happy paths and hostile ones (loops, bombs, floods, forbidden calls) for its limits.

wit_bindgen::generate!({ path: "../../../../wit", world: "handler" });

use sluice::function::log::{Level, log};

struct Probe;

fn reply(ty: &str, data: Option<Vec<u8>>) -> Event {
    Event {
        id: String::new(),
        source: String::new(),
        type_: ty.into(),
        subject: None,
        time: None,
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions: vec![],
        data,
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64, buf: &mut [u8; 64]) -> u64 {
    buf[(n % 64) as usize] = n as u8;
    let mut local = [0u8; 64];
    local.copy_from_slice(buf);
    recurse(n + 1, &mut local) + local[3] as u64
}

fn http_get(authority: &str) -> Result<u16, String> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&Scheme::Http)).map_err(|_| "scheme")?;
    req.set_authority(Some(authority))
        .map_err(|_| "authority")?;
    req.set_path_with_query(Some("/")).map_err(|_| "path")?;
    let fut = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    fut.subscribe().block();
    let resp = fut
        .get()
        .ok_or("no response")?
        .map_err(|_| "taken")?
        .map_err(|e| format!("{e:?}"))?;
    Ok(resp.status())
}

/// The values of `"key":"…"` in `text`, in order (the batch's events are written by the host
/// with sorted keys, so the n-th `id` and the n-th `type` are one event's).
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let pat = format!("\"{key}\":\"");
    text.split(pat.as_str())
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// A batch: one `test.batch` reply listing the ids, and the items of type `fail` (retryable)
/// and `fatal` named as failed; an item of type `crash` fails the whole batch, one of type
/// `stranger` names an id the batch does not have.
fn batch(data: &str) -> Result<Vec<Event>, Error> {
    let (ids, types) = (values(data, "id"), values(data, "type"));
    let mut failures = Vec::new();
    for (id, ty) in ids.iter().zip(&types) {
        match *ty {
            "crash" => return Err(Error::Retryable("the whole batch failed".into())),
            "fail" => failures.push(format!(
                "{{\"itemIdentifier\":{},\"reason\":\"try later\"}}",
                json_string(id)
            )),
            "fatal" => failures.push(format!(
                "{{\"itemIdentifier\":{},\"retryable\":false}}",
                json_string(id)
            )),
            "stranger" => failures.push("{\"itemIdentifier\":\"nobody\"}".into()),
            _ => {}
        }
    }
    let listed: Vec<String> = ids.iter().map(|id| json_string(id)).collect();
    Ok(vec![
        reply(
            "test.batch",
            Some(format!("{{\"ids\":[{}]}}", listed.join(",")).into_bytes()),
        ),
        reply(
            "dev.sluice.batch.response",
            Some(format!("{{\"batchItemFailures\":[{}]}}", failures.join(",")).into_bytes()),
        ),
    ])
}

impl Guest for Probe {
    fn handle(event: Event) -> Result<Vec<Event>, Error> {
        let data = event
            .data
            .as_deref()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default();
        match event.type_.as_str() {
            "dev.sluice.batch" => batch(&data),
            // The benchmark's minimal handler: no logging, one tiny reply.
            "noop" => Ok(vec![reply("test.noop", None)]),
            "ok" => {
                log(Level::Info, &format!("handling {}", event.id));
                eprintln!("warn: from stderr");
                Ok(vec![reply("test.ok", event.data.clone())])
            }
            "env" => {
                let vars: Vec<String> = std::env::vars()
                    .map(|(k, v)| format!("{}:{}", json_string(&k), json_string(&v)))
                    .collect();
                Ok(vec![reply(
                    "test.env",
                    Some(format!("{{{}}}", vars.join(",")).into_bytes()),
                )])
            }
            "defaults" => {
                let mut own = reply("test.own", None);
                own.id = "own-id".into();
                own.source = "/own".into();
                own.extensions = vec![("traceparent".into(), "00-own".into())];
                Ok(vec![reply("test.defaulted", None), own])
            }
            "invalid" => Ok(vec![reply("", None)]),
            "retryable" => Err(Error::Retryable("database down".into())),
            "fatal" => Err(Error::Fatal("order has no items".into())),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(vec![])
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let mut buf = [0u8; 64];
                Ok(vec![reply(
                    "test.never",
                    Some(recurse(0, &mut buf).to_string().into_bytes()),
                )])
            }
            "stdout" => {
                use std::io::Write;
                let line = [b'x'; 1023];
                let mut out = std::io::stdout().lock();
                for _ in 0..(100 * 1024) {
                    out.write_all(&line).expect("stdout");
                    out.write_all(b"\n").expect("stdout");
                }
                Ok(vec![])
            }
            "file" => {
                let text = std::fs::read_to_string(&data).expect("reading a host file");
                Ok(vec![reply(
                    "test.leak",
                    Some(json_string(&text).into_bytes()),
                )])
            }
            "socket" => {
                let s = std::net::TcpStream::connect(data.as_str()).expect("connecting");
                drop(s);
                Ok(vec![reply("test.leak", None)])
            }
            "http" => match http_get(&data) {
                Ok(status) => Ok(vec![reply(
                    "test.http",
                    Some(status.to_string().into_bytes()),
                )]),
                Err(e) => Err(Error::Retryable(format!("http: {e}"))),
            },
            other => Err(Error::Fatal(format!("unknown probe {other}"))),
        }
    }
}

export!(Probe);
