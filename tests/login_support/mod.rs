//! A real login as a database role, for tests that prove what a role may and may not do:
//! the connection is the role's own (checked with `session_user`), not the test's.
#![allow(dead_code)]

use sqlx::{Connection, PgConnection};
use wecom_outbox::testing::TestDatabase;

/// The password the tests give the roles they log in as.
pub const PASSWORD: &str = "change-me";

/// A connection logged in as `role`, and the URL it used (for the real binary).
pub struct Login {
    pub role: String,
    pub url: String,
    pub conn: PgConnection,
}

impl Login {
    /// Log in to `db` as `role` (which has `PASSWORD`).
    pub async fn new(db: &TestDatabase, role: &str) -> Login {
        let mut url = reqwest::Url::parse(&db.url).expect("test database URL");
        url.set_username(role).expect("a user name");
        url.set_password(Some(PASSWORD)).expect("a password");
        let url = url.to_string();
        let mut conn = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("log in as {role}: {e}"));
        let who: String = sqlx::query_scalar("SELECT session_user::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(who, role, "the connection is the role's own login");
        Login {
            role: role.to_owned(),
            url,
            conn,
        }
    }

    /// Runs `sql`, which must succeed.
    pub async fn exec(&mut self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("as {}: {e}\nin SQL: {sql}", self.role));
    }

    /// One number from a query such as `SELECT count(*) …`.
    pub async fn count(&mut self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("as {}: {e}\nin SQL: {sql}", self.role))
    }

    /// Runs `sql`, which must be refused; returns what the server said.
    pub async fn refused(&mut self, sql: &str) -> String {
        match sqlx::raw_sql(sql).execute(&mut self.conn).await {
            Ok(_) => panic!("as {}, expected a refusal of: {sql}", self.role),
            Err(e) => e.to_string(),
        }
    }

    /// Runs `sql`, which must be refused for want of a right.
    pub async fn denied(&mut self, sql: &str) {
        let said = self.refused(sql).await;
        assert!(
            said.contains("permission denied"),
            "as {}, {sql}: {said}",
            self.role
        );
    }
}
