//! The MySQL 8.0 / MariaDB 10.6+ backend: the same operations as the PostgreSQL one, in
//! MySQL's SQL, over the schema of `migrations/mysql`. Modules per concern as in `postgres/`:
//! `claim` (what may go now), `finish` (what happened), `report` (what `status` shows),
//! `reminders` (the fee reminders' procedures), `robot` (a robot's settings from a row),
//! `zones` (the zone offsets `migrate` fills), `wakeups` (the poll that stands in for NOTIFY).
//!
//! MySQL has no RETURNING, no arrays and no LISTEN: ids are bound as lists of `?`, rows a
//! statement changed are locked and read first, and the worker polls. Times are UTC
//! DATETIME(6) (sqlx sets the session's time_zone to +00:00; nothing here changes it).

mod claim;
mod finish;
mod reminders;
mod report;
mod retention;
mod robot;
mod wakeups;
mod zones;

pub use wakeups::Poll;

use crate::store::StoreError;
use crate::wecom::redact::redact;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, MySqlConnection, Row};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// The migrations under `migrations/mysql`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

/// What `migrate` asks first: sql/mysql_preflight.sql, whose one statement is followed by
/// comments giving the messages.
const PREFLIGHT_FILE: &str = include_str!("../../../sql/mysql_preflight.sql");

/// The preflight file's statement alone (a prepared statement takes one, without `;`).
fn preflight_query() -> &'static str {
    let start = PREFLIGHT_FILE.find("SELECT").unwrap_or(0);
    let rest = &PREFLIGHT_FILE[start..];
    &rest[..rest.find(';').unwrap_or(rest.len())]
}

/// A pool of connections to MySQL or MariaDB and the operations the worker and CLI need.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
}

/// The cheapest statement that proves the database answers.
const PING: &str = "SELECT 1";

/// `mariadb://…` as sqlx spells it (`mysql://…`); other URLs unchanged.
fn sqlx_url(url: &str) -> String {
    match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    }
}

/// Connection options from `DATABASE_URL`, or an error that says what is wrong with it
/// (never the password).
fn options(url: &str) -> Result<MySqlConnectOptions, StoreError> {
    let options = MySqlConnectOptions::from_str(&sqlx_url(url)).map_err(|e| {
        StoreError::Url(format!(
            "DATABASE_URL {} is not a valid MySQL/MariaDB URL: {}",
            display_url(url),
            redact(&e.to_string())
        ))
    })?;
    // utf8mb4: 陳小明 and 🔴 must survive the round trip. No statement logging: sqlx would
    // print a whole migration file as a "slow statement" warning during `migrate` (MySQL's DDL
    // is slow); the worker's own logs say what it does.
    Ok(options.charset("utf8mb4").disable_statement_logging())
}

/// `url` with any password hidden, for messages.
pub fn display_url(url: &str) -> String {
    super::postgres::display_url(url)
}

/// Every worker connection says it is the worker: the outbox's BEFORE UPDATE/DELETE guard
/// (migration 0004) lets only such connections move rows through their life.
/// `SET NAMES utf8mb4` without a collation gives literals the server's default collation, the
/// one the routines were created with (sqlx's own utf8mb4_unicode_ci would make comparisons
/// with their results "an illegal mix of collations").
async fn as_worker(conn: &mut MySqlConnection) -> sqlx::Result<()> {
    conn.execute("SET NAMES utf8mb4").await?;
    conn.execute("SET @wecom_actor = 'worker'").await?;
    Ok(())
}

/// `n` placeholders for an `IN (…)` list; callers never pass an empty list.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A UUID stored as CHAR(36) text (MySQL has no uuid type; sqlx would send 16 bytes).
fn uuid_of(text: &str) -> sqlx::Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Whether `e` is InnoDB giving up on a transaction to break a deadlock (1213) or a lock wait
/// (1205): the transaction was rolled back and running it again is the cure.
fn is_deadlock(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("40001")
                || d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|m| matches!(m.number(), 1205 | 1213))
        }
        _ => false,
    }
}

/// Run the transaction `op` again (up to 5 times, a few milliseconds apart) when InnoDB
/// rolled it back for a deadlock. Where PostgreSQL's statements wait, InnoDB's next-key and
/// foreign-key locks sometimes deadlock instead; a recorded send must not be left `sending`
/// (its lease would end and the message would go twice) because of one.
async fn retrying<T, F, Fut>(mut op: F) -> sqlx::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    let mut tries = 0u64;
    loop {
        match op().await {
            Err(e) if is_deadlock(&e) && tries < 5 => {
                tries += 1;
                tracing::debug!(error = %e, tries, "deadlock; running the transaction again");
                tokio::time::sleep(Duration::from_millis(3 * tries)).await;
            }
            other => return other,
        }
    }
}

