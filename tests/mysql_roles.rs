//! sql/roles_mysql.sql on a real MariaDB (MySQL 8 takes the same SQL), proved by logging in as
//! each user it creates: the writer adds messages and reads their status, may cancel, and can
//! neither read a robot URL nor change a worker-owned column; the worker runs the statements
//! the worker runs (a claim with FOR UPDATE SKIP LOCKED, the status changes, CALL
//! wecom_write_log, the robot counters); the dashboard reads counts and the log, never a URL,
//! and writes nothing. The script is safe to run twice. (The MySQL store is not in this tree
//! yet, so the worker is proved by its statements, not by the binary.)

mod mysql_support;

use mysql_support::{error_text, MyDb};
use sqlx::{Executor, MySqlConnection, Row};

const ROLES_SQL: &str = include_str!("../sql/roles_mysql.sql");
const PASSWORD: &str = "roles-pw-1";
const KEY: &str = "SECRETKEY-mysql-roles";

/// The users of one test (user names are server-wide), dropped at its end.
struct Users {
    writer: String,
    worker: String,
    dashboard: String,
}

impl Users {
    fn new() -> Users {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
        Users {
            writer: format!("aw_{tag}"),
            worker: format!("ww_{tag}"),
            dashboard: format!("wd_{tag}"),
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.writer, &self.worker, &self.dashboard]
    }

    /// sql/roles_mysql.sql with this test's user names in the lines a DBA edits.
    fn script(&self) -> String {
        [
            ("appsheet_writer", &self.writer),
            ("wecom_worker", &self.worker),
            ("wecom_dashboard", &self.dashboard),
        ]
        .into_iter()
        .fold(ROLES_SQL.to_owned(), |sql, (name, ours)| {
            let setting = format!("= '{name}';");
            assert_eq!(
                sql.matches(&setting).count(),
                1,
                "sql/roles_mysql.sql sets {name} once, at the top"
            );
            sql.replace(&setting, &format!("= '{ours}';"))
        })
    }
}

/// A migrated database with a robot, the script applied, and its users unlocked.
struct Setup {
    db: MyDb,
    users: Users,
}

impl Setup {
    async fn new(test: &str) -> Option<Setup> {
        let db = MyDb::migrated(test).await?;
        db.exec(&format!(
            "INSERT INTO wecom_webhooks (webhook_name, webhook_url, notes)
             VALUES ('parent_group', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}', 'made by the test')"
        ))
        .await;
        let users = Users::new();
        db.exec(&users.script()).await;
        for user in users.all() {
            db.exec(&format!(
                "ALTER USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}' ACCOUNT UNLOCK"
            ))
            .await;
        }
        Some(Setup { db, users })
    }

    async fn login(&self, user: &str) -> MySqlConnection {
        self.db
            .login(user, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("log in as {user}: {e}"))
    }

    /// Every right the three users hold, one line each, sorted.
    async fn rights(&self) -> String {
        let names = self
            .users
            .all()
            .iter()
            .map(|u| format!("'{u}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let grantees = self
            .users
            .all()
            .iter()
            .map(|u| format!("'''{u}''@''%'''"))
            .collect::<Vec<_>>()
            .join(", ");
        self.db
            .text(&format!(
                "SELECT COALESCE(GROUP_CONCAT(line ORDER BY line SEPARATOR '\\n'), '') FROM (
                     SELECT CONCAT(grantee, ' ', table_name, ' ', privilege_type) AS line
                     FROM information_schema.table_privileges WHERE grantee IN ({grantees})
                     UNION ALL
                     SELECT CONCAT(grantee, ' ', table_name, '.', column_name, ' ', privilege_type)
                     FROM information_schema.column_privileges WHERE grantee IN ({grantees})
                     UNION ALL
                     SELECT CONCAT(user, ' ', routine_name, ' ', proc_priv)
                     FROM mysql.procs_priv WHERE user IN ({names})
                     UNION ALL
                     SELECT CONCAT(grantee, ' *.* ', privilege_type)
                     FROM information_schema.user_privileges WHERE grantee IN ({grantees})
                     UNION ALL
                     SELECT CONCAT(grantee, ' db ', privilege_type)
                     FROM information_schema.schema_privileges WHERE grantee IN ({grantees})
                 ) g"
            ))
            .await
            .unwrap_or_default()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let users = self.users.all().map(|u| format!("'{u}'@'%'")).join(", ");
        let pool = self.db.pool.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| {
                h.block_on(async move {
                    let _ = pool
                        .execute(format!("DROP USER IF EXISTS {users}").as_str())
                        .await;
                })
            });
        }
    }
}

