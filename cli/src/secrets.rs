//! `--secrets SOURCE` of `sluice router` and `sluice worker`: where the Secrets their Triggers
//! name are read. On a cluster a router reads them from the Kubernetes API (Triggers of every
//! namespace), a worker from the Secret volumes the operator mounts into its pod.

use std::{path::PathBuf, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use sluice_ingress::secrets::{MountedSecrets, SecretFuture, SecretStore, SecretValues};
use sluice_process::dev::SecretsFrom;
use tokio::sync::OnceCell;

/// Parses `--secrets`: `manifests`, `kubernetes`, `none`, or a directory of mounted Secrets.
pub fn parse(source: &str) -> anyhow::Result<SecretsFrom> {
    Ok(match source {
        "manifests" => SecretsFrom::Manifests,
        "none" => SecretsFrom::Store(Arc::new(NoSecrets)),
        "kubernetes" => SecretsFrom::Store(Arc::new(KubeSecrets::default())),
        dir if dir.starts_with('/') || dir.starts_with('.') => {
            SecretsFrom::Store(Arc::new(MountedSecrets {
                root: PathBuf::from(dir),
            }))
        }
        other => anyhow::bail!(
            "--secrets {other:?}: expected manifests, kubernetes, none, or a directory (an absolute or ./ path)"
        ),
    })
}

/// Secrets read from the API server with the pod's service account, at each use (a bridge
/// reads its Secret at every connect, so a rotated one is used from the next reconnect).
#[derive(Default)]
pub struct KubeSecrets {
    client: OnceCell<kube::Client>,
}

impl KubeSecrets {
    async fn read(&self, namespace: &str, name: &str) -> Result<SecretValues, String> {
        let client = self
            .client
            .get_or_try_init(|| async {
                sluice_operator::install_crypto_provider();
                kube::Client::try_default().await
            })
            .await
            .map_err(|e| format!("no Kubernetes API to read Secrets from: {e}"))?;
        let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
        let secret = api.get(name).await.map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 404 => format!("no Secret {namespace}/{name}"),
            kube::Error::Api(s) if s.code == 403 => format!(
                "this router may not read Secret {namespace}/{name} (chart value router.bridgeSecrets): {}",
                s.message
            ),
            _ => format!("Secret {namespace}/{name}: {e}"),
        })?;
        Ok(SecretValues::from(secret))
    }
}

impl SecretStore for KubeSecrets {
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> SecretFuture<'a> {
        Box::pin(self.read(namespace, name))
    }
}

/// A process that reads no Secrets (a router installed with `router.bridgeSecrets.enabled:
/// false`): a Trigger naming one is told so.
pub struct NoSecrets;

impl SecretStore for NoSecrets {
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> SecretFuture<'a> {
        let why = format!(
            "Secret {namespace}/{name} cannot be read: this process reads no Secrets (--secrets none; chart value router.bridgeSecrets.enabled)"
        );
        Box::pin(async move { Err(why) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert!(matches!(
            parse("manifests").unwrap(),
            SecretsFrom::Manifests
        ));
        assert!(matches!(parse("none").unwrap(), SecretsFrom::Store(_)));
        assert!(matches!(
            parse("/var/run/x").unwrap(),
            SecretsFrom::Store(_)
        ));
        let e = parse("kube").err().unwrap().to_string();
        assert!(e.contains("expected manifests, kubernetes"), "{e}");
    }
}
