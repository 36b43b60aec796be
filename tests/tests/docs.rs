//! The commands in `README.md` and `docs/*.md` work: a reader who pastes one gets what the page
//! shows. Every fenced `sh`, `bash` or `console` block is one of three kinds, told by its fence:
//!
//! * ```` ```console ```` or ```` ```sh ```` with no tag: run here. `sluice` is the built
//!   binary (put first on PATH), and `127.0.0.1:8080` is a `sluice dev functions/examples` this
//!   test starts for each page, which is what `make run` runs. In a `console` block, `$ ` starts
//!   a command and the lines below it are its output: each must appear, in order, where `…`
//!   stands for anything; a trailing `# exit N` expects that status instead of 0. A command
//!   this test cannot run fails it: tag the block instead.
//! * ```` ```sh title="run by FILE[, FILE…]" ````: run elsewhere (the cluster test, CI through
//!   the Makefile). The files must exist and name each command's first words.
//! * ```` ```sh title="not run: REASON" ````: nothing runs it, and the reason says why.
//!
//! Whatever the kind, each `sluice SUBCOMMAND --flag` must be one `sluice … --help` lists, each
//! `make TARGET` a rule of its Makefile, each `cargo … -p CRATE --test/--bench/--bin T` a
//! target of a workspace crate. Relative links must reach files and headings that exist, and
//! the crate graph drawn in docs/architecture.md must be the one Cargo sees.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::Read,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sluice_tests::{Dev, free_port, sluice_bin, workspace};

/// The address the pages use for a local Sluice; replaced by the test's own.
const DOC_ADDR: &str = "127.0.0.1:8080";
/// `make run`'s recipe must end in this, which is the Sluice this test starts.
const MAKE_RUN: &str = "make run";
const RUN_RECIPE: &str = "-- dev functions/examples";
/// `sluice` subcommands that run on a laptop in a moment (the rest are servers or benchmarks).
const RUNNABLE: &[&str] = &[
    "validate",
    "test-pattern",
    "invoke",
    "publish",
    "replay",
    "tail",
    "dlq",
    "trace",
    "crds",
    "schema",
];
/// Of those, the ones that talk to a running Sluice.
const NEEDS_DEV: &[&str] = &["publish", "tail", "dlq", "replay", "trace", "schema"];
/// Programs allowed after a `|` in a command run here: filters of the output.
const FILTERS: &[&str] = &["grep", "head", "tail", "sort", "wc"];

// ---------------------------------------------------------------------------------------------
// Reading the pages

/// README.md, then docs/*.md by name.
fn pages() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(workspace().join("docs"))
        .expect("docs/ exists")
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(workspace().join(&n)).expect("page reads");
            (n, text)
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
enum Tag {
    RunHere,
    RunBy(Vec<String>),
    NotRun(String),
}

#[derive(Debug, Clone)]
struct Block {
    /// `page:line` of the opening fence, for messages.
    at: String,
    lang: String,
    tag: Tag,
    body: Vec<String>,
}

/// A fence line: its backtick count and info string. CommonMark refuses backticks in a
/// backtick fence's info string, which keeps inline code such as ```` ```sh ```` out.
fn fence(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start();
    let n = t.chars().take_while(|&c| c == '`').count();
    let info = t[n..].trim();
    (n >= 3 && !info.contains('`')).then_some((n, info))
}

