//! The real `wecom-outbox` binary on MariaDB / MySQL (`DATABASE_URL=mysql://…`), as the school
//! runs it on Cloud SQL: migrate over migration 023's tables, several replicas draining a pool
//! against the WeCom stand-in, a replica killed mid-drain, 45009, quiet hours, the fee
//! reminders, a refused INSERT, send-test and status.
//!
//! Each test makes a database of its own on `MYSQL_DATABASE_URL`; without it they print
//! SKIPPED and pass (scripts/test always sets it).

mod cli_support;
mod mysql_support;

use cli_support::{secret_key, secret_part, Cli, Running};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::testing::{standin, MySqlTestDatabase};

const MINUTE: Duration = Duration::from_secs(60);

/// `wecom-outbox ARGS` against `db`, with the stand-in allowed.
fn cli(db: &MySqlTestDatabase, fake: &Standin, args: &[&str]) -> Cli {
    Cli::new(args).env("DATABASE_URL", &db.url).allow(fake)
}

/// A replica of `run` with short retries and leases, as the PostgreSQL tests run it.
fn replica(db: &MySqlTestDatabase, fake: &Standin, name: &str, lease: &str) -> Running {
    cli(
        db,
        fake,
        &[
            "run",
            "--worker-id",
            name,
            "--retry-base-delay",
            "100ms",
            "--retry-max-delay",
            "1s",
            "--lease",
            lease,
        ],
    )
    .spawn()
}

