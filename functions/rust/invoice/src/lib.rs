//! Invoice handler (component ABI, world `sluice:function/handler` of runtime/wit): turns a
//! `com.example.order.paid` order into `com.example.invoice.created` with a line per item
//! (unit price × quantity), tax at `TAX_RATE` and the `CURRENCY` of the shop. Money is
//! integer cents throughout; an order that can never be invoiced is a fatal error.

mod invoice;

pub use invoice::{Invoice, Order, Rejected, Settings, invoice_for};

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../runtime/wit", world: "handler" });

    use sluice::function::log::{Level, log};

    use crate::invoice::{Order, Settings, invoice_for};

    struct Handler;

    impl Guest for Handler {
        fn handle(event: Event) -> Result<Vec<Event>, Error> {
            // Configuration comes from spec.env; a bad value fails every event alike, so it is
            // fatal rather than retried.
            let settings = Settings::from_env(|k| std::env::var(k).ok())
                .map_err(|e| Error::Fatal(e.to_string()))?;
            let data = event
                .data
                .as_deref()
                .ok_or_else(|| Error::Fatal("data: the order is missing".into()))?;
            let order: Order = serde_json::from_slice(data)
                .map_err(|e| Error::Fatal(format!("data: not an order: {e}")))?;
            let invoice =
                invoice_for(&order, &settings).map_err(|e| Error::Fatal(e.to_string()))?;
            log(
                Level::Info,
                &format!(
                    "invoice {} total {} {}",
                    invoice.invoice_number, invoice.total, invoice.currency
                ),
            );
            let body = serde_json::to_vec(&invoice)
                .map_err(|e| Error::Retryable(format!("encoding the invoice: {e}")))?;
            Ok(vec![Event {
                // id, source and time are filled by the host.
                id: String::new(),
                source: String::new(),
                type_: "com.example.invoice.created".into(),
                subject: event.subject.clone(),
                time: None,
                datacontenttype: Some("application/json".into()),
                dataschema: None,
                extensions: Vec::new(),
                data: Some(body),
            }])
        }
    }

    export!(Handler);
}