/// Every fenced block of a page: (info string, line of the fence, body lines).
fn fenced(text: &str) -> Vec<(String, usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, usize, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some((n, info)) = fence(line) {
                    open = Some((n, info.to_owned(), i + 1, Vec::new()));
                }
            }
            Some((n, info, at, body)) => {
                let t = line.trim();
                if t.len() >= *n && t.chars().all(|c| c == '`') {
                    out.push((std::mem::take(info), *at, std::mem::take(body)));
                    open = None;
                } else {
                    body.push(line.to_owned());
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    out
}

/// The value of `title="…"` in an info string.
fn title(info: &str) -> Option<&str> {
    let rest = &info[info.find("title=\"")? + 7..];
    Some(&rest[..rest.find('"')?])
}

fn tag_of(info: &str, at: &str) -> Tag {
    let Some(t) = title(info) else {
        return Tag::RunHere;
    };
    if let Some(files) = t.strip_prefix("run by ") {
        return Tag::RunBy(files.split(',').map(|f| f.trim().to_owned()).collect());
    }
    if let Some(reason) = t.strip_prefix("not run: ") {
        return Tag::NotRun(reason.trim().to_owned());
    }
    panic!("{at}: a title must be `run by FILE…` or `not run: REASON`, not {t:?}");
}

/// The shell blocks of every page.
fn shell_blocks() -> Vec<Block> {
    let mut out = Vec::new();
    for (page, text) in pages() {
        for (info, line, body) in fenced(&text) {
            let lang = info.split_whitespace().next().unwrap_or("").to_owned();
            if !matches!(lang.as_str(), "sh" | "bash" | "console") {
                continue;
            }
            let at = format!("{page}:{line}");
            let tag = tag_of(&info, &at);
            out.push(Block {
                at,
                lang,
                tag,
                body,
            });
        }
    }
    out
}

/// One command of a block, continuation lines joined, with the output a `console` block
/// shows for it and the status its `# exit N` comment expects.
#[derive(Debug, Clone)]
struct Cmd {
    text: String,
    output: Vec<String>,
    exit: i32,
}

fn commands(b: &Block) -> Vec<Cmd> {
    let console = b.lang == "console";
    let mut out: Vec<Cmd> = Vec::new();
    let mut lines = b.body.iter();
    while let Some(line) = lines.next() {
        let start = if console {
            match line.strip_prefix("$ ") {
                Some(c) => c,
                None => {
                    let last = out.last_mut().unwrap_or_else(|| {
                        panic!("{}: console output before any `$ ` command", b.at)
                    });
                    last.output.push(line.clone());
                    continue;
                }
            }
        } else {
            line.as_str()
        };
        let mut text = start.trim_end().to_owned();
        while text.ends_with('\\') {
            text.pop();
            text.truncate(text.trim_end().len());
            let next = lines
                .next()
                .unwrap_or_else(|| panic!("{}: a `\\` continues nothing", b.at));
            text.push(' ');
            text.push_str(next.trim());
        }
        let (cmd, comment) = split_comment(&text);
        if cmd.trim().is_empty() {
            continue;
        }
        let exit = comment
            .and_then(|c| c.trim().strip_prefix("exit "))
            .map(|n| n.trim().parse().expect("`# exit N` takes a number"))
            .unwrap_or(0);
        out.push(Cmd {
            text: cmd.trim().to_owned(),
            output: Vec::new(),
            exit,
        });
    }
    out
}

/// Splits a shell line at its comment: a `#` starting a word outside quotes.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => {
                return (&line[..i], Some(&line[i + 1..]));
            }
            _ => {}
        }
        prev = c;
    }
    (line, None)
}

/// The simple commands of a shell line, each with the operator before it (`""` for the
/// first, `|`, `&&`, `;` …), words unquoted.
fn simple_commands(line: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let (mut words, mut word, mut sep) = (Vec::new(), String::new(), String::new());
    let (mut single, mut double, mut in_word) = (false, false, false);
    let mut chars = line.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => {
                single = !single;
                in_word = true;
            }
            '"' if !single => {
                double = !double;
                in_word = true;
            }
            '\\' if !single => {
                if let Some(n) = chars.next() {
                    word.push(n);
                    in_word = true;
                }
            }
            c if single || double => word.push(c),
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            '|' | '&' | ';' => {
                end_word(&mut words, &mut word, &mut in_word);
                let mut op = c.to_string();
                if chars.peek() == Some(&c) {
                    op.push(chars.next().expect("peeked"));
                }
                if !words.is_empty() {
                    out.push((std::mem::take(&mut sep), std::mem::take(&mut words)));
                }
                sep = op;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        out.push((sep, words));
    }
    out
}

fn program(words: &[String]) -> &str {
    let w = words.first().map(String::as_str).unwrap_or("");
    w.rsplit('/').next().unwrap_or(w)
}