/// The text of every message the stand-in accepted.
fn contents(fake: &Standin) -> Vec<String> {
    fake.received()
        .into_iter()
        .map(|m| m.body["text"]["content"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_adopts_the_schools_023_tables_with_their_foreign_keys_and_a_second_run_keeps_every_row(
) {
    let Some(db) = MySqlTestDatabase::empty("migrate_adopts_023").await else {
        return;
    };
    db.exec(&mysql_support::phase1("utf8mb4")).await;
    db.exec(
        "INSERT INTO enrollments (student_name) VALUES ('陳小明');
         INSERT INTO wecom_webhooks (webhook_name, webhook_url) VALUES ('admin_group', 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT');
         INSERT INTO wecom_message_log (webhook_name, message_type, message_content, enrollment_id, send_status)
         VALUES ('admin_group', 'fee_reminder', '🔴 old message', 1, 'sent');",
    )
    .await;
    let fake = standin(20, MINUTE).await;
    for run in ["first", "second"] {
        let out = cli(&db, &fake, &["migrate"]).output().await;
        out.ok();
        assert!(
            out.stdout.contains("migrations applied"),
            "{run} run: {out}"
        );
    }
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_webhooks").await, 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log WHERE message_content = '🔴 old message'")
            .await,
        1,
        "the school's log keeps its rows"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM _sqlx_migrations").await,
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/mysql"))
            .unwrap()
            .count() as i64,
        "each migration recorded once"
    );
    assert!(
        db.count("SELECT COUNT(*) FROM wecom_timezones").await > 400,
        "every IANA zone chrono-tz knows is filled in"
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM wecom_timezone_offsets
             WHERE name = 'Europe/London' AND valid_from = '2026-03-29 01:00:00' AND utc_offset = 3600"
        )
        .await,
        1,
        "a zone's daylight-saving change is stored to the second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_deliver_90_messages_through_a_pool_each_once_and_wecom_never_says_45009() {
    let Some(db) = MySqlTestDatabase::migrated("three_replicas").await else {
        return;
    };
    let window = Duration::from_secs(2);
    let fake = standin(5, window).await;
    for i in 1..=3 {
        db.add_robot(
            &fake,
            &format!("parent_{i}"),
            Some("parent_group"),
            5,
            window,
        )
        .await;
    }
    db.enqueue("parent_group", "reminder", 90).await;
    let started = Instant::now();
    let replicas: Vec<Running> = (1..=3)
        .map(|i| replica(&db, &fake, &format!("replica-{i}"), "30s"))
        .collect();
    db.wait_for_status("sent", 90, Duration::from_secs(60))
        .await;
    let elapsed = started.elapsed();
    for r in replicas {
        let (out, _) = r.stop("TERM", Duration::from_secs(20)).await;
        out.ok();
        assert!(
            !out.stderr.contains("Deadlock"),
            "a replica met a deadlock it did not get past: {out}"
        );
    }
    let stats = fake.stats();
    let received = contents(&fake);
    println!(
        "MariaDB: 90 messages, pool of 3 robots at 5 per 2 s, 3 replicas: {:.2} s (physical limit 10 s), 45009 answers: {}",
        elapsed.as_secs_f64(),
        stats.rejected_45009
    );
    assert_eq!(stats.rejected_45009, 0, "WeCom had to say 45009");
    assert_eq!(received.len(), 90, "every message arrives once");
    assert_eq!(
        received.iter().collect::<HashSet<_>>().len(),
        90,
        "none twice"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log WHERE send_status = 'sent'")
            .await,
        90,
        "one log row each"
    );
    assert_eq!(
        db.count("SELECT COUNT(DISTINCT outbox_id) FROM wecom_message_log")
            .await,
        90
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_drain_loses_nothing_its_rows_are_rescued_after_the_lease() {
    let Some(db) = MySqlTestDatabase::migrated("killed_mid_drain").await else {
        return;
    };
    let fake = standin(1000, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 100, MINUTE).await;
    // Slow answers, so the kill lands while a batch is claimed and partly sent.
    fake.set_behaviour(
        "key-parent_group",
        Behaviour::Delay(Duration::from_millis(200)),
    );
    db.enqueue("parent_group", "m", 20).await;
    let doomed = replica(&db, &fake, "doomed", "2s");
    db.wait_for(
        "SELECT COUNT(*) FROM wecom_outbox WHERE status = 'sent'",
        2,
        MINUTE,
    )
    .await;
    doomed.stop("KILL", Duration::from_secs(5)).await;
    assert!(
        db.status_count("sending").await > 0,
        "the kill left claimed rows behind"
    );
    fake.set_behaviour("key-parent_group", Behaviour::Normal);
    let rescuer = replica(&db, &fake, "rescuer", "30s");
    db.wait_for_status("sent", 20, MINUTE).await;
    rescuer.stop("TERM", Duration::from_secs(20)).await.0.ok();
    let received: HashSet<String> = contents(&fake).into_iter().collect();
    assert_eq!(received.len(), 20, "every message arrived");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log").await,
        20,
        "one log row each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_45009_from_wecom_pauses_the_robot_and_burns_no_attempt() {
    let Some(db) = MySqlTestDatabase::migrated("answer_45009").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    // A short window: the robot's pause after 45009 lasts until its window has passed.
    db.add_robot(&fake, "parent_group", None, 20, Duration::from_secs(2))
        .await;
    fake.set_behaviour("key-parent_group", Behaviour::FailTimes(1, 45009));
    db.enqueue("parent_group", "m", 1).await;
    let worker = replica(&db, &fake, "w", "30s");
    db.wait_for_status("sent", 1, MINUTE).await;
    worker.stop("TERM", Duration::from_secs(20)).await.0.ok();
    assert_eq!(
        db.count("SELECT attempts FROM wecom_outbox").await,
        1,
        "the refused attempt was given back"
    );
    assert_eq!(fake.stats().rejected_45009, 1);
    assert_eq!(contents(&fake).len(), 1, "sent once, after the pause");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_outside_the_robots_window() {
    let Some(db) = MySqlTestDatabase::migrated("quiet_hours").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    // A window that opens two hours from now, in UTC.
    db.exec(
        "UPDATE wecom_webhooks SET timezone = 'UTC',
             send_window_start = TIME(UTC_TIMESTAMP() + INTERVAL 2 HOUR),
             send_window_end = TIME(UTC_TIMESTAMP() + INTERVAL 3 HOUR)",
    )
    .await;
    db.enqueue("parent_group", "m", 3).await;
    let worker = replica(&db, &fake, "w", "30s");
    tokio::time::sleep(Duration::from_secs(3)).await;
    worker.stop("TERM", Duration::from_secs(20)).await.0.ok();
    assert!(
        fake.received().is_empty(),
        "a message went out in quiet hours"
    );
    assert_eq!(db.status_count("pending").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_the_days_reminders_and_enqueue_reminders_enqueues_them_once() {
    let Some(db) = MySqlTestDatabase::migrated("enqueue_reminders").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    db.exec(
        "CREATE TABLE enrollments (id INT AUTO_INCREMENT PRIMARY KEY, student_name VARCHAR(100),
                                   end_date DATE, renewal_status VARCHAR(100)) DEFAULT CHARSET = utf8mb4;
         CREATE VIEW active_enrollments_needing_renewal AS
         SELECT e.id AS enrollment_id, e.student_name, 'Ms Lee' AS tutor_name, 'Saturday' AS assigned_day,
                '10:30' AS assigned_time, DATEDIFF(e.end_date, CURDATE()) AS days_until_renewal,
                2.5 AS total_credits_remaining, e.renewal_status AS renewal_action_status
         FROM enrollments e;
         INSERT INTO enrollments (student_name, end_date, renewal_status) VALUES
             ('陳小明', DATE(UTC_TIMESTAMP() + INTERVAL 8 HOUR) + INTERVAL 2 DAY, '🔴 Not Yet Renewed'),
             ('Amy', DATE(UTC_TIMESTAMP() + INTERVAL 8 HOUR) + INTERVAL 20 DAY, '🔴 Not Yet Renewed');",
    )
    .await;
    let preview = cli(&db, &fake, &["preview"]).output().await;
    preview.ok();
    assert!(preview.stdout.contains("陳小明"), "{preview}");
    assert!(preview.stdout.contains("1 would be enqueued"), "{preview}");
    let first = cli(&db, &fake, &["enqueue-reminders"]).output().await;
    first.ok();
    assert!(first.stdout.contains("enqueued 1 reminder"), "{first}");
    assert!(first.stdout.contains("parent_group: 1"), "{first}");
    let second = cli(&db, &fake, &["enqueue-reminders"]).output().await;
    second.ok();
    assert!(second.stdout.contains("enqueued 0 reminder"), "{second}");
    let after = cli(&db, &fake, &["preview"]).output().await;
    after.ok();
    assert!(after.stdout.contains("1 already enqueued"), "{after}");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_outbox WHERE message_type = 'fee_reminder' AND priority = 1")
            .await,
        1,
        "one urgent reminder, enqueued once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_wecom_would_refuse_is_refused_at_insert_naming_the_rule() {
    let Some(db) = MySqlTestDatabase::migrated("bad_input").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    let error = db
        .exec_err(
            "INSERT INTO wecom_outbox (webhook_name, payload)
             VALUES ('parent_group', '{\"msgtype\": \"text\", \"text\": {}}')",
        )
        .await;
    assert!(
        error.contains("wecom_outbox: text.content is missing"),
        "{error}"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_outbox").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_and_status_work_and_never_show_the_key() {
    let Some(db) = MySqlTestDatabase::migrated("send_test_status").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    let key = secret_key();
    db.add_robot_at("parent_group", &fake.url_for(&key), None, 20, MINUTE)
        .await;
    let sent = cli(
        &db,
        &fake,
        &["send-test", "parent_group", "hello from MariaDB"],
    )
    .output()
    .await;
    sent.ok().never_shows(secret_part(&key));
    assert_eq!(contents(&fake), ["hello from MariaDB"]);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log WHERE message_type = 'send_test' AND send_status = 'sent'")
            .await,
        1
    );
    db.enqueue("parent_group", "m", 2).await;
    let status = cli(&db, &fake, &["status"]).output().await;
    status.ok().never_shows(secret_part(&key));
    assert!(status.stdout.contains("parent_group"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_written_while_the_worker_is_idle_is_delivered() {
    let Some(db) = MySqlTestDatabase::migrated("idle_poll").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    let worker = replica(&db, &fake, "w", "30s");
    // Idle long enough for the poll to back off to its slowest (2 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    db.enqueue("parent_group", "hello", 1).await;
    db.wait_for_status("sent", 1, Duration::from_secs(15)).await;
    worker.stop("TERM", Duration::from_secs(20)).await.0.ok();
    assert_eq!(contents(&fake), ["hello 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_url_works_like_a_mysql_one_and_a_bad_one_never_shows_its_password() {
    let Some(db) = MySqlTestDatabase::migrated("mariadb_scheme").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    let mariadb = db.url.replacen("mysql://", "mariadb://", 1);
    let status = Cli::new(&["status"])
        .env("DATABASE_URL", &mariadb)
        .output()
        .await;
    status.ok();
    assert!(status.stdout.contains("parent_group"), "{status}");
    let password = secret_key();
    let unreachable = format!("mysql://root:{password}@127.0.0.1:1/school");
    let refused = Cli::new(&["status"])
        .env("DATABASE_URL", &unreachable)
        .output()
        .await;
    refused.fails().never_shows(secret_part(&password));
    assert!(refused.stderr.contains("127.0.0.1"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wakeup_poll_stays_quiet_while_nothing_changes_and_signals_a_new_row() {
    let Some(db) = MySqlTestDatabase::migrated("wakeup_poll").await else {
        return;
    };
    let fake = standin(20, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    let mut wakeups = db.store.wakeups().await.expect("a poll");
    let quiet = tokio::time::timeout(Duration::from_secs(3), wakeups.next()).await;
    assert!(quiet.is_err(), "a signal although nothing changed");
    db.enqueue("parent_group", "hello", 1).await;
    let signalled = tokio::time::timeout(Duration::from_secs(10), wakeups.next()).await;
    assert!(
        matches!(signalled, Ok(Ok(wecom_outbox::store::Wake::Anything))),
        "no signal for a new row: {signalled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_whose_enrollment_was_deleted_is_logged_once_without_the_reference() {
    let Some(db) = MySqlTestDatabase::empty("deleted_enrollment").await else {
        return;
    };
    db.exec(&mysql_support::phase1("utf8mb4")).await;
    db.store.migrate().await.expect("migrate over 023's tables");
    let fake = standin(20, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    db.exec(
        "INSERT INTO enrollments (id, student_name) VALUES (1, 'Amy'), (2, 'Ben');
         INSERT INTO wecom_outbox (webhook_name, content, enrollment_id) VALUES
             ('parent_group', 'for Amy', 1), ('parent_group', 'for Ben', 2);
         DELETE FROM enrollments WHERE id = 1;",
    )
    .await;
    let worker = replica(&db, &fake, "w", "30s");
    db.wait_for_status("sent", 2, MINUTE).await;
    worker.stop("TERM", Duration::from_secs(20)).await.0.ok();
    assert_eq!(contents(&fake).len(), 2, "each sent once");
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_message_log").await, 2);
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM wecom_message_log
             WHERE enrollment_id IS NULL AND error_message LIKE 'enrollment_id 1 was refused%'"
        )
        .await,
        1,
        "the deleted enrollment's row is logged without it, saying why"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log WHERE enrollment_id = 2")
            .await,
        1,
        "the other keeps its reference"
    );
}
