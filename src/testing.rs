//! Helpers for the crate's own tests and bench driver, against a real PostgreSQL and the WeCom
//! stand-in: a fresh database per test, robots pointed at the stand-in, and in-process worker
//! replicas that stop cleanly.
//!
//! Not public API: compiled only with the feature `testing`, which the tests turn on through
//! the dev-dependency on the crate itself. The helpers panic with the SQL and the error on
//! failure, as a test should; SQL they build from values binds those values, and the database
//! names in `CREATE`/`DROP DATABASE` (which cannot be bound) are quoted by the server
//! (`format('%I')`).

use crate::rules::retry::RetryPolicy;
use crate::standin::{Standin, StandinConfig};
use crate::store::Store;
use crate::wecom::allowed_hosts::AllowedHosts;
use crate::wecom::client::WeComClient;
use crate::worker::{self, WorkerConfig};
use sqlx::Connection;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A database of its own for one test, created on the server `DATABASE_URL` names and
/// dropped when the value is dropped.
pub struct TestDatabase {
    /// The URL of the test's own database.
    pub url: String,
    /// A store on that database, for the helpers and for tests that call the store directly.
    pub store: Store,
    /// The store's own PostgreSQL pool (the worker's connections), for SQL the tests run.
    pool: sqlx::PgPool,
    admin_url: String,
    name: String,
}

/// `DATABASE_URL`, or a panic that says how to get one.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with scripts/test (it starts a throwaway PostgreSQL), \
         or point DATABASE_URL at a server where this user may CREATE DATABASE",
    )
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL is a URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

impl TestDatabase {
    /// An empty database (no migrations applied).
    pub async fn empty() -> Self {
        Self::create("CREATE DATABASE %I", &[]).await
    }

    /// An empty database in another server encoding and locale, to test on another server
    /// setup, e.g. `empty_with_encoding("EUC_CN", "C")` (from `template0`, as PostgreSQL
    /// requires for an encoding other than the template's; the connections still talk UTF-8).
    pub async fn empty_with_encoding(encoding: &str, locale: &str) -> Self {
        let create = "CREATE DATABASE %I ENCODING %L LC_COLLATE %L LC_CTYPE %L TEMPLATE template0";
        Self::create(create, &[encoding, locale, locale]).await
    }

    /// Creates a database with a fresh name by `create`, a `format()` pattern whose `%I` is the
    /// name and whose `%L`s are `values`, quoted by the server.
    async fn create(create: &str, values: &[&str]) -> Self {
        let admin_url = server_url();
        let name = format!("wecom_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        let statement = server_format(&mut admin, create, &name, values)
            .await
            .unwrap_or_else(|e| panic!("format({create:?}) for {name}: {e}"));
        sqlx::raw_sql(&statement)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        let store = Store::connect_lazy(&url, 20).expect("test database URL");
        let pool = store
            .postgres_pool()
            .expect("a PostgreSQL test database")
            .clone();
        TestDatabase {
            url,
            store,
            pool,
            admin_url,
            name,
        }
    }

    /// A pool on the test's database, connected as the worker connects.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// A migrated database.
    pub async fn migrated() -> Self {
        let db = Self::empty().await;
        db.store.migrate().await.expect("migrations apply");
        db
    }

    /// Apply only the migrations numbered in `versions`, in order, for a database where the
    /// whole set cannot run (e.g. one whose encoding cannot hold 0004's emoji). They are not
    /// recorded as applied: such a database is for testing the objects they create.
    pub async fn migrate_only(&self, versions: &[i64]) {
        for version in versions {
            let migration = crate::store::postgres::MIGRATOR
                .iter()
                .find(|m| m.version == *version)
                .unwrap_or_else(|| panic!("no migration {version}"));
            sqlx::raw_sql(&migration.sql)
                .execute(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("migration {version} fails: {e}"));
        }
    }

    /// Run SQL that must succeed (several statements allowed).
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL: {sql}"));
    }

    /// Run SQL that must fail; returns the error text.
    pub async fn exec_err(&self, sql: &str) -> String {
        match sqlx::raw_sql(sql).execute(&self.pool).await {
            Ok(_) => panic!("expected an error from: {sql}"),
            Err(e) => e.to_string(),
        }
    }

