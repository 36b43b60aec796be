//! Byte quantities in Kubernetes notation (`64Mi`, `1Gi`, `500k`, `1048576`), parsed once into
//! a byte count. The same strings go into a Deployment's `resources`, so the notation matches.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regular expression the CRD schema uses, so the API server rejects what `parse` rejects.
pub const QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$";

/// An amount of memory in bytes. Keeps the text it was written as, so a manifest
/// round-trips unchanged and the Deployment shows the user's own notation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ByteSize {
    bytes: u64,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason} (expected e.g. 64Mi, 1Gi, 500M)")]
pub struct QuantityError {
    input: String,
    reason: &'static str,
}

impl ByteSize {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// A quantity of whole mebibytes, written as `NMi`.
    pub fn mebibytes(n: u64) -> Self {
        Self {
            bytes: n << 20,
            text: format!("{n}Mi"),
        }
    }
    /// The notation the user wrote, for Kubernetes `resources`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ByteSize {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| QuantityError {
            input: input.to_owned(),
            reason,
        };
        let split = input
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(input.len());
        let (num, suffix) = input.split_at(split);
        let multiplier: u64 = match suffix {
            "" => 1,
            "k" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(err("unknown suffix")),
        };
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) if !i.is_empty() && !f.is_empty() && !f.contains('.') => (i, f),
            Some(_) => return Err(err("malformed number")),
            None if num.is_empty() => return Err(err("expected a number")),
            None => (num, ""),
        };
        let int: u64 = int.parse().map_err(|_| err("too large"))?;
        let mut bytes = int
            .checked_mul(multiplier)
            .ok_or_else(|| err("too large"))?;
        // Digits beyond 18 cannot change a byte count below 2^64 by a whole byte.
        let mut pow: u128 = 1;
        let mut frac_digits: u128 = 0;
        for d in frac.bytes().take(18) {
            pow *= 10;
            frac_digits = frac_digits * 10 + u128::from(d - b'0');
        }
        // Round a fractional byte count up: a limit is never silently lowered.
        let frac_bytes = (frac_digits * u128::from(multiplier)).div_ceil(pow);
        let frac_bytes = u64::try_from(frac_bytes).map_err(|_| err("too large"))?;
        bytes = bytes
            .checked_add(frac_bytes)
            .ok_or_else(|| err("too large"))?;
        Ok(Self {
            bytes,
            text: input.to_owned(),
        })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": QUANTITY_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(s: &str) -> u64 {
        s.parse::<ByteSize>().unwrap().bytes()
    }

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("64Mi"), 64 * 1024 * 1024);
        assert_eq!(bytes("1Gi"), 1 << 30);
        assert_eq!(bytes("500k"), 500_000);
        assert_eq!(bytes("1048576"), 1_048_576);
        assert_eq!(bytes("1.5Ki"), 1536);
        assert_eq!(bytes("0.5M"), 500_000);
        assert_eq!(ByteSize::mebibytes(64), "64Mi".parse().unwrap());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "Mi",
            "64MB",
            "64 Mi",
            "-1Mi",
            "1..5Mi",
            "99999999999999999999Ti",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        let re = regex::Regex::new(QUANTITY_PATTERN).unwrap();
        for s in ["64Mi", "1.5Gi", "100", "5k"] {
            assert!(re.is_match(s) && s.parse::<ByteSize>().is_ok(), "{s}");
        }
        for s in ["64MB", "Mi", "", "1e6"] {
            assert!(!re.is_match(s) && s.parse::<ByteSize>().is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "[0-9.kMGTi]{0,24}") {
            let _ = s.parse::<ByteSize>();
        }
    }
}
