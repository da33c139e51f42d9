//! `migrate` on an empty database and on the school's Phase-1 tables: every row kept, the
//! new columns added with their defaults, a second run changes nothing, and the seed's own
//! SQL keeps working. Tables of types the worker cannot use are refused first, naming table,
//! column, found and needed type, with nothing changed.
//!
//! Tests run on a multi-thread runtime: `TestDatabase`'s drop closes the pool from another
//! thread, which needs this runtime's I/O driver to keep running (on a current-thread
//! runtime it waits forever).

mod cli_support;

use cli_support::Cli;
use sqlx::Row;
use std::time::Duration;
use wecom_outbox::store::postgres::ADOPTED_COLUMNS;
use wecom_outbox::store::StoreError;
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};

/// The Phase-1 tables exactly as `contract/check.py` creates them (the school's migration 023
/// on PostgreSQL): `timestamp` without time zone, `int` enrollment_id, `varchar` sizes.
const PHASE1_TABLES: &str = r#"
CREATE TABLE wecom_webhooks (id serial PRIMARY KEY, webhook_name varchar(100) NOT NULL UNIQUE,
    webhook_url text NOT NULL, target_description varchar(255), is_active boolean DEFAULT true,
    last_used_at timestamp NULL, total_messages_sent int DEFAULT 0, created_at timestamp DEFAULT now(),
    created_by varchar(255), notes text);
CREATE TABLE wecom_message_log (id serial PRIMARY KEY, webhook_name varchar(100) NOT NULL,
    message_type varchar(50), message_content text NOT NULL, enrollment_id int NULL, session_id int NULL,
    send_status varchar(20) DEFAULT 'pending', send_timestamp timestamp NULL, error_message text NULL,
    created_at timestamp DEFAULT now());