/// The words that name a command in the file said to run it: for `make`, its targets; for
/// `export NAME=…`, the name; else the first two words after the program that are not options
/// (a short option's value skipped; collecting stops at a long option, whose value it cannot
/// tell), or the program itself.
fn key_words(words: &[String]) -> Vec<String> {
    match program(words) {
        "make" => return make_targets(words).1,
        "export" => {
            return words[1..]
                .iter()
                .map(|w| w.split('=').next().unwrap_or(w).to_owned())
                .collect();
        }
        _ => {}
    }
    let mut keys = Vec::new();
    let mut rest = words[1..].iter();
    while let Some(w) = rest.next() {
        if w.starts_with("--") {
            break;
        }
        if w.starts_with('-') || w.starts_with('+') {
            if w.len() == 2 && w.starts_with('-') {
                rest.next();
            }
            continue;
        }
        keys.push(w.clone());
        if keys.len() == 2 {
            break;
        }
    }
    if keys.is_empty() {
        keys.push(program(words).to_owned());
    }
    keys
}

/// `make [-C DIR] [VAR=VALUE…] TARGET…`: the Makefile's directory and the targets.
fn make_targets(words: &[String]) -> (PathBuf, Vec<String>) {
    let mut dir = workspace().to_path_buf();
    let mut targets = Vec::new();
    let mut rest = words[1..].iter();
    while let Some(w) = rest.next() {
        if w == "-C" {
            dir = dir.join(rest.next().expect("make -C DIR"));
        } else if !w.starts_with('-') && !w.contains('=') {
            targets.push(w.clone());
        }
    }
    (dir, targets)
}

// ---------------------------------------------------------------------------------------------
// Checks that hold for every block, run here or not

/// `sluice ARGS… --help`, cached.
fn help(cache: &mut HashMap<Vec<String>, String>, path: &[String]) -> String {
    cache
        .entry(path.to_vec())
        .or_insert_with(|| {
            let out = Command::new(sluice_bin())
                .args(path)
                .arg("--help")
                .output()
                .expect("sluice runs");
            assert!(
                out.status.success(),
                "sluice {} --help failed: {}",
                path.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .clone()
}

/// The subcommands a clap help text lists under `Commands:`.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Whether `--flag` appears in a help text as a whole option name.
fn lists_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let after = help[i + flag.len()..].chars().next();
        let before = help[..i].chars().next_back();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Problems with a `sluice …` command: an unknown subcommand or an unknown long option.
fn check_sluice(cache: &mut HashMap<Vec<String>, String>, words: &[String]) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    let mut text = help(cache, &path);
    for w in &words[1..] {
        let subs = subcommands(&text);
        if subs.is_empty() || w.starts_with('-') {
            break;
        }
        if !subs.contains(w) {
            return vec![format!(
                "`sluice {}` has no subcommand {w:?} (it has {subs:?})",
                path.join(" ")
            )];
        }
        path.push(w.clone());
        text = help(cache, &path);
    }
    if path.is_empty() {
        return vec!["`sluice` without a subcommand".into()];
    }
    words[1..]
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap_or(w))
        .filter(|f| !lists_flag(&text, f))
        .map(|f| format!("`sluice {} --help` lists no {f}", path.join(" ")))
        .collect()
}

/// Whether a Makefile has a rule for `target` (also one of several targets, `a b &:`).
fn has_rule(makefile: &str, target: &str) -> bool {
    makefile.lines().any(|l| {
        if l.starts_with(['\t', ' ', '#']) {
            return false;
        }
        let Some((head, tail)) = l.split_once(':') else {
            return false;
        };
        // `X := …` and `X ?= a:b` are variables, not rules.
        !head.contains('=')
            && !tail.starts_with(['=', ':'])
            && head
                .trim_end_matches('&')
                .split_whitespace()
                .any(|t| t == target)
    })
}

/// `cargo metadata` of the workspace (no dependencies resolved: no network, no lock wait).
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON")
}

