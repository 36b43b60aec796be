//! Restock handler (command ABI, WASI preview 1): reads a `com.example.inventory.changed`
//! event on stdin and, when stock at a warehouse falls to its reorder point, writes a
//! `com.example.purchase.requested` reply on stdout ordering enough whole packs to get back to
//! the target level. Exit 65 (fatal) for an event that can never be handled.

use std::io::Read;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// sysexits.h EX_DATAERR: Sluice dead-letters the event at once.
const EX_DATAERR: u8 = 65;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Stock {
    sku: String,
    warehouse: String,
    on_hand: i64,
    reorder_point: i64,
    target: i64,
    #[serde(default = "one")]
    pack_size: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct PurchaseRequest {
    sku: String,
    warehouse: String,
    packs: i64,
    quantity: i64,
    reason: String,
}

/// The pure decision: `None` while stock is above the reorder point.
fn decide(s: &Stock) -> Result<Option<PurchaseRequest>, String> {
    if s.pack_size < 1 {
        return Err("data.packSize: must be at least 1".into());
    }
    if s.target <= s.reorder_point {
        return Err("data.target: must be above data.reorderPoint".into());
    }
    if s.on_hand > s.reorder_point {
        return Ok(None);
    }
    let missing = s.target - s.on_hand.max(0);
    let packs = (missing + s.pack_size - 1) / s.pack_size;
    Ok(Some(PurchaseRequest {
        sku: s.sku.clone(),
        warehouse: s.warehouse.clone(),
        packs,
        quantity: packs * s.pack_size,
        reason: format!(
            "on hand {} at or below reorder point {}",
            s.on_hand, s.reorder_point
        ),
    }))
}

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("error: reading the event: {e}");
        return ExitCode::from(1); // an I/O hiccup: let Sluice retry
    }
    match run(&input) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

fn run(input: &str) -> Result<(), String> {
    let event: Value = serde_json::from_str(input).map_err(|e| format!("event: {e}"))?;
    let data = event.get("data").cloned().ok_or("data: missing")?;
    let stock: Stock = serde_json::from_value(data).map_err(|e| format!("data: {e}"))?;
    let Some(request) = decide(&stock)? else {
        eprintln!(
            "debug: {} at {}: {} on hand, nothing to order",
            stock.sku, stock.warehouse, stock.on_hand
        );
        return Ok(());
    };
    eprintln!(
        "info: ordering {} x {} for {}",
        request.quantity, request.sku, request.warehouse
    );
    let reply = json!({
        "type": "com.example.purchase.requested",
        "subject": format!("{}/{}", request.warehouse, request.sku),
        "datacontenttype": "application/json",
        "data": request,
    });
    println!("{reply}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(on_hand: i64, pack: i64) -> Stock {
        Stock {
            sku: "S".into(),
            warehouse: "W".into(),
            on_hand,
            reorder_point: 10,
            target: 50,
            pack_size: pack,
        }
    }

    #[test]
    fn orders_whole_packs_up_to_target() {
        let r = decide(&stock(7, 12)).unwrap().unwrap();
        assert_eq!((r.packs, r.quantity), (4, 48));
        let r = decide(&stock(-5, 1)).unwrap().unwrap();
        assert_eq!(r.quantity, 50);
    }

    #[test]
    fn nothing_above_the_reorder_point() {
        assert_eq!(decide(&stock(11, 1)).unwrap(), None);
    }

    #[test]
    fn impossible_settings_are_errors() {
        assert!(decide(&stock(1, 0)).is_err());
        let mut s = stock(1, 1);
        s.target = 10;
        assert!(decide(&s).is_err());
    }
}