    /// One number from a query such as `SELECT count(*) …`.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL: {sql}"))
    }

    /// Add a robot at the stand-in with key `key-{name}`, in `pool` if given.
    pub async fn add_robot(
        &self,
        standin: &Standin,
        name: &str,
        pool: Option<&str>,
        limit: u32,
        window: Duration,
    ) {
        let url = standin.url_for(&format!("key-{name}"));
        self.add_robot_at(name, &url, pool, limit, window).await;
    }

    /// Add a robot whose URL is exactly `url` (a stand-in key of your choosing, a
    /// placeholder, a host that is not allowed, …).
    pub async fn add_robot_at(
        &self,
        name: &str,
        url: &str,
        pool: Option<&str>,
        limit: u32,
        window: Duration,
    ) {
        sqlx::query(
            "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name, rate_limit, rate_window)
             VALUES ($1, $2, $3, $4, make_interval(secs => $5))",
        )
        .bind(name)
        .bind(url)
        .bind(pool)
        .bind(limit as i32)
        .bind(window.as_secs_f64())
        .execute(&self.pool)
        .await
        .expect("insert robot");
    }

    /// Enqueue `n` text messages `"{prefix} {i}"` for `destination`.
    pub async fn enqueue(&self, destination: &str, prefix: &str, n: i64) {
        sqlx::query(
            "INSERT INTO wecom_outbox (webhook_name, content, message_type)
             SELECT $1, $2 || ' ' || i, 'test' FROM generate_series(1, $3) i",
        )
        .bind(destination)
        .bind(prefix)
        .bind(n)
        .execute(&self.pool)
        .await
        .expect("enqueue");
    }

    /// Rows by status, e.g. `status_count("sent")`.
    pub async fn status_count(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM wecom_outbox WHERE status = $1")
            .bind(status)
            .fetch_one(&self.pool)
            .await
            .expect("count by status")
    }

    /// Wait until `want` rows have `status` (e.g. all `sent`), or panic after `timeout`.
    pub async fn wait_for_status(&self, status: &str, want: i64, timeout: Duration) {
        let what = format!("the count of {status:?} rows in wecom_outbox");
        poll(&what, want, timeout, || self.status_count(status)).await;
    }

    /// Wait until `sql` returns `want`, or panic after `timeout` with what it returned.
    pub async fn wait_for(&self, sql: &str, want: i64, timeout: Duration) {
        poll(sql, want, timeout, || self.count(sql)).await;
    }
}

/// Reads `read` every 50 ms until it gives `want`, or panics after `timeout` saying `what`
/// gave instead.
async fn poll<F, Fut>(what: &str, want: i64, timeout: Duration, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = read().await;
        if got == want {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out: {what} returned {got}, wanted {want}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `pattern` with `%I` replaced by `name` quoted as an identifier and each `%L` by the next of
/// `values` quoted as a literal, by PostgreSQL's own `format()` (statements such as `CREATE
/// DATABASE` take no bound parameters).
async fn server_format(
    conn: &mut sqlx::PgConnection,
    pattern: &str,
    name: &str,
    values: &[&str],
) -> sqlx::Result<String> {
    let arguments: Vec<&str> = std::iter::once(name)
        .chain(values.iter().copied())
        .collect();
    sqlx::query_scalar("SELECT format($1, VARIADIC $2::text[])")
        .bind(pattern)
        .bind(arguments)
        .fetch_one(conn)
        .await
}

impl Drop for TestDatabase {
    /// Drops the test's database (FORCE ends its connections). Tests must run on a
    /// multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`): blocking a
    /// current-thread runtime here would stall the connections this needs.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let work = async move {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
            let drop = "DROP DATABASE IF EXISTS %I WITH (FORCE)";
            let statement = server_format(&mut admin, drop, &name, &[]).await.ok()?;
            sqlx::raw_sql(&statement).execute(&mut admin).await.ok()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(work));
            }
            Ok(_) => eprintln!(
                "TestDatabase {}: not dropped (test runs on a current-thread runtime)",
                self.name
            ),
            Err(_) => {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(work);
                }
            }
        }
    }
}

