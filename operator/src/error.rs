//! The operator's one error type. Each variant names the object at fault; `metric_label`
//! keys the failure counter so every error is both logged and counted.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("{object}: {source}")]
    Finalizer {
        object: String,
        #[source]
        source: Box<kube::runtime::finalizer::Error<Error>>,
    },
    #[error("JetStream: {0}")]
    Queue(String),
    #[error("route table bucket: {0}")]
    Routes(String),
    #[error("{0}")]
    Serialize(#[from] serde_yaml::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}: missing {1}")]
    MissingField(String, &'static str),
    #[error("cache of {0} never became ready")]
    CacheNotReady(&'static str),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A setting of the operator process (`--listen`, `--nats-url`, the kubeconfig) that
    /// cannot be used; it stops the process rather than one reconcile.
    #[error("{setting}: {message}")]
    Setting { setting: String, message: String },
    /// Another replica took the leader Lease; this one exits to restart as a standby.
    #[error("lost the leader Lease")]
    LostLease,
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl Error {
    pub fn setting(setting: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Setting {
            setting: setting.into(),
            message: message.to_string(),
        }
    }

    /// A short, bounded label for the `sluice_operator_reconcile_errors_total` counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer { .. } => "finalizer",
            Error::Queue(_) | Error::Routes(_) => "jetstream",
            Error::Serialize(_) | Error::Json(_) => "serialize",
            Error::MissingField(..) => "missing_field",
            Error::CacheNotReady(_) => "cache",
            Error::Timeout(_) => "timeout",
            Error::Setting { .. } => "setting",
            Error::LostLease => "lease",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
