//! The database roles of sql/roles.sql (which the guide points at), logged in for real (ALTER
//! ROLE … LOGIN, then a connection as that role), against the example school: the triggers
//! and functions a role fires work with the rights of the role that ran `migrate` (migration
//! 0008), and the role still cannot do more than it is granted — above all, never read a
//! robot URL.

mod login_support;

use login_support::{Login, PASSWORD};
use sqlx::{Connection, PgConnection};
use std::process::Command;
use wecom_outbox::testing::{server_url, TestDatabase};

const ROLES_SQL: &str = include_str!("../sql/roles.sql");
const SECRET: &str = "SECRETKEY-definer-rights-0008";

/// A test database, the example school in it, the `parent_group` robot, and the guide's roles
/// (renamed for this run: roles belong to the whole server). `db` is declared first so it is
/// dropped first: the roles can only go once nothing in the database refers to them.
struct School {
    db: TestDatabase,
    roles: Roles,
}

/// Roles created by one test, dropped at its end (also when it fails).
struct Roles {
    suffix: String,
    created: Vec<String>,
}

impl Roles {
    fn name(&self, guide_name: &str) -> String {
        format!("{guide_name}_{}", self.suffix)
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.created);
        let admin = server_url();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                for name in names {
                    let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {name}"))
                        .execute(&mut conn)
                        .await;
                }
                conn.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

impl School {
    async fn new() -> School {
        let db = TestDatabase::migrated().await;
        db.exec(&example_school_sql()).await;
        db.exec(&format!(
            "INSERT INTO wecom_webhooks (webhook_name, webhook_url, is_external)
             VALUES ('parent_group', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={SECRET}', true)"
        ))
        .await;
        let roles = Roles {
            suffix: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            created: Vec::new(),
        };
        School { db, roles }
    }

    /// Runs sql/roles.sql, which the guide points at, with this test's role names, gives
    /// `guide_name` (appsheet_writer, wecom_worker) a login as the guide says, and returns a
    /// login as that role.
    async fn guide_role(&mut self, guide_name: &str) -> Login {
        let script = ["appsheet_writer", "wecom_worker", "wecom_dashboard"]
            .into_iter()
            .fold(ROLES_SQL.to_owned(), |sql, name| {
                let role = self.roles.name(name);
                if !self.roles.created.contains(&role) {
                    self.roles.created.push(role.clone());
                }
                sql.replace(&format!(":= '{name}';"), &format!(":= '{role}';"))
            });
        let role = self.roles.name(guide_name);
        self.db.exec(&script).await;
        self.db
            .exec(&format!("ALTER ROLE {role} LOGIN PASSWORD '{PASSWORD}'"))
            .await;
        Login::new(&self.db, &role).await
    }

    /// appsheet_writer with the school's own grants: AppSheet writes payments and enrollments.
    async fn appsheet_writer(&mut self) -> Login {
        let login = self.guide_role("appsheet_writer").await;
        self.db
            .exec(&format!(
                "GRANT USAGE ON SCHEMA example_school TO {r};
                 GRANT INSERT ON example_school.payments, example_school.enrollments TO {r};
                 GRANT USAGE ON SEQUENCE example_school.payments_id_seq TO {r};",
                r = login.role
            ))
            .await;
        login
    }
}

/// sql/example_school.sql without psql's backslash commands.
fn example_school_sql() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/example_school.sql"
    ))
    .expect("sql/example_school.sql");
    text.lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_inserted_by_appsheet_writer_enqueues_its_thank_you_message() {
    let mut school = School::new().await;
    let mut writer = school.appsheet_writer().await;
    writer
        .exec("INSERT INTO example_school.payments (enrollment_id, amount) VALUES (1, 3600)")
        .await;
    let thanks = school
        .db
        .count(
            "SELECT count(*) FROM wecom_outbox
             WHERE message_type = 'payment_received' AND webhook_name = 'parent_group'
               AND status = 'pending' AND payload #>> '{text,content}' LIKE '%陈小明%'",
        )
        .await;
    assert_eq!(
        thanks, 1,
        "the trigger read wecom_templates and the enrollment with the owner's rights"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_inserted_by_appsheet_writer_cancels_the_pending_reminder() {
    let mut school = School::new().await;
    let enqueued = school
        .db
        .count("SELECT wecom_enqueue_fee_reminders()::bigint")
        .await;
    assert_eq!(enqueued, 13, "the example school's reminders");
    let mut writer = school.appsheet_writer().await;
    writer
        .exec(
            "INSERT INTO example_school.enrollments (id, student_id, tutor_id, assigned_day, assigned_time,
                                                     start_date, end_date, total_credits, renewed_from_id)
             VALUES (40, 1, 1, 'Monday', '16:00', CURRENT_DATE + 1, CURRENT_DATE + 85, 12, 1)",
        )
        .await;
    let db = &school.db;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox WHERE enrollment_id = 1 AND status = 'cancelled'"
        )
        .await,
        1,
        "enrollment 1's reminder is cancelled"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE status = 'pending'")
            .await,
        12,
        "the other reminders are untouched"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_renewals WHERE enrollment_id = 1")
            .await,
        1,
        "the renewal is recorded for the conversion metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appsheet_writer_inserts_plain_rows_and_reads_their_status() {
    let mut school = School::new().await;
    let mut writer = school.appsheet_writer().await;
    for _ in 0..2 {
        writer
            .exec(
                "INSERT INTO wecom_outbox (webhook_name, content, message_type, dedupe_key)
                 VALUES ('parent_group', 'Lesson confirmed / 已确认上课', 'lesson', 'lesson-7')
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .await;
    }
    let status: String = sqlx::query_scalar(
        "SELECT status || ' ' || (payload ->> 'msgtype') FROM wecom_outbox WHERE dedupe_key = 'lesson-7'",
    )
    .fetch_one(&mut writer.conn)
    .await
    .expect("appsheet_writer reads its row's status");
    assert_eq!(status, "pending text");
    assert_eq!(
        school.db.count("SELECT count(*) FROM wecom_outbox").await,
        1
    );

    let refused = writer
        .refused("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('nobody', 'x')")
        .await;
    assert!(
        refused.contains("unknown destination nobody") && !refused.contains(SECRET),
        "the INSERT check still names the problem, and only that: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appsheet_writer_cannot_read_robot_urls_change_sent_rows_or_borrow_the_owners_rights() {
    let mut school = School::new().await;
    let mut writer = school.appsheet_writer().await;
    writer
        .exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'hello')")
        .await;
    let names: Vec<String> = sqlx::query_scalar("SELECT webhook_name FROM wecom_webhooks")
        .fetch_all(&mut writer.conn)
        .await
        .expect("the guide's optional grant: robot names");
    assert_eq!(names, ["parent_group"]);

    let refused = writer
        .refused("UPDATE wecom_outbox SET status = 'sent'")
        .await;
    assert!(
        refused.contains("is the worker's to set"),
        "the writer may only cancel or requeue: {refused}"
    );
    for sql in [
        "SELECT webhook_url FROM wecom_webhooks",
        "SELECT * FROM wecom_webhooks",
        "UPDATE wecom_outbox SET attempts = 0",
        "DELETE FROM wecom_outbox",
        "SELECT * FROM wecom_templates",
        "SELECT wecom_cancel_reminders(1)",
        "SELECT * FROM wecom_fee_reminders_due()",
        "SELECT wecom_enqueue_fee_reminders()",
    ] {
        let refused = writer.refused(sql).await;
        assert!(
            refused.contains("permission denied") && !refused.contains(SECRET),
            "{sql}: {refused}"
        );
    }

    // A table of its own, a trigger borrowing the owner's rights to read robot URLs into a
    // warning: refused, because PUBLIC may not execute the trigger functions.
    school
        .db
        .exec(&format!(
            "CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO {}",
            writer.role
        ))
        .await;
    writer
        .exec("CREATE TABLE scratch.mine (webhook_name text)")
        .await;
    let refused = writer
        .refused(
            "CREATE TRIGGER steal AFTER INSERT ON scratch.mine FOR EACH ROW
             EXECUTE FUNCTION wecom_enqueue_from_row('payment_received', '{{webhook_url}}',
                                                     'wecom_webhooks', 'webhook_name')",
        )
        .await;
    assert!(
        refused.contains("permission denied for function wecom_enqueue_from_row"),
        "{refused}"
    );
    assert_eq!(
        school
            .db
            .count("SELECT count(*) FROM wecom_outbox WHERE status = 'pending'")
            .await,
        1,
        "nothing it tried changed a row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_worker_role_runs_the_daily_reminders_from_the_command_line() {
    let mut school = School::new().await;
    let worker = school.guide_role("wecom_worker").await;
    let out = Command::new(env!("CARGO_BIN_EXE_wecom-outbox"))
        .arg("enqueue-reminders")
        .env("DATABASE_URL", &worker.url)
        .env_remove("RUST_LOG")
        .output()
        .expect("run wecom-outbox");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("enqueued 13 reminder(s)"), "{stdout}");
    assert!(!stderr.contains(PASSWORD), "the password shows: {stderr}");
}

/// Every function that 0008 covers, and every trigger function on a wecom_ table: a later
/// migration that replaces one (CREATE OR REPLACE resets the attributes) and forgets them
/// fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_users_fire_or_call_runs_as_its_owner_with_a_fixed_search_path() {
    let db = TestDatabase::migrated().await;
    let without: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text
         FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND (p.proname IN ('wecom_setting', 'wecom_render_message', 'wecom_enqueue_problem',
                              'wecom_reminder_destination', 'wecom_daily_reminders_due',
                              'wecom_fee_reminders_due', 'wecom_enqueue_fee_reminders',
                              'wecom_run_daily_reminders', 'wecom_cancel_reminders',
                              'wecom_enqueue_from_row', 'wecom_cancel_reminders_from_row')
                OR p.oid IN (SELECT t.tgfoid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                             WHERE NOT t.tgisinternal AND c.relname LIKE 'wecom\\_%'))
           AND NOT (p.prosecdef AND p.proconfig = ARRAY['search_path=public, pg_temp'])
         ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert!(
        without.is_empty(),
        "without SECURITY DEFINER SET search_path = public, pg_temp: {without:?}"
    );
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
           AND has_function_privilege('public', p.oid, 'EXECUTE')
         ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        open,
        [
            "wecom_daily_reminders_due",
            "wecom_enqueue_problem",
            "wecom_reminder_destination",
            "wecom_render_message",
            "wecom_setting"
        ],
        "only the definer functions that read settings, templates and robot names are open to all"
    );
}

