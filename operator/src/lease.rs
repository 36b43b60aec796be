//! Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it: take the
//! Lease when it is free or expired, renew it well within its duration, give it up on
//! shutdown so a successor starts at once. Only the holder runs controllers and the autoscaler.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;

use crate::Result;

#[derive(Clone, Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews it.
    pub renew: Duration,
}

/// Is a Lease held by `holder` (renewed at `renewed`, valid `secs`) still valid at `now`?
pub fn held(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    secs: Option<i32>,
    now: Timestamp,
) -> bool {
    match (holder, renewed) {
        (Some(h), Some(r)) if !h.is_empty() => {
            let valid = SignedDuration::from_secs(i64::from(secs.unwrap_or(15)));
            r + valid > now
        }
        _ => false,
    }
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(3),
        }
    }

    /// One attempt to take or renew the Lease; `Ok(true)` when this replica holds it.
    pub async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.duration.as_secs()).unwrap_or(15);
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref();
        let mine = holder == Some(self.identity.as_str());
        if !mine
            && held(
                holder,
                spec.renew_time.as_ref().map(|t| t.0),
                spec.lease_duration_seconds,
                now,
            )
        {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let next = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: if mine {
                    spec.acquire_time.clone()
                } else {
                    Some(MicroTime(now))
                },
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..Default::default()
            }),
        };
        // The resourceVersion in `metadata` makes this a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the Lease; `false` if `shutdown` came first.
    pub async fn acquire(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            match self.try_acquire().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "taking the leader Lease failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew) => {}
                _ = shutdown.changed() => return false,
            }
        }
    }

    /// Renews until `shutdown`; returns `false` if the Lease was lost (not renewed within
    /// its duration, or taken by another replica), `true` on shutdown.
    pub async fn hold(&self, mut shutdown: watch::Receiver<bool>) -> bool {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.renew) => {}
                _ = shutdown.changed() => return true,
            }
            match self.try_acquire().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return false,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the leader Lease failed");
                    // Stop before the Lease can expire: another replica may take it then.
                    if last_renewed.elapsed() + self.renew >= self.duration {
                        return false;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so a successor need not wait for it to expire.
    pub async fn release(&self) {
        let Ok(Some(lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        // Deleted rather than emptied: a standby creates it again at once, and an operator
        // removed by `helm uninstall` leaves no Lease behind. The preconditions make sure it
        // is still the Lease this replica holds.
        let dp = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: lease.metadata.uid.clone(),
                resource_version: lease.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        if let Err(e) = self.api.delete(&self.name, &dp).await {
            tracing::warn!(error = %e, "releasing the leader Lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_until_its_duration_passes() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        assert!(held(Some("a"), Some(t0), Some(15), at(14)));
        assert!(!held(Some("a"), Some(t0), Some(15), at(15)));
        assert!(!held(None, Some(t0), Some(15), at(1)));
        assert!(!held(Some(""), Some(t0), Some(15), at(1)));
        assert!(!held(Some("a"), None, Some(15), at(1)));
    }
}