INSERT INTO wecom_webhooks (webhook_name, webhook_url, target_description, notes, created_by) VALUES
    ('admin_group', 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT', 'Admin team notifications', 'placeholder', 'dba');
INSERT INTO wecom_message_log (webhook_name, message_type, message_content, send_status, send_timestamp) VALUES
    ('admin_group', 'announcement', 'Staff meeting at 5pm', 'sent', now()),
    ('admin_group', 'announcement', 'Holiday closure', 'sent', now());
"#;

/// The seed's Step 2, unchanged.
const SEED_INSERT_PARENT_GROUP: &str = r#"
INSERT INTO wecom_webhooks (webhook_name, webhook_url, target_description, notes)
VALUES (
    'parent_group',
    'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=YOUR_PARENT_GROUP_KEY_HERE',
    'Parent customer group for fee renewal notifications',
    'External customer group - max 20 messages per minute'
);
"#;

/// The seed's "Track Message Delivery, Option 1": AppSheet adds a log row itself.
const SEED_APPSHEET_LOG_ROW: &str = r#"
INSERT INTO wecom_message_log (webhook_name, message_type, enrollment_id, message_content, send_status, send_timestamp)
VALUES ('parent_group', 'fee_reminder', 42, '{"msgtype":"text","text":{"content":"renew"}}', 'sent', NOW());
"#;

const SEED_VIEW_RECENT: &str = r#"
SELECT * FROM wecom_message_log
WHERE webhook_name = 'parent_group'
ORDER BY created_at DESC
LIMIT 20;
"#;

const SEED_COUNT_BY_DAY: &str = r#"
SELECT DATE(send_timestamp) as date, COUNT(*) as count
FROM wecom_message_log
WHERE webhook_name = 'parent_group'
GROUP BY DATE(send_timestamp);
"#;

const SEED_SUCCESS_METRICS: &str = r#"
SELECT
    DATE(send_timestamp) as date,
    COUNT(*) as reminders_sent,
    COUNT(DISTINCT enrollment_id) as unique_students
FROM wecom_message_log
WHERE webhook_name = 'parent_group'
  AND message_type = 'fee_reminder'
GROUP BY DATE(send_timestamp)
ORDER BY date DESC;
"#;

/// The seed's rate-limit monitoring query; only `INTERVAL 1 HOUR` (MySQL) is translated.
const SEED_LAST_HOUR: &str = r#"
SELECT COUNT(*) as messages_last_hour
FROM wecom_message_log
WHERE webhook_name = 'parent_group'
  AND send_timestamp >= NOW() - INTERVAL '1 hour';
"#;

/// Every table and column DESIGN.md names, as (table, column).
const CONTRACT_COLUMNS: &[(&str, &[&str])] = &[
    (
        "wecom_webhooks",
        &[
            "id",
            "webhook_name",
            "webhook_url",
            "target_description",
            "is_active",
            "last_used_at",
            "total_messages_sent",
            "created_at",
            "created_by",
            "notes",
            "pool_name",
            "rate_limit",
            "rate_window",
            "send_window_start",
            "send_window_end",
            "send_days",
            "timezone",
            "disabled_reason",
        ],
    ),
    (
        "wecom_outbox",
        &[
            "id",
            "webhook_name",
            "payload",
            "content",
            "message_type",
            "enrollment_id",
            "dedupe_key",
            "priority",
            "not_before",
            "expires_at",
            "max_attempts",
            "status",
            "attempts",
            "last_errcode",
            "last_error",
            "locked_by",
            "locked_until",
            "created_at",
            "sent_at",
        ],
    ),
    (
        "wecom_message_log",
        &[
            "id",
            "webhook_name",
            "message_type",
            "message_content",
            "enrollment_id",
            "session_id",
            "send_status",
            "send_timestamp",
            "error_message",
            "created_at",
            "outbox_id",
            "robot_name",
            "errcode",
            "attempts",
        ],
    ),
];

async fn phase1_database() -> TestDatabase {
    let db = TestDatabase::empty().await;
    db.exec(PHASE1_TABLES).await;
    db
}

async fn migrate_twice(db: &TestDatabase) {
    db.store.migrate().await.expect("first migrate");
    db.store.migrate().await.expect("second migrate");
}

/// A fingerprint of the schema: every column with its type and default, every constraint,
/// index and trigger in the public schema.
async fn schema_fingerprint(db: &TestDatabase) -> Vec<String> {
    sqlx::query_scalar(
        r#"
        SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
               || coalesce(column_default, '-')
          FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'trigger ' || tgname || ' ' || pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1
        "#,
    )
    .fetch_all(db.pool())
    .await
    .expect("schema fingerprint")
}

async fn column_type(db: &TestDatabase, table: &str, column: &str) -> String {
    sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_one(db.pool())
    .await
    .unwrap_or_else(|e| panic!("{table}.{column}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_on_an_empty_database_creates_every_contract_table_and_column() {
    let db = TestDatabase::empty().await;
    db.store.migrate().await.expect("migrate");

    for table in [
        "wecom_webhooks",
        "wecom_message_log",
        "wecom_outbox",
        "wecom_robot_state",
        "wecom_rate_slots",
        "wecom_settings",
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = '{table}'"
            ))
            .await,
            1,
            "table {table} is missing after migrate"
        );
    }
    for (table, columns) in CONTRACT_COLUMNS {
        for column in *columns {
            column_type(&db, table, column).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_migrate_changes_nothing_and_keeps_rows() {
    let db = TestDatabase::empty().await;
    db.store.migrate().await.expect("first migrate");
    db.exec(SEED_INSERT_PARENT_GROUP).await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'hello')")
        .await;
    let before = schema_fingerprint(&db).await;
    let applied = db.count("SELECT count(*) FROM _sqlx_migrations").await;

    db.store.migrate().await.expect("second migrate");

    assert_eq!(schema_fingerprint(&db).await, before, "the schema changed");
    assert_eq!(
        db.count("SELECT count(*) FROM _sqlx_migrations").await,
        applied
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 1);
    assert_eq!(db.status_count("pending").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_settings WHERE name = 'default_timezone'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_adopts_phase1_tables_and_keeps_every_row() {
    let db = phase1_database().await;
    migrate_twice(&db).await;

    let robot = sqlx::query(
        "SELECT webhook_url, target_description, notes, created_by, is_active, rate_limit,
                extract(epoch FROM rate_window)::int AS window_secs, pool_name, is_external,
                disabled_reason
         FROM wecom_webhooks WHERE webhook_name = 'admin_group'",
    )
    .fetch_one(db.pool())
    .await
    .expect("the Phase-1 robot is still there");
    assert_eq!(
        robot.get::<String, _>("webhook_url"),
        "PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT"
    );
    assert_eq!(
        robot.get::<String, _>("target_description"),
        "Admin team notifications"
    );
    assert_eq!(robot.get::<String, _>("notes"), "placeholder");
    assert_eq!(robot.get::<String, _>("created_by"), "dba");
    assert_eq!(robot.get::<Option<bool>, _>("is_active"), Some(true));
    assert_eq!(robot.get::<i32, _>("rate_limit"), 20);
    assert_eq!(robot.get::<i32, _>("window_secs"), 60);
    assert_eq!(robot.get::<Option<String>, _>("pool_name"), None);
    assert!(!robot.get::<bool, _>("is_external"));
    assert_eq!(robot.get::<Option<String>, _>("disabled_reason"), None);

    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 1);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log
             WHERE webhook_name = 'admin_group' AND send_status = 'sent'
               AND message_content IN ('Staff meeting at 5pm', 'Holiday closure')"
        )
        .await,
        2,
        "Phase-1 log rows lost or changed"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_robot_state s JOIN wecom_webhooks w ON w.id = s.robot_id
             WHERE w.webhook_name = 'admin_group'"
        )
        .await,
        1,
        "the existing robot has no worker state row"
    );
    // Adoption adds columns; it never redefines the school's.
    assert_eq!(
        column_type(&db, "wecom_message_log", "send_timestamp").await,
        "timestamp without time zone"
    );
    assert_eq!(
        column_type(&db, "wecom_message_log", "enrollment_id").await,
        "integer"
    );
    for (table, columns) in CONTRACT_COLUMNS {
        for column in *columns {
            column_type(&db, table, column).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_own_sql_works_unchanged_after_adoption() {
    let db = phase1_database().await;
    migrate_twice(&db).await;

    db.exec(SEED_INSERT_PARENT_GROUP).await;
    db.exec(
        "UPDATE wecom_webhooks
         SET webhook_url = 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=YOUR_KEY_HERE'
         WHERE webhook_name = 'parent_group';",
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks
             WHERE webhook_name = 'parent_group' AND webhook_url LIKE '%key=YOUR_KEY_HERE'
               AND is_active AND rate_limit = 20"
        )
        .await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_robot_state s JOIN wecom_webhooks w ON w.id = s.robot_id
             WHERE w.webhook_name = 'parent_group'"
        )
        .await,
        1,
        "the seed's INSERT gave the robot no worker state"
    );

    let all = sqlx::query("SELECT * FROM wecom_webhooks;")
        .fetch_all(db.pool())
        .await
        .expect("View all webhooks");
    assert_eq!(all.len(), 2);

    db.exec(SEED_APPSHEET_LOG_ROW).await;
    let recent = sqlx::query(SEED_VIEW_RECENT)
        .fetch_all(db.pool())
        .await
        .expect("View recent messages");
    assert_eq!(recent.len(), 1);

    let by_day = sqlx::query(SEED_COUNT_BY_DAY)
        .fetch_all(db.pool())
        .await
        .expect("Count messages by day");
    assert_eq!(by_day.len(), 1);
    assert_eq!(by_day[0].get::<i64, _>("count"), 1);

    let metrics = sqlx::query(SEED_SUCCESS_METRICS)
        .fetch_all(db.pool())
        .await
        .expect("success metrics");
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].get::<i64, _>("reminders_sent"), 1);
    assert_eq!(metrics[0].get::<i64, _>("unique_students"), 1);

    assert_eq!(db.count(SEED_LAST_HOUR).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_robot_is_a_destination_whose_rows_wait() {
    let db = phase1_database().await;
    migrate_twice(&db).await;

    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('admin_group', 'for later')")
        .await;

    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox
             WHERE webhook_name = 'admin_group' AND status = 'pending' AND attempts = 0"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_skips_a_placeholder_robot_without_failing_or_disabling_it() {
    let fake = standin(20, Duration::from_secs(60)).await;
    let db = phase1_database().await;
    migrate_twice(&db).await;
    db.add_robot(&fake, "parent_group", None, 20, Duration::from_secs(60))
        .await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('admin_group', 'for later')")
        .await;
    db.enqueue("parent_group", "now", 1).await;

    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for(
        "SELECT count(*) FROM wecom_outbox WHERE webhook_name = 'parent_group' AND status = 'sent'",
        1,
        Duration::from_secs(20),
    )
    .await;
    // Give the worker a few more passes over the placeholder.
    tokio::time::sleep(Duration::from_millis(500)).await;
    replica.stop().await;

    assert_eq!(fake.received().len(), 1, "only the real robot was called");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox
             WHERE webhook_name = 'admin_group' AND status = 'pending' AND attempts = 0"
        )
        .await,
        1,
        "the placeholder's row must wait, untouched"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks
             WHERE webhook_name = 'admin_group' AND is_active AND disabled_reason IS NULL"
        )
        .await,
        1,
        "a placeholder is not a broken robot"
    );
    // The worker's log row fits the Phase-1 column types, and the seed's query counts it.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log
             WHERE webhook_name = 'parent_group' AND send_status = 'sent' AND outbox_id IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(db.count(SEED_LAST_HOUR).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_log_row_fits_the_phase1_column_types() {
    let db = phase1_database().await;
    migrate_twice(&db).await;
    db.exec(SEED_INSERT_PARENT_GROUP).await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id)
         VALUES ('parent_group', 'Please renew', 'fee_reminder', 2147483647)",
    )
    .await;
    // The row as the worker leaves it after WeCom said ok …
    db.exec(
        "UPDATE wecom_outbox SET status = 'sent', attempts = 1, last_errcode = 0, sent_at = now(),
                                 robot_name = 'parent_group'",
    )
    .await;
    // … and the log row and robot counters it writes in the same transaction
    // (the statements of src/store/postgres/finish.rs).
    db.exec(
        "INSERT INTO wecom_message_log
             (webhook_name, message_type, message_content, enrollment_id, send_status,
              send_timestamp, error_message, outbox_id, robot_name, errcode, attempts)
         SELECT left(o.webhook_name, 100), left(o.message_type, 50), o.payload::text, o.enrollment_id,
                o.status, CASE WHEN o.status = 'sent' THEN now() END, o.last_error, o.id,
                o.robot_name, o.last_errcode, o.attempts
         FROM wecom_outbox o
         ON CONFLICT (outbox_id) DO NOTHING;
         UPDATE wecom_webhooks
         SET last_used_at = now(), total_messages_sent = coalesce(total_messages_sent, 0) + 1
         WHERE webhook_name = 'parent_group';",
    )
    .await;

    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log l JOIN wecom_outbox o ON o.id = l.outbox_id
             WHERE l.webhook_name = 'parent_group' AND l.robot_name = 'parent_group'
               AND l.errcode = 0 AND l.attempts = 1 AND l.enrollment_id = 2147483647
               AND l.message_content::jsonb = o.payload"
        )
        .await,
        1
    );
    let metrics = sqlx::query(SEED_SUCCESS_METRICS)
        .fetch_all(db.pool())
        .await
        .expect("success metrics");
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].get::<i64, _>("reminders_sent"), 1);
    assert_eq!(db.count(SEED_LAST_HOUR).await, 1);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks
             WHERE webhook_name = 'parent_group' AND total_messages_sent = 1
               AND last_used_at > now()::timestamp - interval '1 minute'"
        )
        .await,
        1
    );
    // Phase-1 rows have no outbox_id; the unique index must let them coexist.
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE outbox_id IS NULL")
            .await,
        2
    );
}

