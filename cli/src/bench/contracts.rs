//! `sluice bench contracts`: what an EventSchema check and a Trigger transform cost per event,
//! next to the work every event costs anyway (parsing the CloudEvent), in one run. The event
//! is a 1 KB order with 20 properties; the schema checks all 20 (types, bounds, a pattern, an
//! enum, nested items); the transform reads six paths and computes three values. Rounds
//! alternate the variants so a noisy machine slows them alike.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_event::CloudEvent;
use sluice_schema::{Registry, SchemaDef};

#[derive(clap::Args, Debug)]
pub struct ContractsArgs {
    /// Seconds per variant per round.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Rounds; each runs every variant once, in turn.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
}

/// The 20 properties of the data, and a schema that constrains each.
fn data() -> Value {
    json!({
        "orderId": "o-8f3a2c1d-4b5e-4f6a-9b8c-7d6e5f4a3b2c",
        "customerId": "c-1234567890",
        "email": "ada.lovelace@example.com",
        "country": "NL",
        "currency": "EUR",
        "total": 1234.56,
        "tax": 214.27,
        "discount": 0,
        "status": "paid",
        "channel": "web",
        "createdAt": "2026-12-07T10:15:30Z",
        "paidAt": "2026-12-07T10:16:02Z",
        "coupon": "WINTER-25",
        "giftWrap": false,
        "notes": "Leave at the back door, please. The dog is friendly but loud; ring twice and wait a minute, we are usually in the garden at the back of the house.",
        "shipping": {"method": "express", "cost": 9.95, "address": {"street": "Keizersgracht 123", "city": "Amsterdam", "postcode": "1015 CJ"}},
        "items": [
            {"sku": "TEA-EARL-GREY-250", "qty": 2, "unitPrice": 12.5},
            {"sku": "MUG-STONEWARE-BLUE", "qty": 1, "unitPrice": 18.0},
            {"sku": "BISCUIT-TIN-XL", "qty": 3, "unitPrice": 7.25}
        ],
        "tags": ["returning", "newsletter", "priority"],
        "loyaltyPoints": 1234,
        "source": "checkout-v2"
    })
}

fn schema() -> Value {
    json!({
        "type": "object",
        "required": ["orderId", "customerId", "country", "currency", "total", "status", "items"],
        "properties": {
            "orderId": {"type": "string", "pattern": "^o-[0-9a-f-]{36}$"},
            "customerId": {"type": "string", "minLength": 3},
            "email": {"type": "string", "maxLength": 254},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "currency": {"enum": ["EUR", "USD", "GBP"]},
            "total": {"type": "number", "minimum": 0},
            "tax": {"type": "number", "minimum": 0},
            "discount": {"type": "number", "minimum": 0},
            "status": {"enum": ["paid", "refunded", "pending"]},
            "channel": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "paidAt": {"type": "string", "format": "date-time"},
            "coupon": {"type": ["string", "null"]},
            "giftWrap": {"type": "boolean"},
            "notes": {"type": "string", "maxLength": 1000},
            "shipping": {"type": "object", "required": ["method"], "properties": {
                "method": {"enum": ["standard", "express"]},
                "cost": {"type": "number", "minimum": 0},
                "address": {"type": "object", "properties": {
                    "street": {"type": "string"}, "city": {"type": "string"}, "postcode": {"type": "string"}}}}},
            "items": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["sku", "qty"], "properties": {
                "sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}, "unitPrice": {"type": "number"}}}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "loyaltyPoints": {"type": "integer"},
            "source": {"type": "string"}
        }
    })
}

const TEMPLATE: &str = r#"{
  "order": <order>,
  "customer": <customer>,
  "gross": ${round(total + tax, 2)},
  "lines": ${len(items)},
  "first": ${items[0].sku},
  "where": "${lower(country)}/<city>",
  "tier": ${total >= 1000 ? 'gold' : 'standard'}
}"#;

