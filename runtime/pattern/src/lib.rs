//! EventBridge event patterns for Sluice: parsing and validation ([`Pattern`]), a compiled
//! matcher over all patterns of a bus ([`Matcher`]), and a slow reference interpreter
//! ([`reference`]) that tests and the fuzz target hold the matcher to.
//!
//! Owns: pattern grammar, validation and matching over JSON. Must not know: CloudEvents,
//! buses or Triggers (a pattern sees a JSON document; `sluice-delivery` decides what a match
//! does).
//!
//! ```
//! use sluice_pattern::{Matcher, Pattern};
//! use serde_json::json;
//!
//! let p = Pattern::parse(&json!({
//!     "type": ["com.example.order.paid"],
//!     "data": { "total": [{ "numeric": [">", 100] }] }
//! })).unwrap();
//! let mut m = Matcher::new();
//! m.insert("paid-orders", &p);
//! let event = json!({ "type": "com.example.order.paid", "data": { "total": 120.5 } });
//! assert_eq!(m.matches(&event), vec!["paid-orders"]);
//! ```

mod flatten;
mod index;
mod matcher;
mod pattern;
pub mod reference;
mod value;

pub use flatten::EventError;
pub use matcher::Matcher;
pub use pattern::{MAX_ALTERNATIVES, MAX_PATTERN_DEPTH, Pattern, PatternError};

/// Event values nested deeper than this (the event itself is depth 0) are treated as absent,
/// so hostile events cannot exhaust the stack; serde_json already refuses nesting past 128.
pub const MAX_EVENT_DEPTH: usize = 256;

/// Does one pattern match one event? Convenience for single checks such as
/// `sluice test-pattern`; routing many patterns goes through [`Matcher`].
pub fn matches(pattern: &Pattern, event: &serde_json::Value) -> bool {
    let mut m = Matcher::new();
    m.insert((), pattern);
    !m.matches(event).is_empty()
}
