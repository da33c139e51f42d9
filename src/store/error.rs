//! What can go wrong with storage, typed so callers decide without reading messages: the
//! worker waits out an unreachable database but stops on a schema it cannot use.

use thiserror::Error;

/// A storage failure. Messages never contain a password or a robot key.
#[derive(Debug, Error)]
pub enum StoreError {
    /// `DATABASE_URL` is not one this program can use; the message says why.
    #[error("{0}")]
    Url(String),
    /// The database cannot be reached right now (refused, timed out, restarting): waiting
    /// and trying again is the cure.
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
    /// The schema is missing or of a shape the worker cannot use; the message says what to
    /// run or change. Trying again does not help.
    #[error("{0}")]
    Schema(String),
    /// `migrate` found tables it would adopt that the worker cannot use, and changed nothing;
    /// each problem names table, column, the type found and the statement that fixes it.
    #[error(
        "migrate changed nothing: the existing tables do not fit wecom-outbox ({}); fix them and run migrate again",
        .problems.join("; ")
    )]
    NotAdoptable { problems: Vec<String> },
    /// The database refused a statement (a constraint, a trigger, a row it cannot decode).
    #[error(transparent)]
    Refused(sqlx::Error),
}

impl StoreError {
    /// Whether trying again later may succeed (the database was away), as opposed to a
    /// problem someone has to fix.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => StoreError::Unavailable(
                "no connection could be opened in time: is the database running and accepting connections at that host and port?".into(),
            ),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref d) if is_server_going_away(d.code().as_deref()) => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Refused(other),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => {
                StoreError::Schema(format!("a migration failed: {}", StoreError::from(e)))
            }
            other => StoreError::Schema(format!("migration failed: {other}")),
        }
    }
}

/// SQLSTATEs that mean the server is shutting down or restarting (PostgreSQL class 57P).
fn is_server_going_away(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("57P"))
}

/// Results of storage operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
