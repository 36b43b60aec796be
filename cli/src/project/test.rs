//! `sluice test [DIR]`: runs a project's sample event and its cases through the handler in the
//! sandbox a worker uses, with the Function's limits, and compares what comes back.
//!
//! * `event.json` with `expected.jsonl`: the replies, one JSON object per line.
//! * `cases/NAME.event.json` with `cases/NAME.expected.jsonl` (the replies) or
//!   `cases/NAME.fatal` (the text a fatal failure must report), and optionally
//!   `cases/NAME.env` (`K=V` lines added to the Function's `spec.env`).
//!
//! Replies are compared on `type`, `subject`, `datacontenttype` and `data` (numbers by value:
//! `38.50` printed by C equals `38.5`); `id`, `source` and `time` are the host's to fill. The
//! sample event must match a pattern of one of the Function's Triggers, or it would never be
//! delivered.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use sluice_host::Failure;

use super::Project;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The project folder (function.yaml, event.json, expected.jsonl, cases/).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// The Function to test, when the folder defines several.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// Wall-clock limit per event instead of the Function's `limits.timeout` (a loaded
    /// test machine says little about a handler's speed).
    #[arg(long)]
    pub timeout: Option<sluice_api::Duration>,
}

/// What one event must produce.
#[derive(Debug, PartialEq)]
pub enum Expect {
    Replies(Vec<Value>),
    /// A fatal failure whose message contains this text.
    Fatal(String),
}

#[derive(Debug)]
pub struct Case {
    /// `event.json` or `cases/NAME`.
    pub name: String,
    pub event: PathBuf,
    pub env: Vec<(String, String)>,
    pub expect: Expect,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn parse_jsonl(path: &Path) -> anyhow::Result<Vec<Value>> {
    read(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))
        })
        .collect()
}

fn parse_env(path: &Path, text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => anyhow::bail!("{}: {l:?}: expected NAME=VALUE", path.display()),
        })
        .collect()
}

/// The sample event, then every case in `cases/` by name.
pub fn cases(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let mut cases = vec![Case {
        name: "event.json".into(),
        event: dir.join("event.json"),
        env: vec![],
        expect: Expect::Replies(parse_jsonl(&dir.join("expected.jsonl"))?),
    }];
    let Ok(entries) = std::fs::read_dir(dir.join("cases")) else {
        return Ok(cases);
    };
    let mut events: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".event.json"))
        .collect();
    events.sort();
    for event in events {
        let file = event
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let name = file.trim_end_matches(".event.json").to_owned();
        let sibling = |ext: &str| event.with_file_name(format!("{name}.{ext}"));
        let expect = if sibling("expected.jsonl").exists() {
            Expect::Replies(parse_jsonl(&sibling("expected.jsonl"))?)
        } else if sibling("fatal").exists() {
            Expect::Fatal(read(&sibling("fatal"))?.trim().to_owned())
        } else {
            anyhow::bail!(
                "{}: neither {name}.expected.jsonl nor {name}.fatal beside it",
                event.display()
            );
        };
        let env = match std::fs::read_to_string(sibling("env")) {
            Ok(text) => parse_env(&sibling("env"), &text)?,
            Err(_) => vec![],
        };
        cases.push(Case {
            name: format!("cases/{name}"),
            event,
            env,
            expect,
        });
    }
    Ok(cases)
}

