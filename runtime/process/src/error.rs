//! What can stop a process from starting or a Function from loading, each naming the manifest
//! field or the process setting at fault so the user knows what to change.

use std::fmt::Display;

use sluice_bus::BusError;
use sluice_host::HostError;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A field of a Function or Trigger that this process cannot run (`spec.module.path`).
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// A setting of the process (`--addr`, `--data-dir`, `--routes-bucket`) that cannot be
    /// used.
    #[error("{setting}: {message}")]
    Setting { setting: String, message: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ProcessError {
    pub fn field(field: impl Into<String>, message: impl Display) -> Self {
        Self::Field {
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub fn setting(setting: impl Into<String>, message: impl Display) -> Self {
        Self::Setting {
            setting: setting.into(),
            message: message.to_string(),
        }
    }
}