// ---------------------------------------------------------------------------------------
// What migrate refuses to adopt
// ---------------------------------------------------------------------------------------

/// The Phase-1 tables with one column's definition replaced (or one column added), no rows.
fn phase1_with(table: &str, column: &str, definition: &str) -> String {
    let webhooks = [
        ("id", "serial PRIMARY KEY"),
        ("webhook_name", "varchar(100) NOT NULL UNIQUE"),
        ("webhook_url", "text NOT NULL"),
        ("target_description", "varchar(255)"),
        ("is_active", "boolean DEFAULT true"),
        ("last_used_at", "timestamp NULL"),
        ("total_messages_sent", "int DEFAULT 0"),
        ("created_at", "timestamp DEFAULT now()"),
        ("created_by", "varchar(255)"),
        ("notes", "text"),
    ];
    let log = [
        ("id", "serial PRIMARY KEY"),
        ("webhook_name", "varchar(100) NOT NULL"),
        ("message_type", "varchar(50)"),
        ("message_content", "text NOT NULL"),
        ("enrollment_id", "int NULL"),
        ("session_id", "int NULL"),
        ("send_status", "varchar(20) DEFAULT 'pending'"),
        ("send_timestamp", "timestamp NULL"),
        ("error_message", "text NULL"),
        ("created_at", "timestamp DEFAULT now()"),
    ];
    let ddl = |name: &str, columns: &[(&str, &str)]| {
        let mut defs: Vec<String> = columns
            .iter()
            .map(|(c, d)| {
                let d = if name == table && *c == column {
                    definition
                } else {
                    d
                };
                format!("{c} {d}")
            })
            .collect();
        if name == table && !columns.iter().any(|(c, _)| *c == column) {
            defs.push(format!("{column} {definition}"));
        }
        format!("CREATE TABLE {name} ({});", defs.join(", "))
    };
    format!(
        "{}\n{}",
        ddl("wecom_webhooks", &webhooks),
        ddl("wecom_message_log", &log)
    )
}