/// Problems with a `cargo …` command: `-p` naming no workspace crate, or `--test`, `--bench`,
/// `--bin` naming no target of it; a test filter that the test file does not contain.
fn check_cargo(meta: &Value, words: &[String]) -> Vec<String> {
    let packages = meta["packages"].as_array().expect("packages");
    let mut problems = Vec::new();
    let arg = |flag: &str| {
        words
            .iter()
            .position(|w| w == flag)
            .and_then(|i| words.get(i + 1))
    };
    let selected: Vec<&Value> = match arg("-p") {
        Some(name) => {
            let p: Vec<&Value> = packages.iter().filter(|p| p["name"] == **name).collect();
            if p.is_empty() {
                problems.push(format!("no workspace crate {name}"));
            }
            p
        }
        None => packages.iter().collect(),
    };
    for (flag, kind) in [("--test", "test"), ("--bench", "bench"), ("--bin", "bin")] {
        let Some(name) = arg(flag) else { continue };
        let target = selected.iter().find_map(|p| {
            p["targets"].as_array()?.iter().find(|t| {
                t["name"] == **name
                    && t["kind"]
                        .as_array()
                        .is_some_and(|k| k.contains(&kind.into()))
            })
        });
        let Some(target) = target else {
            problems.push(format!("no {kind} target {name} in {:?}", arg("-p")));
            continue;
        };
        // `cargo test --test T FILTER`: the filter names a test of that file.
        if kind == "test" {
            let i = words.iter().position(|w| w == flag).expect("found above") + 2;
            if let Some(filter) = words.get(i).filter(|w| !w.starts_with('-')) {
                let src = std::fs::read_to_string(target["src_path"].as_str().unwrap_or(""))
                    .unwrap_or_default();
                if !src.contains(&format!("fn {filter}")) {
                    problems.push(format!("{name} has no test matching {filter}"));
                }
            }
        }
    }
    problems
}

