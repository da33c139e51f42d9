//! sql/roles.sql on PostgreSQL, proved by logging in as each role it creates (a real login with
//! a password, not SET ROLE): the writer adds messages and reads their status, may cancel and
//! requeue, and can neither read a robot URL nor change a worker-owned column; the worker runs
//! the real binary end to end against the WeCom stand-in; the dashboard reads counts and the
//! log, never a URL, and writes nothing. The script is safe to run twice.

mod cli_support;
mod login_support;

use cli_support::{add_robot_key, secret_key, secret_part, Cli};
use login_support::{Login, PASSWORD};
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use wecom_outbox::testing::{server_url, standin, TestDatabase};

const ROLES_SQL: &str = include_str!("../sql/roles.sql");

/// A migrated test database with sql/roles.sql applied under names of this test's own (roles
/// belong to the whole server). `db` is declared first so it is dropped first: a role can only
/// be dropped once no database holds grants to it.
struct Setup {
    db: TestDatabase,
    roles: Roles,
}

/// The roles one test created, dropped at its end (also when it fails).
struct Roles {
    writer: String,
    worker: String,
    dashboard: String,
    /// Logins made members of a role, dropped with the roles.
    members: Vec<String>,
}

impl Roles {
    fn new() -> Roles {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        Roles {
            writer: format!("appsheet_writer_{suffix}"),
            worker: format!("wecom_worker_{suffix}"),
            dashboard: format!("wecom_dashboard_{suffix}"),
            members: Vec::new(),
        }
    }

    fn all(&self) -> Vec<String> {
        let mut all = self.members.clone();
        all.extend([
            self.writer.clone(),
            self.worker.clone(),
            self.dashboard.clone(),
        ]);
        all
    }