pub fn run(args: ContractsArgs) -> anyhow::Result<i32> {
    let mut event = CloudEvent::new("bench-1", "/shop/checkout", "com.example.order.paid")
        .with_json_data(&data());
    event.datacontenttype = Some("application/json".into());
    let wire = event.to_json();
    let (registry, problems) = Registry::new(&[SchemaDef {
        name: "bench/order-paid".into(),
        ty: "com.example.order.paid".into(),
        source: None,
        versions: vec![(1, schema())],
    }]);
    anyhow::ensure!(problems.is_empty(), "bench schema: {problems:?}");
    let paths = [
        ("order", "$.data.orderId"),
        ("customer", "$.data.customerId"),
        ("total", "$.data.total"),
        ("tax", "$.data.tax"),
        ("items", "$.data.items"),
        ("country", "$.data.country"),
        ("city", "$.data.shipping.address.city"),
    ];
    let transform = sluice_transform::Transform::compile(paths, TEMPLATE)
        .map_err(|e| anyhow::anyhow!("bench transform: {e:?}"))?;
    let cx = sluice_transform::Context {
        trigger: "bench/paid",
    };
    // The variants must do their work on this event, or the figures mean nothing.
    {
        let mut e = CloudEvent::from_json(&wire)?;
        anyhow::ensure!(
            registry.check(&mut e).is_ok_and(|s| s.is_some()),
            "the event must pass"
        );
        let out = transform.apply(&e.to_json_value(), cx)?;
        anyhow::ensure!(out["lines"] == 3 && out["where"] == "nl/Amsterdam", "{out}");
    }

    type Variant<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);
    let variants: Vec<Variant> = vec![
        ("parse", Box::new(|| CloudEvent::from_json(&wire).is_ok())),
        // As the HTTP ingress does it: the check reads the `data` the parser built.
        (
            "parse + schema check",
            Box::new(|| {
                CloudEvent::from_json_keeping_data(&wire)
                    .is_ok_and(|(mut e, d)| registry.check_parsed(&mut e, d.as_ref()).is_ok())
            }),
        ),
        (
            "parse + transform",
            Box::new(|| {
                CloudEvent::from_json(&wire)
                    .is_ok_and(|e| transform.apply(&e.to_json_value(), cx).is_ok())
            }),
        ),
        (
            "parse + check + transform",
            Box::new(|| {
                CloudEvent::from_json_keeping_data(&wire).is_ok_and(|(mut e, d)| {
                    registry.check_parsed(&mut e, d.as_ref()).is_ok()
                        && transform.apply(&e.to_json_value(), cx).is_ok()
                })
            }),
        ),
    ];
    let per = Duration::from_secs_f64(args.seconds.max(0.05));
    let mut best = vec![f64::MAX; variants.len()];
    println!(
        "event: {} bytes, data with 20 properties; schema: 20 properties checked; transform: 7 paths, 7 outputs",
        wire.len()
    );
    for round in 1..=args.rounds.max(1) {
        let mut line = format!("round {round}:");
        for (i, (name, f)) in variants.iter().enumerate() {
            let ns = time_per_call(f, per)?;
            best[i] = best[i].min(ns);
            line.push_str(&format!("  {name} {:.2} µs", ns / 1000.0));
        }
        println!("{line}");
    }
    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>14}",
        "variant (best round)", "µs/event", "events/s", "vs parse"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "{:<28} {:>12.2} {:>12.0} {:>13.0}%",
            name,
            best[i] / 1000.0,
            1e9 / best[i],
            100.0 * best[0] / best[i]
        );
    }
    println!();
    // Where the time of a check without the parsed data goes (bridges and worker replies, whose
    // events arrive as CloudEvents): parsing `data` again, and the validator itself.
    let validator = sluice_schema::compile(&schema()).map_err(|e| anyhow::anyhow!(e))?;
    let parsed = data();
    let bytes = serde_json::to_vec(&parsed)?;
    let mut reparse = f64::MAX;
    let mut validate = f64::MAX;
    for _ in 0..args.rounds.max(1) {
        reparse = reparse.min(time_per_call(
            &|| serde_json::from_slice::<Value>(&bytes).is_ok(),
            per,
        )?);
        validate = validate.min(time_per_call(&|| validator.is_valid(&parsed), per)?);
    }
    println!(
        "schema check alone: {:.2} µs/event (from bytes instead: + parsing data again {:.2} µs; the validator {:.2} µs); transform alone (event to JSON + apply): {:.2} µs/event",
        (best[1] - best[0]) / 1000.0,
        reparse / 1000.0,
        validate / 1000.0,
        (best[2] - best[0]) / 1000.0
    );
    Ok(0)
}

/// Nanoseconds per call of `f`, calling it for about `per`.
fn time_per_call(f: &dyn Fn() -> bool, per: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < per {
        for _ in 0..64 {
            anyhow::ensure!(
                std::hint::black_box(f()),
                "a variant failed on the bench event"
            );
        }
        n += 64;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}