/// A stand-in on a free loopback port.
pub async fn standin(limit: usize, window: Duration) -> Standin {
    Standin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig { limit, window },
    )
    .await
    .expect("start the WeCom stand-in")
}

/// A worker configuration for tests: fast retries, short leases, the stand-in allowed.
pub fn fast_config(worker_id: &str, standin: &Standin) -> WorkerConfig {
    WorkerConfig {
        worker_id: worker_id.into(),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
        lease: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(5),
        max_idle: Duration::from_secs(2),
        allowed_hosts: AllowedHosts::parse(&standin.local_addr().to_string())
            .expect("stand-in address"),
        ..WorkerConfig::default()
    }
}

/// A worker replica running in this process.
pub struct Replica {
    /// Cancel to ask the replica to stop (as SIGTERM would a process).
    pub shutdown: CancellationToken,
    /// The replica's task, to wait for it and see how it ended.
    pub handle: JoinHandle<Result<(), crate::store::StoreError>>,
}

impl Replica {
    /// Start a replica on its own connection pool (as a separate process would have).
    pub fn start(db: &TestDatabase, config: WorkerConfig) -> Replica {
        Replica::start_url(&db.url, config)
    }

    /// Start a replica on the database `url` names, either backend (e.g. a
    /// [`MySqlTestDatabase`]'s `url`), on its own connection pool.
    pub fn start_url(url: &str, config: WorkerConfig) -> Replica {
        let store = Store::connect_lazy(url, 10).expect("replica pool");
        let client = WeComClient::new(Duration::from_secs(5)).expect("client");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(worker::run(store, client, config, shutdown.clone()));
        Replica { shutdown, handle }
    }

    /// Ask it to stop and wait until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("replica task")
            .expect("replica result");
    }
}

/// A MySQL/MariaDB database of its own for one test, created on the server
/// `MYSQL_DATABASE_URL` names (a `mysql://` URL without a database, for a user that may
/// CREATE DATABASE) and dropped when the value is dropped.
pub struct MySqlTestDatabase {
    /// The URL of the test's own database.
    pub url: String,
    /// A store on that database (the worker's connections).
    pub store: Store,
    pool: sqlx::MySqlPool,
    server: String,
    name: String,
}

/// `MYSQL_DATABASE_URL` without a trailing `/`, or `None` after saying the test is SKIPPED.
pub fn mysql_server_url(test: &str) -> Option<String> {
    match std::env::var("MYSQL_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_owned()),
        _ => {
            eprintln!(
                "SKIPPED {test}: MYSQL_DATABASE_URL is unset (scripts/test sets it, starting a throwaway MariaDB)"
            );
            None
        }
    }
}

/// `server` (maybe with `?options`) pointed at database `db`.
pub fn mysql_with_database(server: &str, db: &str) -> String {
    match server.split_once('?') {
        Some((url, query)) => format!("{}/{db}?{query}", url.trim_end_matches('/')),
        None => format!("{server}/{db}"),
    }
}

impl MySqlTestDatabase {
    /// An empty utf8mb4 database; `None` (the test SKIPPED) without `MYSQL_DATABASE_URL`.
    pub async fn empty(test: &str) -> Option<Self> {
        let server = mysql_server_url(test)?;
        let name = format!("wecom_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::MySqlConnection::connect(&server.replace("mariadb://", "mysql://"))
            .await
            .expect("connect to MYSQL_DATABASE_URL");
        sqlx::raw_sql(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let url = mysql_with_database(&server, &name);
        let store = Store::connect_lazy(&url, 20).expect("test database URL");
        let pool = store.mysql_pool().expect("a MySQL test database").clone();
        Some(MySqlTestDatabase {
            url,
            store,
            pool,
            server,
            name,
        })
    }

    /// A database `migrate` has run on; `None` without `MYSQL_DATABASE_URL`.
    pub async fn migrated(test: &str) -> Option<Self> {
        let db = Self::empty(test).await?;
        db.store.migrate().await.expect("migrations apply");
        Some(db)
    }

    /// The worker's pool on the test's database.
    pub fn pool(&self) -> &sqlx::MySqlPool {
        &self.pool
    }

    /// Run SQL that must succeed (several statements allowed).
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL: {sql}"));
    }

    /// Run SQL that must fail; returns the server's message.
    pub async fn exec_err(&self, sql: &str) -> String {
        match sqlx::raw_sql(sql).execute(&self.pool).await {
            Ok(_) => panic!("expected an error from: {sql}"),
            Err(sqlx::Error::Database(d)) => d.message().to_owned(),
            Err(e) => e.to_string(),
        }
    }

    /// One integer from a query such as `SELECT COUNT(*) …` (any integer type).
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        let row = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\nin SQL: {sql}"));
        row.try_get::<i64, _>(0)
            .or_else(|_| row.try_get::<i32, _>(0).map(i64::from))
            .or_else(|_| row.try_get::<u64, _>(0).map(|v| v as i64))
            .or_else(|_| row.try_get::<bool, _>(0).map(i64::from))
            .unwrap_or_else(|e| panic!("not an integer: {e}\nin SQL: {sql}"))
    }

