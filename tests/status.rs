//! `status` works for every value the schema accepts, and for rows stored before the schema
//! refused them: one robot or setting that cannot be read or planned shows its reason, and
//! the rest of the report still shows. (The everyday report is in `tests/cli.rs`.)
//!
//! Tests run on a multi-thread runtime: `TestDatabase`'s drop closes the pool from another
//! thread, which needs this runtime's I/O driver to keep running.

mod cli_support;

use chrono::{DateTime, Utc};
use cli_support::Cli;
use serde_json::Value;
use sqlx::migrate::Migrator;
use std::borrow::Cow;
use std::time::Duration;
use wecom_outbox::standin::Standin;
use wecom_outbox::store::postgres::MIGRATOR;
use wecom_outbox::testing::{standin, TestDatabase};

const MINUTE: Duration = Duration::from_secs(60);

/// The first migration that refuses odd robot rows and settings when they are written.
const CHECKS_VERSION: i64 = 6;

/// A database migrated as an earlier version left it: every migration before the checks.
async fn migrated_before_the_checks() -> TestDatabase {
    let db = TestDatabase::empty().await;
    let earlier = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .migrations
                .iter()
                .filter(|m| m.version < CHECKS_VERSION)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    earlier
        .run(db.pool())
        .await
        .expect("the migrations before the checks");
    db
}

/// Robots at the stand-in, each odd in one way, stored as an earlier version let them be,
/// with a bad default zone and a misspelt setting; then today's `migrate`.
async fn odd_but_stored() -> (TestDatabase, Standin) {
    let fake = standin(20, MINUTE).await;
    let db = migrated_before_the_checks().await;
    let own_zone = "timezone = 'Asia/Hong_Kong'";
    for (name, config) in [
        ("huge_limit", format!("rate_limit = 2147483647, {own_zone}")),
        (
            "tiny_window",
            format!("rate_window = '1 microsecond', {own_zone}"),
        ),
        (
            "huge_window",
            format!("rate_window = '100000000 years', {own_zone}"),
        ),
        (
            "nested_days",
            format!("send_days = '{{{{1,2}},{{3,4}}}}', {own_zone}"),
        ),
        ("no_days", format!("send_days = '{{}}', {own_zone}")),
        (
            "same_time",
            format!("send_window_start = '09:00', send_window_end = '09:00', {own_zone}"),
        ),
        (
            "infinite_use",
            format!("last_used_at = 'infinity', {own_zone}"),
        ),
        ("default_zone", "notes = 'no zone of its own'".to_string()),
    ] {
        db.add_robot(&fake, name, None, 20, MINUTE).await;
        db.exec(&format!(
            "UPDATE wecom_webhooks SET {config} WHERE webhook_name = '{name}'"
        ))
        .await;
    }
    db.exec(
        "UPDATE wecom_robot_state SET paused_until = 'infinity', last_error_at = '-infinity'
         WHERE robot_id = (SELECT id FROM wecom_webhooks WHERE webhook_name = 'infinite_use');
         UPDATE wecom_settings SET value = 'Mars/Olympus' WHERE name = 'default_timezone';
         INSERT INTO wecom_settings (name, value) VALUES ('default_timzone', 'UTC');",
    )
    .await;
    db.enqueue("huge_limit", "hello", 2).await;
    db.store
        .migrate()
        .await
        .expect("migrate keeps rows the checks would refuse today");
    (db, fake)
}

fn robots(status: &Value) -> Vec<&Value> {
    status["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .flat_map(|d| d["robots"].as_array().expect("robots"))
        .collect()
}

fn robot<'a>(status: &'a Value, name: &str) -> &'a Value {
    robots(status)
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no robot {name} in {status:#}"))
}

