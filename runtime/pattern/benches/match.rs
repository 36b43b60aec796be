//! Criterion benchmarks of the compiled matcher: building 1/100/10,000 patterns and matching
//! ~600-byte CloudEvents from raw bytes (read whole, or until every pattern key is read), on
//! the corpus of `gen_match_corpus.py` (generated
//! into `target/pattern-corpus/` on first run; never committed).

use std::{hint::black_box, path::PathBuf, process::Command};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_pattern::{EventError, Matcher, Pattern};

fn corpus() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target"));
    let dir = target.join("pattern-corpus");
    if !dir.join("patterns-10000.jsonl").exists() {
        let status = Command::new("python3")
            .arg(manifest.join("benches/gen_match_corpus.py"))
            .arg(&dir)
            .status()
            .expect("python3 runs the corpus generator");
        assert!(status.success(), "corpus generation failed");
    }
    dir
}

fn read_lines(path: PathBuf) -> Vec<String> {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = corpus();
    let events: Vec<Vec<u8>> = read_lines(dir.join("events.jsonl"))
        .into_iter()
        .take(2000)
        .map(String::into_bytes)
        .collect();
    for k in [1usize, 100, 10_000] {
        let patterns: Vec<Pattern> = read_lines(dir.join(format!("patterns-{k}.jsonl")))
            .iter()
            .map(|l| Pattern::parse_str(l).expect("generated patterns are valid"))
            .collect();
        let build = || {
            let mut m = Matcher::new();
            for (i, p) in patterns.iter().enumerate() {
                m.insert(i as u64, p);
            }
            m
        };
        let mut g = c.benchmark_group(format!("patterns-{k}"));
        g.sample_size(10);
        g.bench_function("build", |b| b.iter(|| black_box(build())));
        let m = build();
        g.bench_function("snapshot-clone", |b| {
            b.iter_batched(|| (), |()| black_box(m.clone()), BatchSize::SmallInput)
        });
        g.throughput(Throughput::Elements(events.len() as u64));
        let mut out = Vec::new();
        type Read = fn(&Matcher<u64>, &[u8], &mut Vec<u64>) -> Result<(), EventError>;
        let reads: [(&str, Read); 2] = [
            ("match-json", Matcher::matches_json_into),
            ("match-valid-json", Matcher::matches_valid_json_into),
        ];
        for (name, read) in reads {
            g.bench_function(name, |b| {
                b.iter(|| {
                    for e in &events {
                        out.clear();
                        read(&m, black_box(e), &mut out).expect("valid event");
                    }
                    out.len()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