/// `migrate` fails; its error, after checking that nothing at all was changed.
async fn refused(db: &TestDatabase) -> String {
    let before = schema_fingerprint(db).await;
    let err = format!(
        "{:#}",
        db.store.migrate().await.expect_err("migrate must refuse")
    );
    assert_eq!(
        schema_fingerprint(db).await,
        before,
        "refused, but changed the schema: {err}"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_class WHERE relname IN ('_sqlx_migrations', 'wecom_outbox')"
        )
        .await,
        0,
        "refused, but began migrating: {err}"
    );
    assert!(err.starts_with("migrate changed nothing"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_every_adopted_column_of_a_type_the_worker_cannot_use() {
    let db = TestDatabase::empty().await;
    for expected in ADOPTED_COLUMNS {
        let wrong = ["smallint", "text", "date"]
            .into_iter()
            .find(|t| !expected.accepts.types.contains(t))
            .expect("a type it does not accept");
        db.exec("DROP TABLE IF EXISTS wecom_webhooks, wecom_message_log")
            .await;
        db.exec(&phase1_with(expected.table, expected.column, wrong))
            .await;
        let err = refused(&db).await;
        let (table, column) = (expected.table, expected.column);
        let says = format!(
            "{table}.{column} is {wrong}, needed {}: ALTER TABLE {table} ",
            expected.accepts.needed,
        );
        assert!(err.contains(&says), "wanted {says:?} in: {err}");
        let change = format!("ALTER COLUMN {column} TYPE {}", expected.accepts.convert_to);
        assert!(err.contains(&change), "wanted {change:?} in: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_the_phase1_types_seen_in_the_field_and_keeps_every_row() {
    let db = phase1_database().await;
    db.exec(
        "ALTER TABLE wecom_webhooks ALTER COLUMN is_active DROP DEFAULT,
             ALTER COLUMN is_active TYPE smallint USING is_active::int,
             ALTER COLUMN is_active SET DEFAULT 1;
         ALTER TABLE wecom_webhooks ALTER COLUMN id TYPE bigint;
         ALTER TABLE wecom_webhooks ADD COLUMN timezone integer, ADD COLUMN rate_limit text;",
    )
    .await;

    let err = refused(&db).await;

    for says in [
        "wecom_webhooks.id is bigint, needed integer: ALTER TABLE wecom_webhooks ALTER COLUMN id TYPE integer USING id::integer",
        "wecom_webhooks.is_active is smallint, needed boolean: ALTER TABLE wecom_webhooks ALTER COLUMN is_active DROP DEFAULT, ALTER COLUMN is_active TYPE boolean USING is_active <> 0",
        "wecom_webhooks.rate_limit is text, needed integer",
        "wecom_webhooks.timezone is integer, needed text or varchar",
    ] {
        assert!(err.contains(says), "wanted {says:?} in: {err}");
    }
    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_an_adopted_log_the_worker_could_never_write_to() {
    for (change, says) in [
        (
            "ALTER TABLE wecom_message_log ADD COLUMN sent_by varchar(100) NOT NULL DEFAULT 'x';
             ALTER TABLE wecom_message_log ALTER COLUMN sent_by DROP DEFAULT",
            "wecom_message_log.sent_by (character varying(100)) is NOT NULL without a default, and the worker does not write it",
        ),
        (
            "UPDATE wecom_message_log SET enrollment_id = 0;
             ALTER TABLE wecom_message_log ALTER COLUMN enrollment_id SET NOT NULL",
            "wecom_message_log.enrollment_id (integer) is NOT NULL, but the worker leaves it NULL",
        ),
        (
            "ALTER TABLE wecom_message_log ALTER COLUMN id DROP DEFAULT",
            "wecom_message_log.id (integer) is NOT NULL without a default, and the worker does not write it, \
             so it could never write its log rows: ALTER TABLE wecom_message_log ALTER COLUMN id \
             ADD GENERATED BY DEFAULT AS IDENTITY (START WITH 3)",
        ),
        (
            "DROP TABLE wecom_message_log;
             CREATE VIEW wecom_message_log AS SELECT 1 AS id, 'x'::text AS webhook_name",
            "wecom_message_log is not a table (a view or another kind of relation)",
        ),
        (
            "ALTER TABLE wecom_webhooks DROP COLUMN is_active",
            "wecom_webhooks.is_active is missing (a Phase-1 column, needed boolean): ALTER TABLE wecom_webhooks ADD COLUMN is_active boolean",
        ),
    ] {
        let db = phase1_database().await;
        db.exec(change).await;
        let err = refused(&db).await;
        assert!(err.contains(says), "after {change}: wanted {says:?} in: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_succeeds_once_the_dba_has_run_the_statements_its_refusal_gives() {
    let db = phase1_database().await;
    db.exec(
        "ALTER TABLE wecom_webhooks ALTER COLUMN is_active DROP DEFAULT,
             ALTER COLUMN is_active TYPE smallint USING is_active::int,
             ALTER COLUMN is_active SET DEFAULT 1;
         ALTER TABLE wecom_message_log ADD COLUMN sent_by varchar(100) NOT NULL DEFAULT 'x';
         ALTER TABLE wecom_message_log ALTER COLUMN sent_by DROP DEFAULT;
         ALTER TABLE wecom_message_log ALTER COLUMN id DROP DEFAULT;",
    )
    .await;
    refused(&db).await;
    let refusal = db.store.migrate().await.expect_err("refused");
    let StoreError::NotAdoptable { problems } = &refusal else {
        panic!("expected NotAdoptable, got {refusal:?}");
    };
    assert_eq!(problems.len(), 3, "{problems:#?}");
    for problem in problems {
        // Each problem ends with what to run: "…: ALTER TABLE … [(or …)]".
        let statement = &problem[problem.find(": ALTER TABLE").expect(problem) + 2..];
        let statement = statement.split(" (or ").next().unwrap_or(statement);
        db.exec(statement).await;
    }
    migrate_twice(&db).await;
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_webhooks WHERE is_active")
            .await,
        1
    );
    db.exec(SEED_INSERT_PARENT_GROUP).await;
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_webhooks WHERE is_active")
            .await,
        2,
        "the seed's INSERT gets the default is_active = true again"
    );
    db.exec(SEED_APPSHEET_LOG_ROW).await;
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_adopts_other_reasonable_phase1_types_and_the_worker_delivers() {
    let fake = standin(20, Duration::from_secs(60)).await;
    let db = TestDatabase::empty().await;
    db.exec(
        "CREATE TABLE wecom_webhooks (id serial PRIMARY KEY, webhook_name text NOT NULL UNIQUE,
             webhook_url varchar(500) NOT NULL, target_description text, is_active boolean NOT NULL DEFAULT true,
             last_used_at timestamptz, total_messages_sent bigint DEFAULT 0, created_at timestamptz DEFAULT now(),
             created_by text, notes varchar(1000), campus text);
         CREATE TABLE wecom_message_log (id bigserial PRIMARY KEY, webhook_name text NOT NULL,
             message_type text, message_content text NOT NULL, enrollment_id bigint, session_id smallint,
             send_status text DEFAULT 'pending', send_timestamp timestamptz, error_message text,
             created_at timestamptz DEFAULT now(), sent_by text NOT NULL DEFAULT current_user,
             reviewed boolean, errcode bigint);",
    )
    .await;
    migrate_twice(&db).await;
    db.add_robot(&fake, "parent_group", None, 20, Duration::from_secs(60))
        .await;
    db.enqueue("parent_group", "hello", 2).await;

    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for(
        "SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent' AND sent_by <> ''",
        2,
        Duration::from_secs(20),
    )
    .await;
    replica.stop().await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks WHERE total_messages_sent = 2 AND last_used_at IS NOT NULL"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_command_names_what_to_change_instead_of_saying_ready() {
    let db = TestDatabase::empty().await;
    db.exec(&phase1_with(
        "wecom_webhooks",
        "is_active",
        "smallint DEFAULT 1",
    ))
    .await;
    let out = Cli::new(&["migrate"]).db(&db).output().await;
    let error = out.one_line_error();
    assert!(
        error.contains("wecom_webhooks.is_active is smallint, needed boolean"),
        "{out}"
    );
    assert!(!out.stdout.contains("ready"), "{out}");
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = '_sqlx_migrations'")
            .await,
        0
    );
}