    /// Add a robot at the stand-in with key `key-{name}`, in `pool` if given.
    pub async fn add_robot(
        &self,
        standin: &Standin,
        name: &str,
        pool: Option<&str>,
        limit: u32,
        window: Duration,
    ) {
        let url = standin.url_for(&format!("key-{name}"));
        self.add_robot_at(name, &url, pool, limit, window).await;
    }

    /// Add a robot whose URL is exactly `url`; returns its id. The window is whole seconds
    /// (MySQL's `rate_window` is INT seconds), at least 1.
    pub async fn add_robot_at(
        &self,
        name: &str,
        url: &str,
        pool: Option<&str>,
        limit: u32,
        window: Duration,
    ) -> i32 {
        let done = sqlx::query(
            "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name, rate_limit, rate_window)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(name)
        .bind(url)
        .bind(pool)
        .bind(limit as i32)
        .bind(window.as_secs().max(1) as i64)
        .execute(&self.pool)
        .await
        .expect("insert robot");
        done.last_insert_id() as i32
    }

    /// Enqueue `n` text messages `"{prefix} {i}"` for `destination`, in one statement.
    pub async fn enqueue(&self, destination: &str, prefix: &str, n: i64) {
        let values = vec!["(?, ?, 'test')"; n as usize].join(", ");
        let sql = format!(
            "INSERT INTO wecom_outbox (webhook_name, content, message_type) VALUES {values}"
        );
        let mut insert = sqlx::query(&sql);
        for i in 1..=n {
            insert = insert.bind(destination).bind(format!("{prefix} {i}"));
        }
        insert.execute(&self.pool).await.expect("enqueue");
    }

    /// Wait until `want` rows have `status`, or panic after `timeout`.
    pub async fn wait_for_status(&self, status: &str, want: i64, timeout: Duration) {
        let what = format!("the count of {status:?} rows in wecom_outbox");
        poll(&what, want, timeout, || self.status_count(status)).await;
    }

    /// Wait until `sql` returns `want`, or panic after `timeout` with what it returned.
    pub async fn wait_for(&self, sql: &str, want: i64, timeout: Duration) {
        poll(sql, want, timeout, || self.count(sql)).await;
    }

    /// Rows by status, e.g. `status_count("sent")`.
    pub async fn status_count(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM wecom_outbox WHERE status = ?")
            .bind(status)
            .fetch_one(&self.pool)
            .await
            .expect("status count")
    }
}

impl Drop for MySqlTestDatabase {
    /// Drops the test's database. Tests run on a multi-threaded runtime, as for
    /// [`TestDatabase`].
    fn drop(&mut self) {
        let (server, name) = (
            self.server.replace("mariadb://", "mysql://"),
            self.name.clone(),
        );
        let work = async move {
            let mut admin = sqlx::MySqlConnection::connect(&server).await.ok()?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS `{name}`"))
                .execute(&mut admin)
                .await
                .ok()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(work));
            }
            _ => eprintln!(
                "MySqlTestDatabase {}: not dropped (not on a multi-thread runtime)",
                self.name
            ),
        }
    }
}
