//! The pure decision: an order and the shop's settings in, the invoice out (or the field that
//! makes it impossible). Unit-tested natively with `cargo test`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: String,
    #[serde(default)]
    pub items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub sku: String,
    pub qty: u32,
    pub unit_price: f64,
}

/// From the Function's `env`: `TAX_RATE` as a fraction (`0.21`), `CURRENCY` (`EUR`).
#[derive(Debug, PartialEq)]
pub struct Settings {
    /// Basis points: 2100 = 21%.
    pub tax_bp: i64,
    pub currency: String,
}

/// Why an order cannot be invoiced, naming the field.
#[derive(Debug, PartialEq)]
pub struct Rejected(pub String);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Settings {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, Rejected> {
        let rate = get("TAX_RATE").unwrap_or_else(|| "0".into());
        let fraction: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                Rejected(format!(
                    "env TAX_RATE: {rate:?} is not a fraction between 0 and 1"
                ))
            })?;
        let currency = get("CURRENCY").unwrap_or_else(|| "EUR".into());
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Rejected(format!(
                "env CURRENCY: {currency:?} is not an ISO 4217 code"
            )));
        }
        Ok(Self {
            tax_bp: (fraction * 10_000.0).round() as i64,
            currency,
        })
    }
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub invoice_number: String,
    pub order_id: String,
    pub currency: String,
    pub lines: Vec<Line>,
    pub subtotal: f64,
    pub tax_rate: f64,
    pub tax: f64,
    pub total: f64,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub sku: String,
    pub qty: u32,
    pub unit_price: f64,
    pub amount: f64,
}

fn cents(amount: f64, field: &str) -> Result<i64, Rejected> {
    if !amount.is_finite() || amount < 0.0 || amount > 1e12 {
        return Err(Rejected(format!(
            "{field}: must be an amount of at least 0"
        )));
    }
    Ok((amount * 100.0).round() as i64)
}

fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}

pub fn invoice_for(order: &Order, settings: &Settings) -> Result<Invoice, Rejected> {
    if order.order_id.is_empty() {
        return Err(Rejected("data.orderId: must not be empty".into()));
    }
    if order.items.is_empty() {
        return Err(Rejected(
            "data.items: an invoice needs at least one item".into(),
        ));
    }
    let mut subtotal = 0i64;
    let mut lines = Vec::with_capacity(order.items.len());
    for (i, item) in order.items.iter().enumerate() {
        if item.qty == 0 {
            return Err(Rejected(format!("data.items[{i}].qty: must be at least 1")));
        }
        let unit = cents(item.unit_price, &format!("data.items[{i}].unitPrice"))?;
        let amount = unit * i64::from(item.qty);
        subtotal += amount;
        lines.push(Line {
            sku: item.sku.clone(),
            qty: item.qty,
            unit_price: money(unit),
            amount: money(amount),
        });
    }
    // Tax is rounded once on the subtotal (half up), as on a paper invoice.
    let tax = (subtotal * settings.tax_bp + 5_000) / 10_000;
    Ok(Invoice {
        invoice_number: format!("INV-{}", order.order_id),
        order_id: order.order_id.clone(),
        currency: settings.currency.clone(),
        lines,
        subtotal: money(subtotal),
        tax_rate: settings.tax_bp as f64 / 10_000.0,
        tax: money(tax),
        total: money(subtotal + tax),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            tax_bp: 2100,
            currency: "EUR".into(),
        }
    }

    fn order(json: &str) -> Order {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lines_times_quantity_plus_tax() {
        let o = order(
            r#"{"orderId":"o-1","items":[{"sku":"A","qty":3,"unitPrice":6.45},{"sku":"B","qty":1,"unitPrice":89}]}"#,
        );
        let inv = invoice_for(&o, &settings()).unwrap();
        assert_eq!(inv.lines[0].amount, 19.35);
        assert_eq!(inv.subtotal, 108.35);
        assert_eq!(inv.tax, 22.75); // 22.7535 rounds to 22.75
        assert_eq!(inv.total, 131.10);
        assert_eq!(inv.invoice_number, "INV-o-1");
    }

    #[test]
    fn an_order_without_items_is_rejected() {
        let err = invoice_for(&order(r#"{"orderId":"o-2","items":[]}"#), &settings()).unwrap_err();
        assert!(err.0.starts_with("data.items"), "{err}");
        let err = invoice_for(
            &order(r#"{"orderId":"o-3","items":[{"sku":"A","qty":0,"unitPrice":1}]}"#),
            &settings(),
        )
        .unwrap_err();
        assert!(err.0.contains("qty"), "{err}");
    }

    #[test]
    fn settings_from_env() {
        let env = |k: &str| match k {
            "TAX_RATE" => Some("0.09".to_string()),
            "CURRENCY" => Some("USD".to_string()),
            _ => None,
        };
        assert_eq!(
            Settings::from_env(env).unwrap(),
            Settings {
                tax_bp: 900,
                currency: "USD".into()
            }
        );
        assert!(Settings::from_env(|k| (k == "TAX_RATE").then(|| "21%".to_string())).is_err());
        assert!(Settings::from_env(|k| (k == "CURRENCY").then(|| "euro".to_string())).is_err());
        assert_eq!(Settings::from_env(|_| None).unwrap().tax_bp, 0);
    }
}
