//! Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it: take the
//! Lease when it is free or expired, renew it well within its duration, give it up on
//! shutdown so a successor starts at once. Only the holder runs controllers and the autoscaler.
//!
//! Fencing: a leader paused past its Lease (a stalled node, a long GC, a cut network) must
//! not write once a successor may have taken over. Two clocks make that hold without trusting
//! the nodes' wall clocks to agree: a candidate counts a holder's Lease as expired only a full
//! duration after it last *saw* the record change, on its own monotonic clock (client-go's
//! observed time), never by the holder's `renewTime`; and the holder writes only through a
//! [`Fence`] that closes `duration - renew` after its last successful renewal was *sent*. The
//! renewal reached the API server after it was sent, and the successor saw it after that, so
//! the fence closes at least `renew` before any successor can start.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
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
    duration: Duration,
    /// How often the holder renews it.
    renew: Duration,
    /// The Lease record as last seen (its resourceVersion) and when, on this replica's clock.
    observed: Arc<Mutex<Option<(String, Instant)>>>,
    /// Closes `duration - renew` after a renewal: set with them ([`Elector::timed`]).
    fence: Fence,
}

const DURATION: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(3);

/// Whether a leader may still write: open until `limit` after its last successful renewal
/// was sent. Always open without leader election.
#[derive(Clone, Debug)]
pub struct Fence(Option<Arc<FenceState>>);

#[derive(Debug)]
struct FenceState {
    renewed: Mutex<Option<Instant>>,
    limit: Duration,
}

impl Fence {
    /// For a single replica running without leader election.
    pub fn open() -> Self {
        Self(None)
    }

    /// A leader's, for a Lease of `duration` renewed every `renew`: closed until the first
    /// renewal.
    fn for_lease(duration: Duration, renew: Duration) -> Self {
        Self(Some(Arc::new(FenceState {
            renewed: Mutex::new(None),
            limit: duration.saturating_sub(renew),
        })))
    }

    /// `Ok` while writes are safe; [`crate::Error::LostLease`] once a successor may lead.
    pub fn check(&self) -> Result<()> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<()> {
        let Some(s) = &self.0 else { return Ok(()) };
        let renewed = *s.renewed.lock().unwrap_or_else(|p| p.into_inner());
        match renewed {
            Some(at) if now.saturating_duration_since(at) < s.limit => Ok(()),
            _ => Err(crate::Error::LostLease),
        }
    }

    fn renewed(&self, sent: Instant) {
        if let Some(s) = &self.0 {
            *s.renewed.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent);
        }
    }
}

/// Is a Lease held by `holder`, whose record this replica first saw as it is now at
/// `observed`, still valid at `now` (both on this replica's monotonic clock)? The holder's
/// `renewTime` is not trusted: its clock may not be this one's.
pub fn held(holder: Option<&str>, secs: Option<i32>, observed: Instant, now: Instant) -> bool {
    match holder {
        Some(h) if !h.is_empty() => {
            let valid = Duration::from_secs(u64::try_from(secs.unwrap_or(15)).unwrap_or(15));
            now.saturating_duration_since(observed) < valid
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
            duration: DURATION,
            renew: RENEW,
            observed: Arc::default(),
            fence: Fence::for_lease(DURATION, RENEW),
        }
    }

    /// With a Lease `duration` renewed every `renew` (shorter in tests).
    pub fn timed(self, duration: Duration, renew: Duration) -> Self {
        Self {
            duration,
            renew,
            fence: Fence::for_lease(duration, renew),
            ..self
        }
    }

    /// The fence every write of this leader goes through.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// One attempt to take or renew the Lease; `Ok(true)` when this replica holds it.
    pub async fn try_acquire(&self) -> Result<bool> {
        let sent = Instant::now();
        let acquired = self.try_acquire_once().await;
        if matches!(acquired, Ok(true)) {
            self.fence.renewed(sent);
        }
        acquired
    }

    async fn try_acquire_once(&self) -> Result<bool> {
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
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let observed = {
            let mut o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
            match &*o {
                Some((v, at)) if *v == version => *at,
                _ => {
                    let at = Instant::now();
                    *o = Some((version, at));
                    at
                }
            }
        };
        if !mine
            && held(
                holder,
                spec.lease_duration_seconds,
                observed,
                Instant::now(),
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
    fn a_lease_is_held_until_its_duration_passes_since_it_was_seen() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(held(Some("a"), Some(15), t0, at(14)));
        assert!(!held(Some("a"), Some(15), t0, at(15)));
        assert!(!held(None, Some(15), t0, at(1)));
        assert!(!held(Some(""), Some(15), t0, at(1)));
        assert!(held(Some("a"), None, t0, at(14)), "15 s by default");
    }

    #[test]
    fn the_fence_closes_a_renewal_period_before_the_lease_can_pass() {
        let f = Fence::for_lease(DURATION, RENEW);
        let t0 = Instant::now();
        assert!(f.check_at(t0).is_err(), "never renewed");
        f.renewed(t0);
        assert!(f.check_at(t0 + Duration::from_millis(11_999)).is_ok());
        assert!(matches!(
            f.check_at(t0 + Duration::from_secs(12)),
            Err(crate::Error::LostLease)
        ));
        assert!(
            Fence::open()
                .check_at(t0 + Duration::from_secs(3600))
                .is_ok()
        );
    }
}