#[test]
fn every_command_names_subcommands_flags_targets_and_crates_that_exist() {
    let meta = metadata();
    let mut cache = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for b in shell_blocks() {
        for cmd in commands(&b) {
            for (_, words) in simple_commands(&cmd.text) {
                let found = match program(&words) {
                    "sluice" => check_sluice(&mut cache, &words),
                    "cargo" => check_cargo(&meta, &words),
                    "make" => {
                        let (dir, targets) = make_targets(&words);
                        let makefile = std::fs::read_to_string(dir.join("Makefile"))
                            .unwrap_or_else(|_| panic!("{}: no Makefile in {dir:?}", b.at));
                        targets
                            .iter()
                            .filter(|t| !has_rule(&makefile, t))
                            .map(|t| format!("no rule for `make {t}` in {dir:?}"))
                            .collect()
                    }
                    "python3" => words[1..]
                        .iter()
                        .find(|w| w.ends_with(".py"))
                        .filter(|s| !workspace().join(s).exists())
                        .map(|s| vec![format!("no script {s}")])
                        .unwrap_or_default(),
                    _ => continue,
                };
                checked += 1;
                problems.extend(
                    found
                        .into_iter()
                        .map(|p| format!("{}: {}: {p}", b.at, cmd.text)),
                );
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} commands checked: is the parser blind?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn blocks_run_elsewhere_name_a_file_that_runs_them_or_why_none_does() {
    let mut problems = Vec::new();
    let (mut run_by, mut not_run) = (0, 0);
    for b in shell_blocks() {
        match &b.tag {
            Tag::RunHere => {}
            Tag::NotRun(reason) => {
                not_run += 1;
                if reason.split_whitespace().count() < 4 {
                    problems.push(format!("{}: say why nothing runs it: {reason:?}", b.at));
                }
            }
            Tag::RunBy(files) => {
                run_by += 1;
                let mut texts = Vec::new();
                for f in files {
                    match std::fs::read_to_string(workspace().join(f)) {
                        Ok(t) => texts.push(t),
                        Err(e) => problems.push(format!("{}: run by {f}: {e}", b.at)),
                    }
                }
                for cmd in commands(&b) {
                    for (sep, words) in simple_commands(&cmd.text) {
                        // A filter after `|` and a `cd` only shape the command before them.
                        if sep == "|" || program(&words) == "cd" {
                            continue;
                        }
                        for key in key_words(&words) {
                            if !texts.iter().any(|t| t.contains(&key)) {
                                problems.push(format!(
                                    "{}: {:?} never mentions {key:?} (from `{}`)",
                                    b.at, files, cmd.text
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(run_by > 0 && not_run > 0, "no tagged blocks found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Running the untagged blocks

/// Whether an actual output line matches an expected one, `…` standing for anything.
fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split('…').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return actual == expected;
    };
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether every expected line matches an actual line, in order. A line of just `…` stands
/// for any further lines.
fn output_matches(expected: &[String], actual: &str) -> bool {
    let mut lines = actual.lines();
    expected
        .iter()
        .filter(|e| e.trim() != "…")
        .all(|e| lines.any(|a| line_matches(e, a)))
}

/// What a command run here needs, or why it cannot run here.
enum Plan {
    /// `make run`: the Makefile's recipe is the `sluice dev` this test starts.
    StartDev,
    Run {
        needs_dev: bool,
        read_only: bool,
    },
}

fn plan(text: &str) -> Result<Plan, String> {
    if text == MAKE_RUN {
        return Ok(Plan::StartDev);
    }
    let mut needs_dev = text.contains(DOC_ADDR);
    let mut read_only = true;
    for (sep, words) in simple_commands(text) {
        if sep == "|" {
            if !FILTERS.contains(&program(&words)) {
                return Err(format!("`{}` after a pipe", program(&words)));
            }
            continue;
        }
        if !sep.is_empty() {
            return Err(format!("`{sep}` between commands"));
        }
        match program(&words) {
            "sluice" => {
                let sub = words.get(1).map(String::as_str).unwrap_or("");
                if !RUNNABLE.contains(&sub) {
                    return Err(format!("`sluice {sub}` does not run here"));
                }
                needs_dev |= NEEDS_DEV.contains(&sub);
                read_only &= sub == "tail" || words.get(2).is_some_and(|w| w == "list");
            }
            "curl" => {
                if !text.contains(DOC_ADDR) {
                    return Err(format!("curl must address {DOC_ADDR}"));
                }
                read_only &= !words.iter().any(|w| w == "-d" || w == "-X");
            }
            p => return Err(format!("`{p}` does not run here")),
        }
    }
    Ok(Plan::Run {
        needs_dev,
        read_only,
    })
}

/// The `sluice dev` a page's commands talk to: what `make run` starts, with its own port and
/// data directory.
struct Local {
    _data: tempfile::TempDir,
    dev: Dev,
}

impl Local {
    fn start() -> Local {
        let module = workspace().join("functions/rust/invoice/invoice.wasm");
        assert!(
            module.exists(),
            "{} is not built: make -C functions rust",
            module.display()
        );
        let data = tempfile::tempdir().expect("tempdir");
        let dev = Dev::start(
            &workspace().join("functions/examples"),
            &data.path().join("data"),
            free_port(),
            &[],
        );
        Local { _data: data, dev }
    }

    fn addr(&self) -> &str {
        &self.dev.addr
    }
}

/// Status and stdout + stderr of `sh -c text`, killed after `limit`.
fn shell(text: &str, addr: Option<&str>, limit: Duration) -> (Option<i32>, String) {
    let bin_dir = sluice_bin().parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.current_dir(workspace())
        .env("PATH", path)
        .env_remove("SLUICE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match addr {
        Some(a) => {
            cmd.env("SLUICE_URL", format!("http://{a}"))
                .args(["-c", &text.replace(DOC_ADDR, a)]);
        }
        None => {
            cmd.env_remove("SLUICE_URL").args(["-c", text]);
        }
    }
    let mut child = cmd.spawn().expect("sh runs");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().expect("stdout")));
    let err = read(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (status, text)
}

/// The Makefile's `run` recipe starts the Sluice this test starts for `make run`.
fn make_run_recipe_is_the_dev_this_test_starts() {
    let makefile = std::fs::read_to_string(workspace().join("Makefile")).expect("Makefile");
    let recipe: Vec<&str> = makefile
        .lines()
        .skip_while(|l| !l.starts_with("run:"))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .collect();
    assert!(
        recipe.iter().any(|l| l.trim_end().ends_with(RUN_RECIPE)),
        "`{MAKE_RUN}` no longer runs `sluice {RUN_RECIPE}`: {recipe:?}"
    );
}

#[test]
fn untagged_blocks_run_and_print_what_the_pages_show() {
    let mut problems = Vec::new();
    let mut ran = 0;
    for (page, _) in pages() {
        let blocks: Vec<Block> = shell_blocks()
            .into_iter()
            .filter(|b| b.tag == Tag::RunHere && b.at.starts_with(&format!("{page}:")))
            .collect();
        let mut local: Option<Local> = None;
        let before = problems.len();
        for b in &blocks {
            for cmd in commands(b) {
                let (needs_dev, read_only) = match plan(&cmd.text) {
                    Err(why) => {
                        problems.push(format!(
                            "{}: `{}`: {why}; tag the block (see this file's doc comment)",
                            b.at, cmd.text
                        ));
                        continue;
                    }
                    Ok(Plan::StartDev) => {
                        make_run_recipe_is_the_dev_this_test_starts();
                        (true, true)
                    }
                    Ok(Plan::Run {
                        needs_dev,
                        read_only,
                    }) => (needs_dev, read_only),
                };
                if needs_dev && local.is_none() {
                    local = Some(Local::start());
                }
                if cmd.text == MAKE_RUN {
                    continue;
                }
                let addr = local.as_ref().filter(|_| needs_dev).map(Local::addr);
                // A read (tail, dlq list, a GET) may run before the handler has finished with
                // the events before it: ask again for a while, as a reader would.
                let deadline = Instant::now() + Duration::from_secs(30);
                let (status, output) = loop {
                    let (status, output) = shell(&cmd.text, addr, Duration::from_secs(60));
                    let good = status == Some(cmd.exit) && output_matches(&cmd.output, &output);
                    if good || !read_only || Instant::now() > deadline {
                        break (status, output);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                ran += 1;
                if status != Some(cmd.exit) {
                    problems.push(format!(
                        "{}: `{}` exited {status:?}, not {}:\n{output}",
                        b.at, cmd.text, cmd.exit
                    ));
                } else if !output_matches(&cmd.output, &output) {
                    problems.push(format!(
                        "{}: `{}` printed\n{output}\nnot, in order,\n{}",
                        b.at,
                        cmd.text,
                        cmd.output.join("\n")
                    ));
                }
            }
        }
        if let (Some(l), true) = (&local, problems.len() > before) {
            problems.push(format!("{page}: sluice dev log:\n{}", l.dev.log_text()));
        }
    }
    assert!(
        ran >= 10,
        "only {ran} commands ran: are the blocks tagged away?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// Links and the crate graph

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if fence(line).is_some() {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The relative link targets of a page's prose: `](target)` outside code.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if fence(line).is_some() {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_owned());
            }
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn relative_links_reach_files_and_headings_that_exist() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (page, text) in pages() {
        let dir = workspace().join(&page).parent().expect("dir").to_path_buf();
        for target in links(&text) {
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                workspace().join(&page)
            } else {
                dir.join(path)
            };
            if !file.exists() {
                problems.push(format!("{page}: {target}: no {}", file.display()));
                continue;
            }
            if !anchor.is_empty() {
                let heads = anchors(&std::fs::read_to_string(&file).unwrap_or_default());
                if !heads.contains(anchor) {
                    problems.push(format!("{page}: {target}: no heading #{anchor}"));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} links found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every crate reachable from `from` along `edges`, `from` excluded.
fn reachable(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(c) = todo.pop() {
        for d in edges.get(&c).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

/// The `A --> B` edges of docs/architecture.md's mermaid graph, by crate name (`id[name]`).
fn drawn_graph() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace().join("docs/architecture.md")).expect("page");
    let (_, _, body) = fenced(&text)
        .into_iter()
        .find(|(info, _, _)| info == "mermaid")
        .expect("a mermaid block in docs/architecture.md");
    let mut names = HashMap::new();
    let mut edges: Vec<(String, String)> = Vec::new();
    for line in &body {
        let Some((a, b)) = line.split_once("-->") else {
            continue;
        };
        let mut node = |s: &str| {
            let s = s.trim();
            match s.split_once('[') {
                Some((id, name)) => {
                    names.insert(id.to_owned(), name.trim_end_matches(']').to_owned());
                    id.to_owned()
                }
                None => s.to_owned(),
            }
        };
        let (a, b) = (node(a), node(b));
        edges.push((a, b));
    }
    let name = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in &edges {
        graph.entry(name(a)).or_default().insert(name(b));
        graph.entry(name(b)).or_default();
    }
    graph
}

#[test]
fn the_drawn_crate_graph_is_cargos_and_the_data_plane_stays_off_kube() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let normal = |d: &&Value| d["kind"].is_null() || d["kind"] == "build";
    // Cargo's graph of workspace crates, normal dependencies only (sluice-tests only runs
    // binaries, so it is not drawn).
    let mut cargo: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in packages.iter().filter(|p| p["name"] != "sluice-tests") {
        let deps = p["dependencies"].as_array().expect("dependencies");
        cargo
            .entry(p["name"].as_str().expect("name").to_owned())
            .or_default()
            .extend(
                deps.iter()
                    .filter(normal)
                    .filter_map(|d| d["name"].as_str())
                    .filter(|n| n.starts_with("sluice-") && *n != "sluice-tests")
                    .map(str::to_owned),
            );
    }
    let drawn = drawn_graph();
    assert_eq!(
        drawn.keys().collect::<BTreeSet<_>>(),
        cargo.keys().collect::<BTreeSet<_>>(),
        "the drawn crates are the workspace's"
    );
    for (a, bs) in &drawn {
        for b in bs {
            assert!(
                cargo[a].contains(b),
                "drawn {a} --> {b}, but {a} does not depend on {b}"
            );
        }
    }
    for c in cargo.keys() {
        assert_eq!(
            reachable(&drawn, c),
            reachable(&cargo, c),
            "what {c} depends on, drawn and in Cargo.toml"
        );
    }

    // The data plane uses sluice-api's spec types without kube: no path to the operator, no
    // kube of its own, and sluice-api never with its `crd` feature (on by default).
    let api = packages
        .iter()
        .find(|p| p["name"] == "sluice-api")
        .expect("sluice-api");
    let api_default_has_crd = api["features"]["default"]
        .as_array()
        .is_some_and(|f| f.contains(&"crd".into()));
    let data_plane = [
        "sluice-event",
        "sluice-pattern",
        "sluice-host",
        "sluice-bus",
        "sluice-delivery",
        "sluice-ingress",
    ];
    for c in data_plane {
        let below = reachable(&cargo, c);
        assert!(
            !below.contains("sluice-operator"),
            "{c} reaches sluice-operator"
        );
        for p in packages
            .iter()
            .filter(|p| p["name"] == c || below.contains(p["name"].as_str().unwrap_or("")))
        {
            for d in p["dependencies"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(normal)
            {
                let name = d["name"].as_str().unwrap_or("");
                assert!(
                    !matches!(name, "kube" | "k8s-openapi") || p["name"] == "sluice-api",
                    "{} (below {c}) depends on {name}",
                    p["name"]
                );
                if name == "sluice-api" {
                    let crd = d["features"]
                        .as_array()
                        .is_some_and(|f| f.contains(&"crd".into()))
                        || (d["uses_default_features"] == true && api_default_has_crd);
                    assert!(!crd, "{} (below {c}) turns on sluice-api's crd", p["name"]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parser itself, on cases the pages do not cover yet

#[test]
fn the_parser_reads_fences_comments_and_output_as_documented() {
    let page = "x\n````md\n```sh\nnot a block\n```\n````\n  ```console title=\"not run: a b c d\"\n  $ a \\\n  b # exit 3\n  out…put\n  ```\n";
    let blocks = fenced(page);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(blocks[0].0, "md");
    let b = Block {
        at: "t".into(),
        lang: "console".into(),
        tag: tag_of(&blocks[1].0, "t"),
        body: blocks[1].2.iter().map(|l| l.trim().to_owned()).collect(),
    };
    assert_eq!(b.tag, Tag::NotRun("a b c d".into()));
    let cmds = commands(&b);
    assert_eq!(cmds.len(), 1);
    assert_eq!((cmds[0].text.as_str(), cmds[0].exit), ("a b", 3));
    assert!(output_matches(&cmds[0].output, "noise\nout and put\n"));
    assert!(!output_matches(&cmds[0].output, "output!\n"));
    assert_eq!(
        simple_commands("curl -s 'a|b' | grep -E '^x' && cd d"),
        vec![
            ("".into(), vec!["curl".into(), "-s".into(), "a|b".into()]),
            ("|".into(), vec!["grep".into(), "-E".into(), "^x".into()]),
            ("&&".into(), vec!["cd".into(), "d".into()]),
        ]
    );
    let words = |s: &str| simple_commands(s).remove(0).1;
    assert_eq!(
        key_words(&words("kubectl -n shop create configmap x --from-file=y")),
        ["create", "configmap"]
    );
    assert_eq!(
        key_words(&words("sluice publish --url http://h")),
        ["publish"]
    );
    assert_eq!(key_words(&words("make -C functions rust")), ["rust"]);
    assert_eq!(key_words(&words("curl -i http://h -H 'a: b'")), ["curl"]);
    assert_eq!(
        slug("6. When a new Trigger routes"),
        "6-when-a-new-trigger-routes"
    );
    assert_eq!(slug(" The `sluice` command"), "the-sluice-command");
    assert!(has_rule("a b &: c\n\tx\n", "b"));
    assert!(!has_rule("X := a:b\n", "X"));
}
