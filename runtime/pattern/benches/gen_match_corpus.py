#!/usr/bin/env python3
"""Generate a synthetic CloudEvents corpus and EventBridge patterns for the matcher benchmarks.

usage: gen_match_corpus.py OUTDIR [--events N] [--patterns K ...] [--portable]
Writes OUTDIR/events.jsonl (N events, ~600 B each) and OUTDIR/patterns-K.jsonl for each K
(patterns-K-portable.jsonl with --portable: the numeric-range shape becomes a suffix wildcard
on type, so engines without numeric ranges, such as quamina, can load every pattern).
Six pattern shapes in turn: exact source+type; prefix + nested list; numeric range; anything-but
with exact fields; nested array of objects (sku and qty in one element); wildcards on three
fields (subject, type, a free-text note). Many patterns match each event. Deterministic.
Adapted from /work/shared/bench/gen_match_corpus.py (same events, more shapes)."""
import json, random, sys, os

SOURCES = [f"com.example.{d}" for d in ["orders", "billing", "shipping", "inventory", "users", "iot"]]
TYPES = ["created", "updated", "deleted", "paid", "shipped", "failed", "reading"]
COUNTRIES = ["DE", "FR", "US", "JP", "BR", "IN", "GB", "ES", "IT", "NL"]
DEPTS = ["billing", "fulfillment", "support", "sales", "ops"]
NOTES = ["", "gift", "express", "fragile item", "call before delivery"]


def event(rnd, i):
    src = rnd.choice(SOURCES)
    return {
        "specversion": "1.0",
        "id": f"{i:012d}",
        "source": src,
        "type": f"{src}.{rnd.choice(TYPES)}",
        "subject": f"orders/{rnd.randrange(1_000_000)}",
        "time": "2026-11-23T07:%02d:%02dZ" % (rnd.randrange(60), rnd.randrange(60)),
        "datacontenttype": "application/json",
        "tenant": f"t{rnd.randrange(50)}",
        "traceparent": "00-%032x-%016x-01" % (rnd.getrandbits(128), rnd.getrandbits(64)),
        "data": {
            "orderId": f"o-{rnd.randrange(10_000_000):08d}",
            "customer": {"id": f"c-{rnd.randrange(100000)}", "country": rnd.choice(COUNTRIES),
                         "tier": rnd.choice(["free", "pro", "enterprise"])},
            "total": round(rnd.uniform(0, 2000), 2),
            "items": [{"sku": f"SKU-{rnd.randrange(500)}", "qty": rnd.randrange(1, 5)}
                      for _ in range(rnd.randrange(1, 4))],
            "department": rnd.choice(DEPTS),
            "ip": f"10.{rnd.randrange(4)}.{rnd.randrange(256)}.{rnd.randrange(256)}",
            "note": rnd.choice(NOTES),
            "shipping": {"street": f"{rnd.randrange(1, 200)} Long Example Street", "city": rnd.choice(["Berlin", "Paris", "Osaka"]),
                         "zip": f"{rnd.randrange(10000, 99999)}", "method": rnd.choice(["standard", "express"])},
        },
    }


def pattern(prnd, j, portable):
    src = prnd.choice(SOURCES)
    shape = j % 6
    if shape == 0:
        return {"source": [src], "type": [f"{src}.{prnd.choice(TYPES)}"]}
    if shape == 1:
        return {"type": [{"prefix": f"{src}."}], "data": {"customer": {"country": prnd.sample(COUNTRIES, 2)}}}
    if shape == 2 and portable:
        return {"source": [src], "type": [{"wildcard": f"*.{prnd.choice(TYPES)}"}]}
    if shape == 2:
        lo = prnd.randrange(0, 1900)
        return {"source": [src], "data": {"total": [{"numeric": [">=", lo, "<", lo + prnd.randrange(10, 500)]}]}}
    if shape == 3:
        return {"data": {"department": [prnd.choice(DEPTS)], "customer": {"tier": [{"anything-but": ["free"]}]}},
                "tenant": [f"t{prnd.randrange(50)}"]}
    if shape == 4:
        return {"data": {"items": {"sku": [f"SKU-{prnd.randrange(500)}"], "qty": [{"numeric": [">=", prnd.randrange(1, 4)]}]}}}
    w = (j // 6) % 3
    if w == 0:
        return {"subject": [{"wildcard": f"orders/{prnd.randrange(10)}*{prnd.randrange(100)}"}]}
    if w == 1:
        return {"type": [{"wildcard": f"com.*.{prnd.choice(TYPES)}"}], "tenant": [f"t{prnd.randrange(50)}"]}
    return {"data": {"note": [{"wildcard": f"*{prnd.choice(['gift', 'fragile', 'press', 'call', 'item'])}*"}]},
            "source": [src]}


def main():
    out = sys.argv[1]
    args = sys.argv[2:]
    n = 20000
    ks = [1, 100, 10000]
    portable = "--portable" in args
    if "--events" in args:
        n = int(args[args.index("--events") + 1])
    if "--patterns" in args:
        i = args.index("--patterns") + 1
        ks = []
        while i < len(args) and not args[i].startswith("--"):
            ks.append(int(args[i])); i += 1
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(42)
    with open(os.path.join(out, "events.jsonl"), "w") as f:
        for i in range(n):
            f.write(json.dumps(event(rnd, i), separators=(",", ":")) + "\n")
    for k in ks:
        prnd = random.Random(1000 + k)
        name = f"patterns-{k}-portable.jsonl" if portable else f"patterns-{k}.jsonl"
        with open(os.path.join(out, name), "w") as f:
            for j in range(k):
                f.write(json.dumps(pattern(prnd, j, portable), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
