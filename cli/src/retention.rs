//! `--retention [BUS=]AGE:SIZE`: how much of each bus's archive is kept, for `sluice dev` and
//! the distributed processes alike.

use sluice_api::{duration::Duration, quantity::ByteSize};
use sluice_bus::{Retention, RetentionConfig};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct RetentionArgs {
    /// Keep a bus's events this long and at most this much (its archive, read by `sluice
    /// tail --since` and `sluice replay`): `orders=7d:10Gi` for bus orders, `48h:2Gi` for
    /// every bus not named. Repeatable. Default 24h:1Gi.
    #[arg(long = "retention", value_name = "[BUS=]AGE:SIZE")]
    pub retention: Vec<String>,
}

impl RetentionArgs {
    pub fn config(&self) -> anyhow::Result<RetentionConfig> {
        let mut cfg = RetentionConfig::default();
        for spec in &self.retention {
            let (bus, keep) =
                parse(spec).map_err(|e| anyhow::anyhow!("--retention {spec}: {e}"))?;
            match bus {
                Some(b) => {
                    cfg.buses.insert(b, keep);
                }
                None => cfg.default = keep,
            }
        }
        Ok(cfg)
    }
}

/// `[BUS=]AGE:SIZE` → (bus, retention).
fn parse(spec: &str) -> Result<(Option<String>, Retention), String> {
    let (bus, limits) = match spec.split_once('=') {
        Some((b, l)) => {
            sluice_api::validate::dns_label("bus", b).map_err(|e| e.to_string())?;
            (Some(b.to_owned()), l)
        }
        None => (None, spec),
    };
    let (age, size) = limits
        .split_once(':')
        .ok_or("expected AGE:SIZE, e.g. 7d:10Gi")?;
    let age: Duration = age.parse().map_err(|e| format!("age: {e}"))?;
    let size: ByteSize = size.parse().map_err(|e| format!("size: {e}"))?;
    if age.as_std().is_zero() || size.bytes() == 0 {
        return Err("age and size must be more than zero".into());
    }
    Ok((
        bus,
        Retention {
            max_age: age.as_std(),
            max_bytes: size.bytes(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_bus_and_default_retention_parse_and_bad_specs_name_the_part() {
        let args = RetentionArgs {
            retention: vec!["orders=7d:10Gi".into(), "48h:2Gi".into()],
        };
        let cfg = args.config().unwrap();
        assert_eq!(
            cfg.of("orders").max_age,
            std::time::Duration::from_secs(7 * 86_400)
        );
        assert_eq!(cfg.of("orders").max_bytes, 10 << 30);
        assert_eq!(cfg.of("other").max_bytes, 2 << 30);
        for (bad, says) in [
            ("7d", "AGE:SIZE"),
            ("x=7q:1Gi", "age"),
            ("x=7d:lots", "size"),
            ("Bad.Bus=1d:1Gi", "bus"),
            ("0s:1Gi", "more than zero"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