fn problem(robot: &Value) -> &str {
    robot["problem"].as_str().unwrap_or_default()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_shows_every_stored_robot_each_with_its_own_reason() {
    let (db, fake) = odd_but_stored().await;
    let out = Cli::new(&["status", "--json"])
        .db(&db)
        .allow(&fake)
        .output()
        .await;
    out.ok();
    let status: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"));
    let now = time(&status["now"]);
    assert_eq!(robots(&status).len(), 8, "{status:#}");

    let huge = robot(&status, "huge_limit");
    assert_eq!(huge["problem"], Value::Null, "{huge:#}");
    assert_eq!(huge["budget_left"], 2147483647, "{huge:#}");
    assert!(time(&huge["next_send_at"]) <= now, "{huge:#}");
    let tiny = robot(&status, "tiny_window");
    assert_eq!(tiny["problem"], Value::Null, "{tiny:#}");

    for (name, reason) in [
        ("huge_window", "skipped: rate_window of 36525000000 days is longer than 366 days"),
        (
            "nested_days",
            "skipped: send_days {{1,2},{3,4}} is an array of 2 dimensions",
        ),
        ("no_days", "skipped: send_days is empty"),
        (
            "same_time",
            "skipped: send window 09:00-09:00 starts and ends at the same time",
        ),
        (
            "default_zone",
            "skipped: wecom_settings.default_timezone \"Mars/Olympus\" is not an IANA time zone name",
        ),
    ] {
        let r = robot(&status, name);
        assert!(problem(r).starts_with(reason), "{name}: {r:#}");
        assert_eq!(r["next_send_at"], Value::Null, "{name}: {r:#}");
        assert_eq!(r["enabled"], true, "skipped, not disabled: {r:#}");
    }
    assert_eq!(
        robot(&status, "same_time")["send_window"],
        "09:00-09:00 Asia/Hong_Kong"
    );

    let infinite = robot(&status, "infinite_use");
    assert_eq!(infinite["problem"], Value::Null, "{infinite:#}");
    assert_eq!(infinite["last_used_at"], Value::Null, "{infinite:#}");

    let settings: Vec<&str> = status["settings_problems"]
        .as_array()
        .expect("settings_problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        settings
            .iter()
            .any(|p| p.starts_with("default_timezone Mars/Olympus is not an IANA time zone name")),
        "{settings:?}"
    );
    assert!(
        settings
            .iter()
            .any(|p| p.starts_with("unknown setting default_timzone")),
        "{settings:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_webhooks WHERE is_active")
            .await,
        8,
        "status changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_text_shows_every_stored_robot_and_the_settings_that_cannot_work() {
    let (db, fake) = odd_but_stored().await;
    let out = Cli::new(&["status"]).db(&db).allow(&fake).output().await;
    out.ok();
    for expected in [
        "setting problem: default_timezone Mars/Olympus is not an IANA time zone name",
        "setting problem: unknown setting default_timzone",
        "huge_limit: 2 pending",
        "robot huge_limit [enabled] ready now: budget 2147483647/2147483647 per 60s",
        "robot tiny_window [enabled] ready now: budget 20/20 per 0.000001s",
        "robot nested_days [enabled] skipped: send_days {{1,2},{3,4}} is an array of 2 dimensions",
        "window any time on ISO days {{1,2},{3,4}} Asia/Hong_Kong",
        "robot no_days [enabled] skipped: send_days is empty",
        "robot same_time [enabled] skipped: send window 09:00-09:00 starts and ends at the same time",
        "window 09:00-09:00 Asia/Hong_Kong",
        "robot huge_window [enabled] skipped: rate_window of 36525000000 days",
        "robot default_zone [enabled] skipped: wecom_settings.default_timezone",
        "robot infinite_use [enabled] ready now",
    ] {
        assert!(out.stdout.contains(expected), "missing {expected:?} in {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_a_stored_row_clears_its_reason_in_status() {
    let (db, fake) = odd_but_stored().await;
    db.exec(
        "UPDATE wecom_webhooks SET send_days = '{1,2,3,4,5,6,7}' WHERE webhook_name IN ('nested_days', 'no_days');
         UPDATE wecom_webhooks SET send_window_start = NULL, send_window_end = NULL WHERE webhook_name = 'same_time';
         UPDATE wecom_webhooks SET rate_window = '1 day' WHERE webhook_name = 'huge_window';",
    )
    .await;
    db.exec("UPDATE wecom_settings SET value = 'Asia/Macau' WHERE name = 'default_timezone'")
        .await;
    db.exec("DELETE FROM wecom_settings WHERE name = 'default_timzone'")
        .await;
    let out = Cli::new(&["status", "--json"])
        .db(&db)
        .allow(&fake)
        .output()
        .await;
    out.ok();
    let status: Value = serde_json::from_str(&out.stdout).expect("JSON");
    for r in robots(&status) {
        assert_eq!(r["problem"], Value::Null, "{r:#}");
    }
    assert_eq!(status["settings_problems"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_reminder_destination_no_robot_serves_once_reminders_are_in_use() {
    let fake = standin(20, MINUTE).await;
    let db = TestDatabase::migrated().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;
    let settings_problems = || async {
        let out = Cli::new(&["status", "--json"])
            .db(&db)
            .allow(&fake)
            .output()
            .await;
        out.ok();
        let status: Value = serde_json::from_str(&out.stdout).expect("JSON");
        status["settings_problems"].clone()
    };
    // No view: the school does not use the reminders, and the default destination is moot.
    assert_eq!(settings_problems().await, serde_json::json!([]));

    db.exec(
        "CREATE VIEW active_enrollments_needing_renewal AS
         SELECT 1 AS enrollment_id, 3 AS days_until_renewal, ''::text AS renewal_action_status",
    )
    .await;
    let problems = settings_problems().await;
    assert!(
        problems[0].as_str().is_some_and(|p| p
            .starts_with("reminder_destination parent_group is no robot or pool")
            && p.contains("(destinations: office)")),
        "{problems:#}"
    );
}