/// `migrate` run in another schema (`search_path` of its connection): the functions are
/// pinned to that schema, not to public, and a role whose own search_path is the default
/// still inserts through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definer_functions_are_pinned_to_the_schema_migrate_ran_in() {
    // Declared before the database, so they are dropped after it (also when a check fails).
    let mut roles = Roles {
        suffix: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        created: Vec::new(),
    };
    let db = TestDatabase::empty().await;
    db.exec("CREATE SCHEMA \"WecomOps\"").await;
    let in_schema = format!("{}?options=-c%20search_path%3D%22WecomOps%22", db.url);
    let store = wecom_outbox::store::Store::connect(&in_schema)
        .await
        .expect("connect with a search_path");
    store.migrate().await.expect("migrate in \"WecomOps\"");
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = 'wecom_outbox' AND relnamespace = '\"WecomOps\"'::regnamespace")
            .await,
        1
    );
    let pinned: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT array_to_string(proconfig, ';') FROM pg_proc
         WHERE pronamespace = '\"WecomOps\"'::regnamespace AND prosecdef",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(pinned, [r#"search_path="WecomOps", pg_temp"#]);

    let role = roles.name("ops_writer");
    roles.created.push(role.clone());
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}';
         GRANT USAGE ON SCHEMA \"WecomOps\" TO {role};
         GRANT INSERT, SELECT ON \"WecomOps\".wecom_outbox TO {role};
         INSERT INTO \"WecomOps\".wecom_webhooks (webhook_name, webhook_url)
         VALUES ('office', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={SECRET}');"
    ))
    .await;
    let mut login = Login::new(&db, &role).await;
    login
        .exec(
            "INSERT INTO \"WecomOps\".wecom_outbox (webhook_name, content) VALUES ('office', 'hi')",
        )
        .await;
    assert_eq!(
        db.count("SELECT count(*) FROM \"WecomOps\".wecom_outbox WHERE status = 'pending'")
            .await,
        1
    );
}
