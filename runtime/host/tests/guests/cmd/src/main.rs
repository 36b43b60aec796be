//! A WASI command handler (built for both wasm32-wasip1 and wasm32-wasip2) whose behaviour is
//! chosen by the event type found on stdin: replies, exit statuses, logs and floods.

use std::io::{Read, Write};

/// Exits with `code` as the host sees it (see Cargo.toml for why p2 differs).
fn exit(code: u8) -> ! {
    #[cfg(target_env = "p2")]
    wasip2::cli::exit::exit_with_code(code);
    std::process::exit(code.into())
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

/// A batch on stdin: one `test.batch` reply line listing the ids, then the response line
/// naming the items of type `fail` (retryable) and `fatal`; an item of type `exit65` fails
/// the whole batch with exit status 65.
fn batch(input: &str) {
    let (ids, types) = (values(input, "id"), values(input, "type"));
    let mut failures = Vec::new();
    for (id, ty) in ids.iter().zip(&types) {
        match *ty {
            "exit65" => {
                eprintln!("error: a poisoned batch");
                exit(65);
            }
            "fail" => failures.push(format!("{{\"itemIdentifier\":\"{id}\"}}")),
            "fatal" => failures.push(format!(
                "{{\"itemIdentifier\":\"{id}\",\"retryable\":false,\"reason\":\"bad item\"}}"
            )),
            _ => {}
        }
    }
    let listed: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    println!("{{\"type\":\"test.batch\",\"data\":{{\"ids\":[{}]}}}}", listed.join(","));
    println!("{{\"batchItemFailures\":[{}]}}", failures.join(","));
}

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin");
    if input.starts_with('[') {
        batch(&input);
        return;
    }
    // The probe only needs the type; a substring search keeps the guest dependency-free.
    let ty = input
        .split("\"type\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("");
    match ty {
        "noop" => println!("{{\"type\":\"test.noop\"}}"),
        "ok" => {
            eprintln!("info: got {} bytes", input.len());
            eprintln!("error: just a test");
            println!(
                "{{\"type\":\"test.ok\",\"data\":{{\"len\":{}}}}}",
                input.len()
            );
            println!("{{\"type\":\"test.second\",\"subject\":\"s\"}}");
        }
        "env" => {
            let vars: Vec<String> = std::env::vars()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect();
            println!("{{\"type\":\"test.env\",\"data\":{{{}}}}}", vars.join(","));
        }
        "exit65" => {
            eprintln!("error: malformed order");
            exit(65);
        }
        "exit3" => exit(3),
        "garbage" => println!("this is not json"),
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "stdout" => {
            let line = [b'x'; 1023];
            let mut out = std::io::stdout().lock();
            for _ in 0..(100 * 1024) {
                out.write_all(&line).expect("stdout");
                out.write_all(b"\n").expect("stdout");
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => exit(65),
    }
}