    /// sql/roles.sql with this test's role names in the lines a DBA edits.
    fn script(&self) -> String {
        [
            ("appsheet_writer", &self.writer),
            ("wecom_worker", &self.worker),
            ("wecom_dashboard", &self.dashboard),
        ]
        .into_iter()
        .fold(ROLES_SQL.to_owned(), |sql, (name, ours)| {
            let setting = format!(":= '{name}';");
            assert_eq!(
                sql.matches(&setting).count(),
                1,
                "sql/roles.sql sets {name} once, at the top"
            );
            sql.replace(&setting, &format!(":= '{ours}';"))
        })
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let names = self.all();
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

impl Setup {
    async fn new() -> Setup {
        let roles = Roles::new();
        let db = TestDatabase::migrated().await;
        db.exec(&roles.script()).await;
        Setup { db, roles }
    }

    /// The documented way one: the role itself gets a login.
    async fn login_as(&self, role: &str) -> Login {
        self.db
            .exec(&format!("ALTER ROLE {role} LOGIN PASSWORD '{PASSWORD}'"))
            .await;
        Login::new(&self.db, role).await
    }

    /// The documented way two: a login of its own that is a member of the role (AppSheet's
    /// user, which also holds the school's own rights).
    async fn member_of(&mut self, role: &str) -> Login {
        let member = format!("{role}_app");
        self.roles.members.push(member.clone());
        self.db
            .exec(&format!(
                "CREATE ROLE {member} LOGIN PASSWORD '{PASSWORD}' IN ROLE {role}"
            ))
            .await;
        Login::new(&self.db, &member).await
    }

    /// Every right the three roles hold on the project's objects, one line each, sorted.
    async fn rights(&self) -> String {
        sqlx::query_scalar(
            r"
            SELECT coalesce(string_agg(line, E'\n' ORDER BY line), '') FROM (
                SELECT format('%s %s %s', c.relname, r.rolname, a.privilege_type) AS line
                FROM pg_class c
                CROSS JOIN LATERAL aclexplode(c.relacl) a
                JOIN pg_roles r ON r.oid = a.grantee
                WHERE c.relname LIKE 'wecom\_%' AND r.rolname = ANY ($1)
                UNION ALL
                SELECT format('%s.%s %s %s', c.relname, att.attname, r.rolname, a.privilege_type)
                FROM pg_attribute att
                JOIN pg_class c ON c.oid = att.attrelid
                CROSS JOIN LATERAL aclexplode(att.attacl) a
                JOIN pg_roles r ON r.oid = a.grantee
                WHERE c.relname LIKE 'wecom\_%' AND r.rolname = ANY ($1)
                UNION ALL
                SELECT format('%s() %s %s', p.proname, r.rolname, a.privilege_type)
                FROM pg_proc p
                CROSS JOIN LATERAL aclexplode(p.proacl) a
                JOIN pg_roles r ON r.oid = a.grantee
                WHERE p.proname LIKE 'wecom\_%' AND r.rolname = ANY ($1)
            ) lines",
        )
        .bind(self.roles.all())
        .fetch_one(self.db.pool())
        .await
        .expect("read the grants")
    }

    /// A robot at `url` (the admin adds robots; no role here may).
    async fn robot(&self, name: &str, url: &str) {
        self.db
            .exec(&format!(
                "INSERT INTO wecom_webhooks (webhook_name, webhook_url, notes)
                 VALUES ('{name}', '{url}', 'created for the roles test')"
            ))
            .await;
    }

    /// Runs `sql` as the worker would (its connections say wecom.actor = worker), as the admin.
    async fn as_worker_admin(&self, sql: &str) {
        self.db
            .exec(&format!(
                "BEGIN; SET LOCAL wecom.actor = 'worker'; {sql}; COMMIT;"
            ))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_script_run_again_changes_nothing_and_takes_back_broader_grants_made_by_hand() {
    let setup = Setup::new().await;
    let first = setup.rights().await;
    for wanted in [
        format!("wecom_outbox {} INSERT", setup.roles.writer),
        format!("wecom_outbox.status {} UPDATE", setup.roles.writer),
        format!("wecom_webhooks.webhook_name {} SELECT", setup.roles.writer),
        format!("wecom_webhooks {} SELECT", setup.roles.worker),
        format!("wecom_message_log {} SELECT", setup.roles.dashboard),
    ] {
        assert!(
            first.lines().any(|l| l == wanted),
            "{wanted:?} in:\n{first}"
        );
    }
    assert!(
        !first.contains(&format!("webhook_url {}", setup.roles.dashboard))
            && !first.contains(&format!("webhook_url {}", setup.roles.writer)),
        "only the worker may read robot URLs:\n{first}"
    );

    // Broader rights granted by hand (the old guide's), then the script again.
    setup
        .db
        .exec(&format!(
            "GRANT ALL ON wecom_webhooks, wecom_outbox TO {w};
             GRANT INSERT, UPDATE, DELETE ON wecom_message_log TO {d};",
            w = setup.roles.writer,
            d = setup.roles.dashboard
        ))
        .await;
    setup.db.exec(&setup.roles.script()).await;
    assert_eq!(
        setup.rights().await,
        first,
        "the same rights as after the first run"
    );
    setup.db.exec(&setup.roles.script()).await;
    assert_eq!(setup.rights().await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_adds_messages_and_reads_their_status_but_never_a_robot_url_nor_a_worker_column()
{
    let mut setup = Setup::new().await;
    let key = secret_key();
    setup
        .robot(
            "parent_group",
            &format!("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={key}"),
        )
        .await;
    let writer = setup.roles.writer.clone();
    let mut app = setup.member_of(&writer).await;
    app.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type, dedupe_key)
         VALUES ('parent_group', '陈小明: lesson moved / 课程改期', 'lesson', 'lesson-1')
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM wecom_outbox WHERE dedupe_key = 'lesson-1' AND status = 'pending'")
            .await,
        1,
        "the writer reads its row's status"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM wecom_webhooks WHERE destination = 'parent_group'")
            .await,
        1,
        "robot names, for a list of destinations"
    );

    for sql in [
        "SELECT webhook_url FROM wecom_webhooks",
        "SELECT * FROM wecom_webhooks",
        "SELECT notes FROM wecom_webhooks",
        "UPDATE wecom_outbox SET attempts = 0",
        "UPDATE wecom_outbox SET locked_by = 'me', locked_until = now()",
        "UPDATE wecom_outbox SET sent_at = now()",
        "UPDATE wecom_outbox SET content = 'changed'",
        "DELETE FROM wecom_outbox",
        "SELECT * FROM wecom_message_log",
        "SELECT * FROM wecom_templates",
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url) VALUES ('mine', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x')",
        "UPDATE wecom_webhooks SET is_active = false",
        "SELECT wecom_enqueue_fee_reminders()",
    ] {
        app.denied(sql).await;
    }
    // Not even the worker's session setting lends it the worker's rights.
    app.denied("SET wecom.actor = 'worker'; UPDATE wecom_outbox SET attempts = 9")
        .await;

    let said = app
        .refused("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('nobody', 'x')")
        .await;
    assert!(
        said.contains("unknown destination nobody") && !said.contains(secret_part(&key)),
        "the INSERT check still names the problem, and only that: {said}"
    );
    assert_eq!(
        setup
            .db
            .count("SELECT count(*) FROM wecom_outbox WHERE status = 'pending' AND attempts = 0 AND content LIKE '陈小明%'")
            .await,
        1,
        "nothing the writer tried changed the row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_may_cancel_a_pending_row_and_requeue_a_failed_one_and_nothing_else() {
    let setup = Setup::new().await;
    setup
        .robot(
            "office",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        )
        .await;
    let writer = setup.roles.writer.clone();
    let mut app = setup.login_as(&writer).await;
    app.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, dedupe_key)
         VALUES ('office', 'one', 'one'), ('office', 'two', 'two'), ('office', 'three', 'three')",
    )
    .await;

    app.exec("UPDATE wecom_outbox SET status = 'cancelled' WHERE dedupe_key = 'one'")
        .await;
    setup
        .as_worker_admin(
            "UPDATE wecom_outbox SET status = 'failed', attempts = 5, last_errcode = 40058,
                                     last_error = 'invalid parameter'
             WHERE dedupe_key = 'two'",
        )
        .await;
    app.exec("UPDATE wecom_outbox SET status = 'pending' WHERE dedupe_key = 'two'")
        .await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM wecom_outbox
             WHERE (dedupe_key = 'one' AND status = 'cancelled')
                OR (dedupe_key = 'two' AND status = 'pending' AND attempts = 0)"
        )
        .await,
        2,
        "cancelled, and requeued with a fresh set of attempts"
    );

    let said = app
        .refused("UPDATE wecom_outbox SET status = 'sent' WHERE dedupe_key = 'three'")
        .await;
    assert!(
        said.contains("pending -> sent is the worker's to set"),
        "the guard says what is allowed: {said}"
    );
    setup
        .as_worker_admin(
            "UPDATE wecom_outbox SET status = 'sent', sent_at = now() WHERE dedupe_key = 'three'",
        )
        .await;
    let said = app
        .refused("UPDATE wecom_outbox SET status = 'pending' WHERE dedupe_key = 'three'")
        .await;
    assert!(said.contains("was already sent"), "{said}");
    // Saying it is the worker does not make a writer one.
    let said = app
        .refused(
            "SET wecom.actor = 'worker';
             UPDATE wecom_outbox SET status = 'pending' WHERE dedupe_key = 'three'",
        )
        .await;
    assert!(said.contains("was already sent"), "{said}");
    assert_eq!(
        setup
            .db
            .count(
                "SELECT count(*) FROM wecom_outbox WHERE dedupe_key = 'three' AND status = 'sent'"
            )
            .await,
        1
    );
}

/// sql/example_school.sql without psql's backslash commands.
fn example_school_sql() -> String {
    include_str!("../sql/example_school.sql")
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_role_runs_enqueue_reminders_delivery_status_and_send_test_with_the_real_binary()
{
    let setup = Setup::new().await;
    setup.db.exec(&example_school_sql()).await;
    let fake = standin(20, Duration::from_secs(60)).await;
    let key = secret_key();
    add_robot_key(&setup.db, &fake, "parent_group", &key).await;
    setup
        .db
        .exec("UPDATE wecom_webhooks SET is_external = true WHERE webhook_name = 'parent_group'")
        .await;
    let worker = setup.login_as(&setup.roles.worker).await;
    let as_worker = |args: &[&str]| Cli::new(args).env("DATABASE_URL", &worker.url).allow(&fake);

    let out = as_worker(&["enqueue-reminders"]).output().await;
    out.ok().never_shows(PASSWORD);
    assert!(out.stdout.starts_with("enqueued 13 reminder(s)"), "{out}");

    let run = as_worker(&["run", "--retry-base-delay", "200ms"]).spawn();
    setup
        .db
        .wait_for_status("sent", 13, Duration::from_secs(30))
        .await;
    setup
        .db
        .wait_for(
            "SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent' AND errcode = 0",
            13,
            Duration::from_secs(10),
        )
        .await;
    let (out, _) = run.stop("TERM", Duration::from_secs(20)).await;
    out.ok().never_shows(secret_part(&key));
    assert!(!out.all().contains("permission denied"), "{out}");
    assert_eq!(
        fake.received().len(),
        13,
        "each reminder reached WeCom once"
    );
    assert_eq!(
        setup
            .db
            .count("SELECT total_messages_sent::bigint FROM wecom_webhooks WHERE webhook_name = 'parent_group'")
            .await,
        13,
        "the worker keeps the Phase-1 counters"
    );

    let out = as_worker(&["status"]).output().await;
    out.ok().never_shows(secret_part(&key));
    assert!(out.stdout.contains("parent_group"), "{out}");
    as_worker(&["send-test", "parent_group", "roles check"])
        .output()
        .await
        .ok()
        .never_shows(secret_part(&key));
    assert_eq!(fake.received().len(), 14);

    // migrate is the owner's: the worker's login cannot change the schema.
    let out = as_worker(&["migrate"]).output().await;
    out.fails().never_shows(PASSWORD);
    let mut worker = worker;
    for sql in [
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'x')",
        "UPDATE wecom_outbox SET content = 'rewritten'",
        "DELETE FROM wecom_outbox",
        "DELETE FROM wecom_message_log",
        "UPDATE wecom_webhooks SET webhook_url = 'https://evil.example/'",
        "CREATE TABLE wecom_mine (id int)",
        "SELECT * FROM wecom_templates",
    ] {
        worker.denied(sql).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reads_counts_and_the_log_but_not_robot_urls_and_cannot_write() {
    let setup = Setup::new().await;
    let key = secret_key();
    setup
        .robot(
            "parent_group",
            &format!("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={key}"),
        )
        .await;
    setup
        .db
        .exec(
            "INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id)
             VALUES ('parent_group', 'a', 'fee_reminder', 1), ('parent_group', 'b', 'fee_reminder', 2)",
        )
        .await;
    setup
        .as_worker_admin(
            "UPDATE wecom_outbox SET status = 'sent', sent_at = now(), robot_name = 'parent_group'
             WHERE content = 'a';
             SELECT wecom_write_log(id) FROM wecom_outbox WHERE content = 'a'",
        )
        .await;
    let mut board = setup.login_as(&setup.roles.dashboard).await;
    assert_eq!(
        board
            .count("SELECT count(*) FILTER (WHERE status = 'pending') * 10 + count(*) FILTER (WHERE status = 'sent') FROM wecom_outbox")
            .await,
        11,
        "counts by status"
    );
    assert_eq!(
        board
            .count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent' AND webhook_name = 'parent_group'")
            .await,
        1,
        "the log"
    );
    assert_eq!(
        board
            .count("SELECT coalesce(sum(reminders_sent), 0)::bigint FROM wecom_reminders_per_day")
            .await,
        1,
        "the seed's metrics view"
    );
    assert_eq!(
        board
            .count(
                "SELECT count(*) FROM wecom_webhooks w JOIN wecom_robot_state s ON s.robot_id = w.id
                 WHERE w.is_active AND w.disabled_reason IS NULL AND w.total_messages_sent >= 0"
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
        "SELECT wecom_enqueue_fee_reminders()",
    ] {
        board.denied(sql).await;
    }
}
