//! Test helpers for the MySQL 8 / MariaDB backend's SQL: a database of its own per test on the
//! server `MYSQL_DATABASE_URL` names (a `mysql://` URL without a database, for a user that may
//! CREATE DATABASE), the migrations of `migrations/mysql` applied by sqlx's migrator, and
//! short ways to run SQL and read what a refusal said.
//!
//! Without `MYSQL_DATABASE_URL` a test prints that it was SKIPPED and passes: `scripts/test`
//! always sets it (starting a throwaway MariaDB when needed), so CI runs every one.

#![allow(dead_code)]

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, MySqlConnection, Row};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use wecom_outbox::testing::{mysql_server_url, mysql_with_database};

/// The migration scripts of this backend, applied in order by sqlx's migrator.
pub const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/mysql");

/// Migration 023 as the school ran it (DESIGN.md), after minimal stand-ins for the tables it
/// refers to: InnoDB, foreign keys from the log to enrollments and session_log, and the
/// ALTER TABLE on tutors. `{charset}` is the school's table charset.
pub const PHASE1_023: &str = "
CREATE TABLE enrollments (id INT AUTO_INCREMENT PRIMARY KEY, student_name VARCHAR(100)) ENGINE=InnoDB DEFAULT CHARSET={charset};
CREATE TABLE session_log (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB DEFAULT CHARSET={charset};
CREATE TABLE tutors (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB DEFAULT CHARSET={charset};
CREATE TABLE wecom_webhooks (id INT AUTO_INCREMENT PRIMARY KEY, webhook_name VARCHAR(100) NOT NULL UNIQUE,
  webhook_url TEXT NOT NULL, target_description VARCHAR(255), is_active BOOLEAN DEFAULT TRUE,
  last_used_at TIMESTAMP NULL, total_messages_sent INT DEFAULT 0, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  created_by VARCHAR(255), notes TEXT) ENGINE=InnoDB DEFAULT CHARSET={charset};
CREATE TABLE wecom_message_log (id INT AUTO_INCREMENT PRIMARY KEY, webhook_name VARCHAR(100) NOT NULL,
  message_type VARCHAR(50), message_content TEXT NOT NULL, enrollment_id INT NULL, session_id INT NULL,
  send_status VARCHAR(20) DEFAULT 'pending', send_timestamp TIMESTAMP NULL, error_message TEXT NULL,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  FOREIGN KEY (enrollment_id) REFERENCES enrollments(id) ON DELETE SET NULL,
  FOREIGN KEY (session_id) REFERENCES session_log(id) ON DELETE SET NULL) ENGINE=InnoDB DEFAULT CHARSET={charset};
ALTER TABLE tutors ADD COLUMN wecom_userid VARCHAR(100) NULL;
";

/// Migration 023's tables in the given charset (utf8mb4, or an older school's utf8 / latin1).
pub fn phase1(charset: &str) -> String {
    PHASE1_023.replace("{charset}", charset)
}

/// A database of one test's own, dropped when the value is dropped.
pub struct MyDb {
    /// Connections to the test's database (utf8mb4).
    pub pool: MySqlPool,
    /// The database's name.
    pub name: String,
    server: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl MyDb {
    /// A new, empty utf8mb4 database; None when there is no server to test on.
    pub async fn empty(test: &str) -> Option<MyDb> {
        let server = mysql_server_url(test)?;
        let name = format!(
            "wecom_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(24)
                .collect::<String>(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = MySqlConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to MYSQL_DATABASE_URL: {e}"));
        admin
            .execute(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4").as_str())
            .await
            .expect("CREATE DATABASE");
        let options = MySqlConnectOptions::from_str(&mysql_with_database(&server, &name))
            .expect("a mysql:// URL")
            .charset("utf8mb4")
            .disable_statement_logging();
        let pool = MySqlPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .expect("connect to the test database");
        Some(MyDb { pool, name, server })
    }

    /// A new database with every migration applied.
    pub async fn migrated(test: &str) -> Option<MyDb> {
        let db = Self::empty(test).await?;
        db.migrate().await.expect("migrations/mysql apply");
        Some(db)
    }

    /// Applies the migrations not applied yet (sqlx's migrator over migrations/mysql);
    /// returns how many ran.
    pub async fn migrate(&self) -> Result<usize, sqlx::migrate::MigrateError> {
        let migrator = sqlx::migrate::Migrator::new(Path::new(MIGRATIONS)).await?;
        let before = self.count("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '_sqlx_migrations'").await;
        let applied_before = if before == 1 {
            self.count("SELECT COUNT(*) FROM _sqlx_migrations").await
        } else {
            0
        };
        migrator.run(&self.pool).await?;
        let applied_after = self.count("SELECT COUNT(*) FROM _sqlx_migrations").await;
        Ok((applied_after - applied_before) as usize)
    }

    /// Runs SQL (one or more statements); panics with the server's message on error.
    pub async fn exec(&self, sql: &str) {
        if let Err(e) = sqlx::raw_sql(sql).execute(&self.pool).await {
            panic!("SQL failed: {e}\n{sql}");
        }
    }

    /// Runs SQL that must fail, and returns the server's message.
    pub async fn exec_err(&self, sql: &str) -> String {
        match sqlx::raw_sql(sql).execute(&self.pool).await {
            Ok(_) => panic!("SQL was accepted but must be refused:\n{sql}"),
            Err(e) => error_text(&e),
        }
    }

    /// The one integer a query returns (BIGINT, INT or BIGINT UNSIGNED; CAST a SUM AS SIGNED).
    pub async fn count(&self, sql: &str) -> i64 {
        let row = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        row.try_get::<i64, _>(0)
            .or_else(|_| row.try_get::<i32, _>(0).map(i64::from))
            .or_else(|_| row.try_get::<u64, _>(0).map(|v| v as i64))
            .unwrap_or_else(|e| panic!("not an integer: {e}\n{sql}"))
    }

    /// The one text (or NULL) a query returns.
    pub async fn text(&self, sql: &str) -> Option<String> {
        let row = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        text_at(&row, 0)
    }

    /// One connection of this database, for session state (@wecom_actor, @wecom_log_note).
    pub async fn connection(&self) -> MySqlConnection {
        let options = MySqlConnectOptions::from_str(&mysql_with_database(&self.server, &self.name))
            .expect("a mysql:// URL")
            .charset("utf8mb4")
            .disable_statement_logging();
        options.connect().await.expect("connect")
    }

    /// A connection to this database as another login (created by the test with CREATE USER).
    pub async fn login(&self, user: &str, password: &str) -> Result<MySqlConnection, sqlx::Error> {
        MySqlConnectOptions::from_str(&mysql_with_database(&self.server, &self.name))
            .expect("a mysql:// URL")
            .username(user)
            .password(password)
            .charset("utf8mb4")
            .disable_statement_logging()
            .connect()
            .await
    }

    /// A robot (and so a destination) named `name`.
    pub async fn add_robot(&self, name: &str) {
        self.exec(&format!(
            "INSERT INTO wecom_webhooks (webhook_name, webhook_url) \
             VALUES ('{name}', 'http://127.0.0.1:9/cgi-bin/webhook/send?key={name}')"
        ))
        .await;
    }
}

/// Column `i` of a row as text, whatever the server sends (VARCHAR, TEXT, an integer, JSON as bytes).
pub fn text_at(row: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|n| n.to_string());
    }
    row.try_get::<Option<Vec<u8>>, _>(i)
        .expect("a text, integer or binary column")
        .map(|b| String::from_utf8(b).expect("UTF-8"))
}

/// What a refusal said: the server's message (MESSAGE_TEXT for a SIGNAL).
pub fn error_text(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

/// The SQLSTATE of a refusal ('45000' for the triggers' SIGNAL).
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

impl Drop for MyDb {
    /// Drops the test's database. Tests run on a multi-threaded runtime
    /// (`#[tokio::test(flavor = "multi_thread")]`) so this may block on it.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let work = async move {
            let mut admin = MySqlConnection::connect(&server).await.ok()?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                .await
                .ok()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(work));
            }
            _ => eprintln!(
                "MyDb {}: not dropped (not on a multi-thread runtime)",
                self.name
            ),
        }
    }
}
