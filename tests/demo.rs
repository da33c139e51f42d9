//! `wecom-outbox demo` end to end, as a newcomer runs it: the real binary, with no
//! `DATABASE_URL` (it starts and removes a PostgreSQL of its own), with one (it works in a
//! database of its own and drops it), interrupted with Ctrl-C, and without server binaries; and
//! with a `mysql://` `DATABASE_URL` on MariaDB (`MYSQL_DATABASE_URL`; SKIPPED when unset).

mod cli_support;

use cli_support::{eventually, Cli, Output};
use std::path::Path;
use std::time::Duration;
use wecom_outbox::testing::{standin, MySqlTestDatabase, TestDatabase};

/// The number on the summary line that starts with `label`, e.g. `45009s seen:`.
fn summary_number(out: &Output, label: &str) -> i64 {
    let line = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {out}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {line:?}"))
}

/// The throwaway cluster's directory and port, from the line that announces it.
fn throwaway(stdout: &str) -> Option<(String, u16)> {
    let line = stdout
        .lines()
        .find(|l| l.contains("throwaway PostgreSQL in "))?;
    let rest = line.split("throwaway PostgreSQL in ").nth(1)?;
    let dir = rest.split_whitespace().next()?.to_owned();
    let port = rest
        .split("127.0.0.1:")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    Some((dir, port))
}

