//! Free disk space: publishing stops while the data dir's disk has less than a reserve, so
//! that routing, acks and dead letters, which deliveries in progress need to finish and give
//! space back, never meet a full disk (Elasticsearch's flood stage, applied to producers only).

use std::path::Path;

use crate::BusError;

/// Bytes an unprivileged writer can still put on the filesystem holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> Result<u64, BusError> {
    let s = rustix::fs::statvfs(dir)
        .map_err(|e| BusError::Storage(format!("statvfs {}: {e}", dir.display())))?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Why a publish adding `adds` bytes is refused with `free` bytes left and `reserve` kept
/// back, or `None` when it fits.
pub(super) fn refusal(dir: &Path, free: u64, reserve: u64, adds: u64) -> Option<String> {
    (free < reserve.saturating_add(adds)).then(|| {
        format!(
            "disk full: {} free on {} is less than the {} the bus keeps in reserve for \
             deliveries in progress (--disk-reserve) plus {} to write; nothing was stored, \
             retry once space is freed",
            mib(free),
            dir.display(),
            mib(reserve),
            mib(adds)
        )
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_fits_only_above_the_reserve() {
        let dir = Path::new("/data");
        assert_eq!(refusal(dir, 100 << 20, 64 << 20, 1 << 20), None);
        assert_eq!(refusal(dir, (64 << 20) + 10, 64 << 20, 10), None);
        let why = refusal(dir, (64 << 20) + 10, 64 << 20, 11).unwrap();
        assert!(
            why.starts_with("disk full: 64.0 MiB free on /data"),
            "{why}"
        );
        assert!(why.contains("--disk-reserve"), "{why}");
        assert!(refusal(dir, 0, 0, 1).is_some());
        assert!(refusal(dir, 0, u64::MAX, 0).is_some());
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
