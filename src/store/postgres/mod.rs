//! The PostgreSQL backend: connection, migrations, notifications, and the operations in
//! `claim` (what may go now), `finish` (what happened), `report` (what `status` shows) and
//! `reminders` (the fee reminders' SQL functions).

mod adopt;
mod claim;
mod finish;
mod reminders;
mod report;
mod retention;
mod robot;
mod wakeups;

pub use adopt::EXPECTED as ADOPTED_COLUMNS;
pub use finish::HOUSEKEEPING_LOCK;
pub use wakeups::{Heard, PgWakeups, LISTENER_LOCK, STANDBY_LOOK_EVERY};

use crate::store::StoreError;
use crate::wecom::redact::redact;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// The channel the INSERT trigger notifies, with the destination as payload.
pub const CHANNEL: &str = "wecom_outbox";

/// The migrations under `migrations/postgres`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A pool of connections and the operations the worker and CLI need.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// The cheapest statement that proves the database answers.
const PING: &str = "SELECT 1";

/// Connection options from `DATABASE_URL`, or an error that says what is wrong with it.
fn options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let known = known_parameters(url)?;
    let options = PgConnectOptions::from_str(&known).map_err(|e| {
        StoreError::Url(format!(
            "DATABASE_URL {} is not a valid PostgreSQL URL: {}",
            display_url(url),
            redact(&e.to_string())
        ))
    })?;
    // `wecom.actor = worker` tells the outbox's guard trigger (migration 0005) that this
    // connection may move rows through their life; people's connections may only cancel and
    // requeue.
    Ok(options
        .application_name("wecom-outbox")
        .options([("wecom.actor", "worker")]))
}

/// Query parameters of `DATABASE_URL` that sqlx reads; it logs any other one *with its value*,
/// which may be a secret, so those are dropped here with a warning that names only the name.
const CONNECT_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `url` with only the query parameters sqlx understands. A password parameter spelled in
/// another case (`PASSWORD=`) is refused: PostgreSQL would not read it either, and dropping it
/// would turn into a puzzling "password authentication failed".
fn known_parameters(url: &str) -> Result<String, StoreError> {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return Ok(url.to_owned()); // sqlx says what is wrong, and display_url hides it all
    };
    if parsed.query().is_none() {
        return Ok(url.to_owned());
    }
    let mut kept = Vec::new();
    let mut dropped = false;
    for (name, value) in parsed.query_pairs() {
        let understood =
            CONNECT_PARAMETERS.contains(&name.as_ref()) || name.starts_with("options[");
        if understood {
            kept.push((name.into_owned(), value.into_owned()));
        } else if name.eq_ignore_ascii_case("password") {
            return Err(StoreError::Url(format!(
                "DATABASE_URL has a query parameter {name:?}: PostgreSQL's name for it is `password`, \
                 in lower case (or put the password before the @: postgres://user:password@host/db)"
            )));
        } else {
            tracing::warn!(parameter = %name, "DATABASE_URL: ignoring a query parameter wecom-outbox does not use");
            dropped = true;
        }
    }
    if !dropped {
        return Ok(url.to_owned());
    }
    parsed.query_pairs_mut().clear().extend_pairs(&kept);
    if kept.is_empty() {
        parsed.set_query(None);
    }
    Ok(parsed.to_string())
}

/// `url` with any password hidden, for messages: the one before the `@` and any `password`
/// query parameter (in any case or encoding), which sqlx also reads.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            redact(u.as_str()).into_owned()
        }
        Err(_) => "(a value that is not a URL)".into(),
    }
}

impl PgStore {
    /// A pool that connects on first use and reconnects by itself, so a worker started while
    /// PostgreSQL is down waits for it instead of exiting.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options(url)?);
        Ok(PgStore { pool })
    }

    /// Connect now, or say plainly why not (for one-shot commands): one direct connection
    /// first, so "connection refused" or "password authentication failed" reaches the user
    /// instead of a pool time-out.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = options(url)?;
        let probe = PgConnection::connect_with(&options).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to {}: {}",
                display_url(url),
                redact(&e.to_string())
            ))
        })?;
        let _ = probe.close().await;
        Self::connect_lazy(url, 4)
    }

    /// The underlying pool, for the demo's example school and the benchmarks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Check the tables it would adopt, then apply the embedded migrations; a second run does
    /// nothing. Tables of types the worker cannot use are refused before anything changes
    /// ([`StoreError::NotAdoptable`] names each column), so `migrate` never says "ready" for a database
    /// every later command would fail on.
    #[tracing::instrument(skip(self))]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        adopt::check(&self.pool).await?;
        MIGRATOR.run(&self.pool).await?;
        // The school may have altered its log since the last run: the INSERT check uses
        // what the log can take now.
        sqlx::query("SELECT wecom_refresh_log_columns()")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An error that says what to do when the schema is missing.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let present: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('wecom_outbox')::text")
                .fetch_one(&self.pool)
                .await?;
        match present {
            Some(_) => Ok(()),
            None => Err(StoreError::Schema(
                "table wecom_outbox does not exist in this database: run `wecom-outbox migrate` first".into(),
            )),
        }
    }

    /// One round trip to the database (`SELECT 1`), for `/healthz`: proves a connection can
    /// be had and the server answers, and costs the server nothing.
    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query(PING).execute(&self.pool).await?;
        Ok(())
    }

    /// This replica's wake-ups: it listens to the outbox channel if no other replica does,
    /// and stands by otherwise ([`PgWakeups`]). NOTIFYs lost while reconnecting are caught
    /// by the worker's timed looks.
    pub async fn wakeups(&self) -> sqlx::Result<PgWakeups> {
        PgWakeups::connect(&self.pool).await
    }
}