/// What every finished demo must show: all sent, no 45009, some held by quiet hours.
#[track_caller]
fn assert_summary(out: &Output) {
    out.ok();
    assert!(out.stdout.contains("Summary"), "no summary in {out}");
    assert_eq!(summary_number(out, "45009s seen:"), 0, "{out}");
    assert!(summary_number(out, "held by quiet hours:") > 0, "{out}");
    let sent = out
        .stdout
        .lines()
        .find(|l| l.trim().starts_with("sent:"))
        .expect("a sent line");
    let words: Vec<&str> = sent.split_whitespace().collect();
    assert_eq!(words[1], words[3], "not everything was sent: {sent}");
    assert!(sent.contains("(0 failed)"), "{sent}");
    assert!(out.stdout.contains("As a parent reads them"), "{out}");
    assert!(
        out.stdout.contains("parent_group_3"),
        "no per-robot counts: {out}"
    );
    out.never_shows("demo-key-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_without_database_url_runs_on_its_own_postgres_and_removes_it() {
    let out = Cli::new(&["demo"]).output().await;
    assert_summary(&out);
    let (dir, port) = throwaway(&out.stdout).unwrap_or_else(|| panic!("no cluster in {out}"));
    assert!(
        !Path::new(&dir).exists(),
        "{dir} is still there after the demo"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the throwaway PostgreSQL still listens on {port}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_database_url_uses_a_database_of_its_own_and_drops_it() {
    let db = TestDatabase::empty().await;
    db.exec("CREATE TABLE wecom_outbox (mine text); INSERT INTO wecom_outbox VALUES ('keep me')")
        .await;
    let out = Cli::new(&["demo"]).db(&db).output().await;
    assert_summary(&out);
    assert!(out.stdout.contains("DATABASE_URL is set"), "{out}");
    assert!(
        throwaway(&out.stdout).is_none(),
        "started a cluster anyway: {out}"
    );
    let name = demo_database(&out);
    let left = db
        .count(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
        ))
        .await;
    assert_eq!(left, 0, "the demo's database {name} was not dropped");
    let mine = db
        .count("SELECT count(*) FROM wecom_outbox WHERE mine = 'keep me'")
        .await;
    assert_eq!(mine, 1, "the demo touched the user's database");
    let views = db
        .count(
            "SELECT count(*) FROM pg_views WHERE viewname = 'active_enrollments_needing_renewal'",
        )
        .await;
    assert_eq!(
        views, 0,
        "the example school was loaded into the user's database"
    );
}

/// The demo's own database name, from the line that announces it.
fn demo_database(out: &Output) -> String {
    out.stdout
        .split("new database ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("which database? {out}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_a_mysql_database_url_runs_on_mariadb_in_a_database_of_its_own_and_drops_it() {
    let Some(db) = MySqlTestDatabase::empty("demo_on_mysql").await else {
        return;
    };
    db.exec("CREATE TABLE wecom_outbox (mine TEXT); INSERT INTO wecom_outbox VALUES ('keep me')")
        .await;
    let out = Cli::new(&["demo"])
        .env("DATABASE_URL", &db.url)
        .output()
        .await;
    assert_summary(&out);
    assert!(out.stdout.contains("example_school_mysql.sql"), "{out}");
    assert!(
        out.stdout
            .contains("CALL wecom_enqueue_fee_reminders(NULL)"),
        "{out}"
    );
    assert!(
        summary_number(&out, "Enqueued") > 0,
        "no fee reminders: {out}"
    );
    let name = demo_database(&out);
    let left = db
        .count(&format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{name}'"
        ))
        .await;
    assert_eq!(left, 0, "the demo's database {name} was not dropped");
    let mine = db
        .count("SELECT COUNT(*) FROM wecom_outbox WHERE mine = 'keep me'")
        .await;
    assert_eq!(mine, 1, "the demo touched the user's database");
    let views = db
        .count("SELECT COUNT(*) FROM information_schema.views WHERE table_schema = DATABASE()")
        .await;
    assert_eq!(
        views, 0,
        "the example school was loaded into the user's database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mysql_example_school_reminds_the_due_unrenewed_and_a_paid_renewal_cancels_the_reminder(
) {
    let Some(db) = MySqlTestDatabase::migrated("example_school_mysql").await else {
        return;
    };
    let fake = standin(0, Duration::from_secs(60)).await;
    db.add_robot(&fake, "parent_group", None, 20, Duration::from_secs(60))
        .await;
    db.exec(include_str!("../sql/example_school_mysql.sql"))
        .await;
    db.exec("CALL wecom_enqueue_fee_reminders(NULL)").await;
    let reminded = "SELECT COUNT(*) FROM wecom_outbox
                    WHERE message_type = 'fee_reminder' AND status = 'pending'";
    assert_eq!(db.count(reminded).await, 13, "enrollments 1-12 and 30");
    assert_eq!(
        db.count(&format!(
            "{reminded} AND enrollment_id IN (1,2,3,4,5,6,7,8,9,10,11,12,30)"
        ))
        .await,
        13,
        "the due, unrenewed, active enrollments are the ones reminded"
    );
    db.exec(
        "INSERT INTO enrollments (id, student_id, tutor_id, assigned_day, assigned_time, start_date,
                                  end_date, total_credits, renewed_from_id)
         VALUES (37, 1, 1, 'Monday', '16:00', CURDATE(), CURDATE() + INTERVAL 84 DAY, 12, 1);
         INSERT INTO payments (enrollment_id, amount, paid_at) VALUES (37, 3600.00, NOW())",
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM wecom_outbox WHERE enrollment_id = 1 AND status = 'cancelled'"
        )
        .await,
        1,
        "the payment for the renewal cancelled enrollment 1's reminder"
    );
    assert_eq!(db.count(reminded).await, 12, "the others still go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stops_on_ctrl_c_and_removes_its_postgres() {
    let demo = Cli::new(&["demo", "--extra-messages", "400"]).spawn();
    eventually(
        "the demo to start draining",
        Duration::from_secs(60),
        || {
            demo.assert_running();
            let started = demo.stdout_so_far().contains("replicas started");
            async move { started }
        },
    )
    .await;
    let (out, took) = demo.stop("INT", Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(130), "{out}");
    assert!(out.stderr.contains("interrupted"), "{out}");
    assert!(took < Duration::from_secs(15), "slow to stop: {took:?}");
    let (dir, _) = throwaway(&out.stdout).unwrap_or_else(|| panic!("no cluster in {out}"));
    assert!(
        !Path::new(&dir).exists(),
        "{dir} is still there after Ctrl-C"
    );
}

#[tokio::test]
async fn demo_without_postgres_binaries_says_how_to_install_them() {
    let out = Cli::new(&["demo", "--pg-bin-dir", "/nonexistent/bin"])
        .output()
        .await;
    let error = out.one_line_error();
    assert!(error.contains("apt-get install postgresql"), "{out}");
    assert!(error.contains("DATABASE_URL"), "{out}");
}

#[tokio::test]
async fn demo_help_explains_its_options_with_an_example() {
    let out = Cli::new(&["demo", "--help"]).output().await;
    out.ok();
    for needle in [
        "Example",
        "--window",
        "[default: 3s]",
        "--pg-bin-dir",
        "DATABASE_URL",
    ] {
        assert!(out.stdout.contains(needle), "no {needle:?} in {out}");
    }
}
