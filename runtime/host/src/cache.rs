//! Compiled code on disk, keyed by the module's sha256 and by everything about the engine that
//! makes compiled code incompatible, so a restarted worker loads native code instead of
//! recompiling. Files are written to a temporary name and renamed, so a reader never sees a
//! half-written artifact. Loaded code is memory-mapped from these files, so they are only ever
//! replaced by rename, never rewritten in place (a truncated mapping would crash the worker).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::failure::HostError;

pub(crate) struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// `root/wasmtime48-<config hash>/`: a different wasmtime build or engine configuration
    /// gets its own directory rather than failing on every file of the old one.
    pub(crate) fn open(root: &Path, engine: &wasmtime::Engine) -> Result<Self, HostError> {
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let dir = root.join(format!("wasmtime48-{:016x}", h.finish()));
        std::fs::create_dir_all(&dir).map_err(|source| HostError::Cache {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Where the artifact of module `digest_hex` compiled as `kind` lives.
    pub(crate) fn path(&self, digest_hex: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{digest_hex}.{kind}.cwasm"))
    }

    pub(crate) fn store(&self, path: &Path, bytes: &[u8]) -> Result<(), HostError> {
        let err = |source| HostError::Cache {
            path: path.to_owned(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(err)?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }
}