/// Runs `sql` as `who`; panics with the server's message on error.
async fn exec(who: &mut MySqlConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(sql).execute(&mut *who).await {
        panic!("{}\nin SQL: {sql}", error_text(&e));
    }
}

/// Runs `sql`, which must be refused; returns what the server said.
async fn refused(who: &mut MySqlConnection, sql: &str) -> String {
    match sqlx::raw_sql(sql).execute(&mut *who).await {
        Ok(_) => panic!("expected a refusal of: {sql}"),
        Err(e) => error_text(&e),
    }
}

/// Runs `sql`, which must be refused for want of a right.
async fn denied(who: &mut MySqlConnection, sql: &str) {
    let said = refused(who, sql).await;
    assert!(said.contains("denied"), "{sql}: {said}");
    assert!(!said.contains(KEY), "{said}");
}

async fn count(who: &mut MySqlConnection, sql: &str) -> i64 {
    let row = sqlx::query(sql)
        .fetch_one(&mut *who)
        .await
        .unwrap_or_else(|e| panic!("{}\nin SQL: {sql}", error_text(&e)));
    row.try_get::<i64, _>(0)
        .or_else(|_| row.try_get::<u64, _>(0).map(|v| v as i64))
        .or_else(|_| row.try_get::<i32, _>(0).map(i64::from))
        .expect("an integer")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_roles_script_run_again_changes_nothing_and_takes_back_broader_grants_made_by_hand() {
    let Some(setup) = Setup::new("roles_twice").await else {
        return;
    };
    let first = setup.rights().await;
    let (w, k, d) = (
        &setup.users.writer,
        &setup.users.worker,
        &setup.users.dashboard,
    );
    for wanted in [
        format!("'{w}'@'%' wecom_outbox INSERT"),
        format!("{w} wecom_cancel_message Execute"),
        format!("'{w}'@'%' wecom_webhooks.webhook_name SELECT"),
        format!("'{k}'@'%' wecom_webhooks SELECT"),
        format!("{k} wecom_write_log Execute"),
        format!("'{d}'@'%' wecom_message_log SELECT"),
    ] {
        assert!(
            first.lines().any(|l| l == wanted),
            "{wanted:?} in:\n{first}"
        );
    }
    assert!(
        !first.contains("webhook_url") && !first.contains("wecom_ddl"),
        "robot URLs only for the worker, migration helpers for nobody:\n{first}"
    );

    let name = &setup.db.name;
    setup
        .db
        .exec(&format!(
            "GRANT ALL ON `{name}`.wecom_outbox TO '{w}'@'%';
             GRANT SELECT (webhook_url) ON `{name}`.wecom_webhooks TO '{w}'@'%';
             GRANT ALL ON `{name}`.* TO '{d}'@'%';
             GRANT EXECUTE ON PROCEDURE `{name}`.wecom_ddl TO '{k}'@'%';"
        ))
        .await;
    setup.db.exec(&setup.users.script()).await;
    assert_eq!(
        setup.rights().await,
        first,
        "the same rights as after the first run"
    );
    setup.db.exec(&setup.users.script()).await;
    assert_eq!(setup.rights().await, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writer_adds_messages_reads_status_and_cancels_but_never_reads_a_url_nor_a_worker_column(
) {
    let Some(setup) = Setup::new("roles_writer").await else {
        return;
    };
    let mut app = setup.login(&setup.users.writer).await;
    for _ in 0..2 {
        exec(
            &mut app,
            "INSERT IGNORE INTO wecom_outbox (webhook_name, content, dedupe_key)
             VALUES ('parent_group', '陳小明: lesson moved / 课程改期', 'lesson-1'),
                    ('parent_group', 'second', 'lesson-2')",
        )
        .await;
    }
    // ON DUPLICATE KEY UPDATE would need UPDATE rights on every column the outbox's update
    // trigger sets (MariaDB checks them for the inserting user): INSERT IGNORE is the writer's.
    denied(
        &mut app,
        "INSERT INTO wecom_outbox (webhook_name, content, dedupe_key)
         VALUES ('parent_group', 'again', 'lesson-2') ON DUPLICATE KEY UPDATE id = id",
    )
    .await;
    assert_eq!(
        count(
            &mut app,
            "SELECT COUNT(*) FROM wecom_outbox WHERE status = 'pending'"
        )
        .await,
        2,
        "the writer reads its rows' status; a repeated dedupe_key is a no-op"
    );
    assert_eq!(
        count(
            &mut app,
            "SELECT COUNT(*) FROM wecom_webhooks WHERE webhook_name = 'parent_group'"
        )
        .await,
        1,
        "robot names, for a list of destinations"
    );

    exec(
        &mut app,
        "SET @id = (SELECT id FROM wecom_outbox WHERE dedupe_key = 'lesson-2');
         CALL wecom_cancel_message(@id, 'parents told in person')",
    )
    .await;
    let said = refused(
        &mut app,
        "SET @id = (SELECT id FROM wecom_outbox WHERE dedupe_key = 'lesson-2');
         CALL wecom_cancel_message(@id, NULL); CALL wecom_cancel_message('no-such-id', NULL)",
    )
    .await;
    assert!(said.contains("no message with id no-such-id"), "{said}");
    exec(
        &mut app,
        "SET @id = (SELECT id FROM wecom_outbox WHERE dedupe_key = 'lesson-2');
         CALL wecom_requeue_message(@id); CALL wecom_cancel_message(@id, 'after all')",
    )
    .await;
    assert_eq!(
        count(
            &mut app,
            "SELECT COUNT(*) FROM wecom_outbox WHERE dedupe_key = 'lesson-2'
               AND status = 'cancelled' AND last_error = 'after all'"
        )
        .await,
        1,
        "cancelled, requeued and cancelled again through the procedures"
    );
    // A sent message cannot be sent again, even by a writer that claims to be the worker.
    setup
        .db
        .exec(
            "SET @wecom_actor = 'worker';
             UPDATE wecom_outbox SET status = 'sent', sent_at = UTC_TIMESTAMP(6) WHERE dedupe_key = 'lesson-1';
             SET @wecom_actor = NULL;",
        )
        .await;
    let said = refused(
        &mut app,
        "SET @wecom_actor = 'worker';
         SET @id = (SELECT id FROM wecom_outbox WHERE dedupe_key = 'lesson-1');
         CALL wecom_requeue_message(@id)",
    )
    .await;
    assert!(said.contains("was already sent"), "{said}");

    for sql in [
        "SELECT webhook_url FROM wecom_webhooks",
        "SELECT * FROM wecom_webhooks",
        "SELECT notes FROM wecom_webhooks",
        "UPDATE wecom_outbox SET attempts = 0",
        "UPDATE wecom_outbox SET locked_by = 'me', locked_until = UTC_TIMESTAMP(6)",
        "UPDATE wecom_outbox SET content = 'changed'",
        "DELETE FROM wecom_outbox",
        "SELECT * FROM wecom_message_log",
        "UPDATE wecom_webhooks SET is_active = FALSE",
        "CALL wecom_write_log('x')",
        // No UPDATE at all: claiming to be the worker lends it no right.
        "UPDATE wecom_outbox SET status = 'cancelled'",
        "SET @wecom_actor = 'worker'; UPDATE wecom_outbox SET status = 'sent'",
        "SET @wecom_actor = 'worker'; UPDATE wecom_outbox SET attempts = 9",
    ] {
        denied(&mut app, sql).await;
    }
    assert_eq!(
        setup
            .db
            .count("SELECT COUNT(*) FROM wecom_outbox WHERE attempts = 0 AND locked_by IS NULL")
            .await,
        2,
        "nothing the writer tried changed a worker column"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_claims_sends_records_and_logs_with_only_its_grants() {
    let Some(setup) = Setup::new("roles_worker").await else {
        return;
    };
    setup
        .db
        .exec(
            "INSERT INTO wecom_outbox (webhook_name, content, message_type)
             VALUES ('parent_group', 'one', 'lesson'), ('parent_group', 'two', 'lesson')",
        )
        .await;
    let mut worker = setup.login(&setup.users.worker).await;
    // What its connections say when they connect, then one claim as the store makes it.
    exec(&mut worker, "SET @wecom_actor = 'worker'").await;
    let url: String = sqlx::query_scalar(
        "SELECT webhook_url FROM wecom_webhooks WHERE webhook_name = 'parent_group' FOR UPDATE",
    )
    .fetch_one(&mut worker)
    .await
    .expect("the worker reads the robot it sends with");
    assert!(url.ends_with(KEY));
    exec(
        &mut worker,
        "START TRANSACTION;
         SELECT robot_id FROM wecom_robot_state FOR UPDATE SKIP LOCKED;
         INSERT INTO wecom_rate_slots (robot_id, at)
             SELECT id, UTC_TIMESTAMP(6) FROM wecom_webhooks WHERE webhook_name = 'parent_group';
         SELECT id FROM wecom_outbox WHERE webhook_name = 'parent_group' AND status = 'pending'
             ORDER BY priority DESC, seq LIMIT 10 FOR UPDATE SKIP LOCKED;
         UPDATE wecom_outbox
             SET status = 'sending', attempts = attempts + 1, locked_by = 'w1',
                 locked_until = UTC_TIMESTAMP(6) + INTERVAL 2 MINUTE, lease_token = UUID(),
                 robot_name = 'parent_group'
             WHERE webhook_name = 'parent_group' AND status = 'pending';
         UPDATE wecom_robot_state SET next_check_at = UTC_TIMESTAMP(6);
         COMMIT;",
    )
    .await;
    exec(
        &mut worker,
        "START TRANSACTION;
         UPDATE wecom_outbox
             SET status = 'sent', sent_at = UTC_TIMESTAMP(6), last_errcode = 0, last_error = NULL,
                 locked_by = NULL, locked_until = NULL, lease_token = NULL
             WHERE content = 'one' AND status = 'sending';
         CALL wecom_write_log((SELECT id FROM wecom_outbox WHERE content = 'one'));
         UPDATE wecom_webhooks SET last_used_at = UTC_TIMESTAMP(), total_messages_sent = total_messages_sent + 1
             WHERE webhook_name = 'parent_group';
         UPDATE wecom_outbox
             SET status = 'failed', last_errcode = 40058, last_error = 'invalid parameter',
                 locked_by = NULL, locked_until = NULL, lease_token = NULL
             WHERE content = 'two' AND status = 'sending';
         CALL wecom_write_log((SELECT id FROM wecom_outbox WHERE content = 'two'));
         DELETE FROM wecom_rate_slots WHERE at < UTC_TIMESTAMP(6) - INTERVAL 1 DAY;
         COMMIT;",
    )
    .await;
    assert_eq!(
        count(
            &mut worker,
            "SELECT COUNT(*) FROM wecom_message_log l JOIN wecom_outbox o ON o.id = l.outbox_id
             WHERE l.send_status = o.status AND o.status IN ('sent', 'failed')"
        )
        .await,
        2,
        "one log row per finished message"
    );
    assert_eq!(
        setup
            .db
            .count("SELECT total_messages_sent FROM wecom_webhooks WHERE webhook_name = 'parent_group'")
            .await,
        1
    );
    exec(
        &mut worker,
        "SELECT wecom_setting('default_timezone', 'UTC'), wecom_daily_reminders_due()",
    )
    .await;

    for sql in [
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'x')",
        "UPDATE wecom_outbox SET content = 'rewritten'",
        "DELETE FROM wecom_outbox",
        "DELETE FROM wecom_message_log",
        "UPDATE wecom_webhooks SET webhook_url = 'https://evil.example/'",
        "SELECT * FROM wecom_templates",
        "CALL wecom_ddl('DROP TABLE wecom_outbox')",
        "CREATE TABLE wecom_mine (id INT)",
    ] {
        denied(&mut worker, sql).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_reads_counts_and_the_log_but_not_robot_urls_and_cannot_write() {
    let Some(setup) = Setup::new("roles_dashboard").await else {
        return;
    };
    setup
        .db
        .exec(
            "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'a'), ('parent_group', 'b');
             SET @wecom_actor = 'worker';
             UPDATE wecom_outbox SET status = 'sent', sent_at = UTC_TIMESTAMP(6), robot_name = 'parent_group'
                 WHERE content = 'a';
             CALL wecom_write_log((SELECT id FROM wecom_outbox WHERE content = 'a'));
             SET @wecom_actor = NULL;",
        )
        .await;
    let mut board = setup.login(&setup.users.dashboard).await;
    assert_eq!(
        count(
            &mut board,
            "SELECT CAST(SUM(status = 'pending') * 10 + SUM(status = 'sent') AS SIGNED) FROM wecom_outbox"
        )
        .await,
        11,
        "counts by status"
    );
    assert_eq!(
        count(
            &mut board,
            "SELECT COUNT(*) FROM wecom_message_log WHERE send_status = 'sent'"
        )
        .await,
        1,
        "the log"
    );
    assert_eq!(
        count(
            &mut board,
            "SELECT COUNT(*) FROM wecom_webhooks w JOIN wecom_robot_state s ON s.robot_id = w.id
             WHERE w.is_active AND w.disabled_reason IS NULL"
        )
        .await,
        1,
        "robot health, without the URL"
    );
    for sql in [
        "SELECT webhook_url FROM wecom_webhooks",
        "SELECT * FROM wecom_webhooks",
        "SELECT notes FROM wecom_webhooks",
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'x')",
        "UPDATE wecom_outbox SET status = 'cancelled'",
        "DELETE FROM wecom_message_log",
        "UPDATE wecom_settings SET value = 'UTC'",
        "CALL wecom_enqueue_fee_reminders(NULL)",
    ] {
        denied(&mut board, sql).await;
    }
}
