//! Where a process finds the Secrets its Triggers name (a bridge's `credentialsSecret`, an HTTP
//! Trigger's `tokenSecret`): Secret manifests beside the Functions (`sluice dev`, and any
//! process started with `--manifests`), Secret volumes mounted into a worker pod, or the
//! Kubernetes API (the routers, whose Triggers live in other namespaces; wired by the CLI, which
//! owns the Kubernetes client).

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, RwLock},
};

pub use sluice_api::credentials::SecretValues;

pub type SecretFuture<'a> = Pin<Box<dyn Future<Output = Result<SecretValues, String>> + Send + 'a>>;

/// Looks up Secret `name` of `namespace`; the error says why it cannot be had.
pub trait SecretStore: Send + Sync {
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> SecretFuture<'a>;
}

pub type SharedSecrets = Arc<dyn SecretStore>;

/// The Secret manifests of the last manifest load.
#[derive(Default)]
pub struct ManifestSecrets(RwLock<BTreeMap<(String, String), SecretValues>>);

impl ManifestSecrets {
    /// Replaces every Secret with the ones just read, keyed by (namespace, name).
    pub fn replace(&self, secrets: BTreeMap<(String, String), SecretValues>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = secrets;
    }

    pub fn lookup(&self, namespace: &str, name: &str) -> Result<SecretValues, String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| {
                format!("no Secret {namespace}/{name} among the manifests (add a v1 Secret beside the Trigger)")
            })
    }
}

impl SecretStore for ManifestSecrets {
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> SecretFuture<'a> {
        let found = self.lookup(namespace, name);
        Box::pin(async move { found })
    }
}

/// Secret volumes mounted at `<root>/<name>/`, one file per key, as the operator mounts the
/// Secrets of a worker's own namespace. A volume shows no labels.
pub struct MountedSecrets {
    pub root: PathBuf,
}

impl MountedSecrets {
    pub fn lookup(&self, name: &str) -> Result<SecretValues, String> {
        // The name was validated as a DNS subdomain; refuse anything else rather than walk.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!("{name:?} is not a Secret name"));
        }
        let dir = self.root.join(name);
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            format!(
                "Secret {name} is not mounted at {} ({e}); the operator mounts the Secrets a \
                 Function's Triggers name",
                dir.display()
            )
        })?;
        let mut data = BTreeMap::new();
        for entry in entries.flatten() {
            let key = entry.file_name().to_string_lossy().into_owned();
            // A Secret volume keeps its files behind `..data` and timestamped hidden dirs.
            if key.starts_with('.') {
                continue;
            }
            let value =
                std::fs::read(entry.path()).map_err(|e| format!("Secret {name} key {key}: {e}"))?;
            data.insert(key, value);
        }
        Ok(SecretValues {
            labels: BTreeMap::new(),
            data,
        })
    }
}

impl SecretStore for MountedSecrets {
    fn get<'a>(&'a self, _namespace: &'a str, name: &'a str) -> SecretFuture<'a> {
        Box::pin(async move { self.lookup(name) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounted_secrets_read_every_visible_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("web-token");
        std::fs::create_dir_all(s.join("..2026_12_06")).unwrap();
        std::fs::write(s.join("token"), "t0k3n").unwrap();
        std::fs::write(s.join("..data"), "x").unwrap();
        let m = MountedSecrets {
            root: dir.path().into(),
        };
        let v = m.lookup("web-token").unwrap();
        assert_eq!(v.data.keys().collect::<Vec<_>>(), ["token"]);
        assert_eq!(v.data["token"], b"t0k3n");
        assert!(m.lookup("other").unwrap_err().contains("not mounted"));
        assert!(m.lookup("../etc").is_err());
    }

    #[test]
    fn manifest_secrets_are_per_namespace() {
        let m = ManifestSecrets::default();
        m.replace(BTreeMap::from([(
            ("a".to_owned(), "s".to_owned()),
            SecretValues::default(),
        )]));
        assert!(m.lookup("a", "s").is_ok());
        assert!(m.lookup("b", "s").unwrap_err().contains("no Secret b/s"));
    }
}
