//! Durations as users write them in manifests (`500ms`, `5s`, `1m30s`, `24h`), parsed once
//! into a typed value so nothing downstream handles strings.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regular expression the CRD schema uses, so the API server rejects what `parse` rejects.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$";

/// A non-negative span of time written as one or more `<number><unit>` terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 500ms, 5s, 1m30s, 24h)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
    pub fn as_millis(self) -> u128 {
        self.0.as_millis()
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        let mut total: u128 = 0; // nanoseconds
        let mut rest = input;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| err("number without a unit"))?;
            if num_len == 0 {
                return Err(err("expected a number"));
            }
            let (num, tail) = rest.split_at(num_len);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60 * 1_000_000_000,
                "h" => 3_600 * 1_000_000_000,
                "d" => 86_400 * 1_000_000_000,
                _ => return Err(err("unknown unit")),
            };
            let (int, frac) = match num.split_once('.') {
                Some((i, f)) if !i.is_empty() && !f.is_empty() && !f.contains('.') => (i, f),
                Some(_) => return Err(err("malformed number")),
                None => (num, ""),
            };
            let int: u128 = int.parse().map_err(|_| err("number too large"))?;
            let mut value = int
                .checked_mul(unit_nanos)
                .ok_or_else(|| err("too large"))?;
            // Fractions are exact to the nanosecond; digits beyond that are dropped.
            let mut scale = unit_nanos;
            for d in frac.bytes() {
                scale /= 10;
                value += u128::from(d - b'0') * scale;
            }
            total = total.checked_add(value).ok_or_else(|| err("too large"))?;
            rest = tail;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
        let nanos = (total % 1_000_000_000) as u32;
        Ok(Self(std::time::Duration::new(secs, nanos)))
    }
}

impl fmt::Display for Duration {
    /// The shortest form that parses back to the same value (`90s` prints as `1m30s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> u128 {
        s.parse::<Duration>().unwrap().as_millis()
    }

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("5s"), 5_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("24h"), 86_400_000);
        assert_eq!(ms("2d"), 172_800_000);
    }

    #[test]
    fn rejects_garbage_with_reason() {
        for bad in ["", "5", "5 parsecs", "s", "5x", "1..5s", "-1s", "5s "] {
            let e = bad.parse::<Duration>().unwrap_err().to_string();
            assert!(e.contains("invalid duration"), "{bad}: {e}");
        }
        let huge = "99999999999999999999999999999999999999d".parse::<Duration>();
        assert!(huge.is_err());
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for s in ["5s", "1m30s", "1.5h", "100ms"] {
            assert!(re.is_match(s) && s.parse::<Duration>().is_ok(), "{s}");
        }
        for s in ["5 parsecs", "5", "s5", ""] {
            assert!(!re.is_match(s) && s.parse::<Duration>().is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(millis in 0u64..10_000_000_000) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = s.parse::<Duration>();
        }
    }
}
