//! The product's rules as plain functions over plain values: no database, no HTTP, no clock
//! of their own (every function takes `now`). Each rule lives in the file named after it.

pub mod decide;
pub mod outcome;
pub mod rate_limit;
pub mod retry;
pub mod send_window;

/// Why a configuration cannot be used as written, in words a DBA can act on (it is shown in
/// `status` and stored as a robot's `last_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<String> for ConfigError {
    fn from(reason: String) -> Self {
        ConfigError(reason)
    }
}

impl From<&str> for ConfigError {
    fn from(reason: &str) -> Self {
        ConfigError(reason.to_owned())
    }
}

impl std::ops::Deref for ConfigError {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}