/// JSON equality where numbers compare by value.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The attributes a reply is judged on; the rest (id, source, time) is the host's.
pub fn compared(reply: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["type", "subject", "datacontenttype", "data"] {
        if let Some(v) = reply.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Why an outcome is not the expected one, or None when it is.
pub fn judge(expect: &Expect, outcome: &Result<Vec<Value>, Failure>) -> Option<String> {
    match (expect, outcome) {
        (Expect::Replies(want), Ok(got)) => {
            let got: Vec<Value> = got.iter().map(compared).collect();
            let want: Vec<Value> = want.iter().map(compared).collect();
            let equal = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| same(g, w));
            (!equal).then(|| {
                let lines = |v: &[Value]| {
                    v.iter()
                        .map(|r| format!("    {r}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                format!(
                    "replies differ\n  got:\n{}\n  want:\n{}",
                    lines(&got),
                    lines(&want)
                )
            })
        }
        (Expect::Replies(_), Err(f)) => Some(format!("failed: {f}")),
        (Expect::Fatal(text), Err(Failure::Fatal(msg))) => (!msg.contains(text.as_str()))
            .then(|| format!("fatal as expected, but {msg:?} does not contain {text:?}")),
        (Expect::Fatal(_), Err(f)) => Some(format!(
            "expected a fatal failure, got {} ({f})",
            f.reason()
        )),
        (Expect::Fatal(text), Ok(got)) => Some(format!(
            "expected a fatal failure ({text:?}), got {} repl{}",
            got.len(),
            if got.len() == 1 { "y" } else { "ies" }
        )),
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .without_time()
        .try_init();
    let mut project = Project::load(&args.dir, args.function.as_deref())?;
    if let Some(timeout) = args.timeout {
        project.function.spec.limits.timeout = timeout;
    }
    let module = project.module_path()?;
    let wasm = std::fs::read(&module).with_context(|| {
        format!(
            "{} is not built: run `sluice build {}`",
            module.display(),
            args.dir.display()
        )
    })?;
    let base_env: Vec<(String, String)> = project
        .function
        .spec
        .env
        .iter()
        .filter_map(|v| v.value.clone().map(|value| (v.name.clone(), value)))
        .collect();
    let cases = cases(&args.dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let mut failed = 0;
    for case in &cases {
        let text = read(&case.event)?;
        let event = crate::invoke::parse_event(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", case.event.display()))?;
        let mut problems = Vec::new();
        if case.name == "event.json" {
            problems.extend(unmatched(&project, &event));
        }
        let mut env = base_env.clone();
        for (k, v) in &case.env {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        let handler = crate::invoke::load(&project, &wasm, env)?;
        let started = std::time::Instant::now();
        let outcome = rt.block_on(handler.handle(&event)).map(|replies| {
            replies
                .iter()
                .map(|r| serde_json::from_slice(&r.to_json()).unwrap_or(Value::Null))
                .collect()
        });
        let took = started.elapsed();
        problems.extend(judge(&case.expect, &outcome));
        if problems.is_empty() {
            println!("ok    {} ({})", case.name, summary(&outcome, took));
        } else {
            failed += 1;
            println!("FAIL  {}: {}", case.name, problems.join("; "));
        }
    }
    let name = project.name();
    if failed == 0 {
        println!("{name}: {} of {} passed", cases.len(), cases.len());
        Ok(0)
    } else {
        println!("{name}: {failed} of {} failed", cases.len());
        Ok(1)
    }
}

fn summary(outcome: &Result<Vec<Value>, Failure>, took: Duration) -> String {
    let what = match outcome {
        Ok(r) if r.len() == 1 => "1 reply".to_string(),
        Ok(r) => format!("{} replies", r.len()),
        Err(f) => format!("{}: {f}", f.reason()),
    };
    format!("{what}, {:.1} ms", took.as_secs_f64() * 1000.0)
}

/// The sample event must match one of the Function's Triggers (those with a pattern), or no
/// bus would ever deliver it.
fn unmatched(project: &Project, event: &sluice_event::CloudEvent) -> Option<String> {
    let patterns: Vec<(&str, Value)> = project
        .triggers
        .iter()
        .filter_map(|t| {
            Some((
                t.metadata.name.as_deref().unwrap_or_default(),
                t.spec.pattern.clone()?,
            ))
        })
        .collect();
    if patterns.is_empty() {
        return None;
    }
    let json: Value = serde_json::from_slice(&event.to_json()).ok()?;
    let matched = patterns.iter().any(|(_, p)| {
        sluice_pattern::Pattern::parse(p).is_ok_and(|p| sluice_pattern::matches(&p, &json))
    });
    let names: Vec<&str> = patterns.iter().map(|(n, _)| *n).collect();
    (!matched).then(|| {
        format!(
            "matches the pattern of no Trigger of this Function ({})",
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value_and_host_attributes_are_ignored() {
        let want = vec![json!({"type": "t", "data": {"c": 38.5}})];
        let got = Ok(vec![
            json!({"type": "t", "id": "x", "source": "s", "data": {"c": 38.50}}),
        ]);
        assert_eq!(judge(&Expect::Replies(want.clone()), &got), None);
        let other = Ok(vec![json!({"type": "t", "data": {"c": 38.6}})]);
        assert!(
            judge(&Expect::Replies(want.clone()), &other)
                .unwrap()
                .contains("differ")
        );
        assert!(judge(&Expect::Replies(want), &Ok(vec![])).is_some());
    }

    #[test]
    fn a_fatal_case_needs_a_fatal_failure_with_its_text() {
        let expect = Expect::Fatal("data.name".into());
        let fatal = Err(Failure::Fatal("data.name: missing (exit status 65)".into()));
        assert_eq!(judge(&expect, &fatal), None);
        let other = Err(Failure::Fatal("something else".into()));
        assert!(judge(&expect, &other).unwrap().contains("does not contain"));
        let retry = Err(Failure::Retryable("data.name".into()));
        assert!(judge(&expect, &retry).unwrap().contains("retryable"));
        assert!(
            judge(&expect, &Ok(vec![]))
                .unwrap()
                .contains("got 0 replies")
        );
    }

    #[test]
    fn cases_are_read_with_their_expectations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("event.json"), "{}").unwrap();
        std::fs::write(d.join("expected.jsonl"), "{\"type\":\"a\"}\n\n").unwrap();
        std::fs::create_dir(d.join("cases")).unwrap();
        std::fs::write(d.join("cases/b.event.json"), "{}").unwrap();
        std::fs::write(d.join("cases/b.fatal"), "why\n").unwrap();
        std::fs::write(d.join("cases/b.env"), "K=v=w\n").unwrap();
        std::fs::write(d.join("cases/a.event.json"), "{}").unwrap();
        std::fs::write(d.join("cases/a.expected.jsonl"), "").unwrap();
        let cases = cases(d).unwrap();
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["event.json", "cases/a", "cases/b"]);
        assert_eq!(cases[0].expect, Expect::Replies(vec![json!({"type": "a"})]));
        assert_eq!(cases[2].expect, Expect::Fatal("why".into()));
        assert_eq!(cases[2].env, [("K".to_string(), "v=w".to_string())]);
        std::fs::write(d.join("cases/c.event.json"), "{}").unwrap();
        let err = super::cases(d).unwrap_err().to_string();
        assert!(
            err.contains("neither c.expected.jsonl nor c.fatal"),
            "{err}"
        );
    }
}