/// A duration as whole microseconds, for `INTERVAL ? MICROSECOND`.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl MySqlStore {
    /// A pool that connects on first use and reconnects by itself, so a worker started while
    /// the database is down waits for it instead of exiting.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| Box::pin(as_worker(conn)))
            .connect_lazy_with(options(url)?);
        Ok(MySqlStore { pool })
    }

    /// Connect now, or say plainly why not (for one-shot commands).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let probe = MySqlConnection::connect_with(&options(url)?)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to {}: {}",
                    display_url(url),
                    redact(&e.to_string())
                ))
            })?;
        let _ = probe.close().await;
        Self::connect_lazy(url, 4)
    }

    /// The underlying pool, for tests of this backend.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Ask the server whether the migrations can run at all (binary logging without
    /// `log_bin_trust_function_creators`), then apply them, fill the zone offsets from
    /// chrono-tz and read what the school's log can take. A second run changes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.preflight().await?;
        MIGRATOR.run(&self.pool).await?;
        zones::fill(&self.pool).await?;
        sqlx::query("CALL wecom_refresh_log_columns()")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Refuse, changing nothing, when the server would stop the migrations half-way.
    async fn preflight(&self) -> Result<(), StoreError> {
        let row = sqlx::query(preflight_query()).fetch_one(&self.pool).await?;
        let flag = |name: &str| -> i64 {
            row.try_get::<i64, _>(name)
                .or_else(|_| row.try_get::<u64, _>(name).map(|v| v as i64))
                .or_else(|_| row.try_get::<i32, _>(name).map(i64::from))
                .unwrap_or(0)
        };
        let (log_bin, trusted, super_user) = (
            flag("log_bin"),
            flag("trust_function_creators"),
            flag("has_super"),
        );
        if let Some(problem) = binlog_problem(log_bin, trusted, super_user) {
            return Err(StoreError::Schema(problem.into()));
        }
        let scheduler = event_scheduler(&row);
        if !scheduler.eq_ignore_ascii_case("ON") {
            tracing::warn!(
                "migrate: the event scheduler is off, so the daily fee reminders run from the workers' \
                 own scheduler (reminder_run_time in wecom_settings). To run them in the database instead, \
                 set the flag event_scheduler = on (Cloud SQL: --database-flags=event_scheduler=on)."
            );
        }
        Ok(())
    }

    /// An error that says what to do when the schema is missing.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let present: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_name = 'wecom_outbox'",
        )
        .fetch_one(&self.pool)
        .await?;
        match present {
            0 => Err(StoreError::Schema(
                "table wecom_outbox does not exist in this database: run `wecom-outbox migrate` first".into(),
            )),
            _ => Ok(()),
        }
    }

    /// One round trip to the database (`SELECT 1`), for `/healthz`: proves a connection can
    /// be had and the server answers, and costs the server nothing.
    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query(PING).execute(&self.pool).await?;
        Ok(())
    }

    /// The poll that tells the worker something may have changed (MySQL has no LISTEN).
    pub fn poll(&self) -> Poll {
        Poll::new(self.pool.clone())
    }
}

/// Why the migrations cannot run (and what to set), when binary logging is on and the user
/// may neither create routines as SUPER nor rely on `log_bin_trust_function_creators`:
/// the server would refuse the first trigger half-way through migration 0001.
fn binlog_problem(log_bin: i64, trusted: i64, super_user: i64) -> Option<&'static str> {
    (log_bin == 1 && trusted == 0 && super_user == 0).then_some(
        "migrate: this server has binary logging on, and creating wecom-outbox's triggers and \
         procedures then needs the flag log_bin_trust_function_creators = on (the user has no \
         SUPER privilege). On Cloud SQL: gcloud sql instances patch INSTANCE \
         --database-flags=log_bin_trust_function_creators=on (keep the instance's other flags in \
         that list), or Console > the instance > Edit > Flags. Elsewhere: \
         SET GLOBAL log_bin_trust_function_creators = 1 (and in my.cnf). Then run migrate again.",
    )
}

/// `@@event_scheduler` as text, whichever way the server sends it.
fn event_scheduler(row: &sqlx::mysql::MySqlRow) -> String {
    row.try_get::<String, _>("event_scheduler")
        .or_else(|_| {
            row.try_get::<Vec<u8>, _>("event_scheduler")
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .or_else(|_| {
            row.try_get::<i64, _>("event_scheduler").map(|v| {
                if v == 1 {
                    "ON".into()
                } else {
                    "OFF".into()
                }
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_logging_without_the_trust_flag_or_super_is_refused_naming_the_flag() {
        let problem = binlog_problem(1, 0, 0).expect("refused");
        assert!(problem.contains("log_bin_trust_function_creators = on"));
        assert!(problem.contains("gcloud sql instances patch"));
    }

    #[test]
    fn the_trust_flag_super_or_no_binary_log_each_lets_migrate_run() {
        assert_eq!(binlog_problem(1, 1, 0), None);
        assert_eq!(binlog_problem(1, 0, 1), None);
        assert_eq!(binlog_problem(0, 0, 0), None);
    }

    #[test]
    fn mariadb_urls_are_given_to_sqlx_as_mysql_urls() {
        assert_eq!(sqlx_url("mariadb://u@h:3306/db"), "mysql://u@h:3306/db");
        assert_eq!(sqlx_url("mysql://u@h/db"), "mysql://u@h/db");
    }

    #[test]
    fn the_preflight_is_the_files_one_statement() {
        let q = preflight_query();
        assert!(q.starts_with("SELECT @@log_bin"), "{q}");
        assert!(!q.contains(';'));
        assert!(q.contains("has_super"));
    }
}
