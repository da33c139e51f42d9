//! What a DBA sees when writing to `wecom_webhooks`: a bad zone or limit, or a window or
//! `send_days` that can never mean what it says, fails at once (while rows stored earlier
//! still take the worker's own updates), every robot gets its worker state, a new URL puts a
//! robot the worker disabled back in service, and any change wakes the workers.
//!
//! Tests run on a multi-thread runtime: `TestDatabase`'s drop closes the pool from another
//! thread, which needs this runtime's I/O driver to keep running.

use sqlx::postgres::PgListener;
use std::time::Duration;
use wecom_outbox::testing::TestDatabase;

const ROBOT_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=test-key";

async fn with_parent_group() -> TestDatabase {
    let db = TestDatabase::migrated().await;
    db.add_robot_at("parent_group", ROBOT_URL, None, 20, Duration::from_secs(60))
        .await;
    db
}

fn robot_with_zone(zone: &str) -> String {
    format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, timezone)
         VALUES ('zoned', '{ROBOT_URL}', '{zone}')"
    )
}

async fn robot_count(db: &TestDatabase, condition: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM wecom_webhooks WHERE webhook_name = 'parent_group' AND {condition}"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_with_an_unknown_timezone_is_refused_at_insert() {
    let db = TestDatabase::migrated().await;
    // Not zones at all, or zones PostgreSQL takes but the worker cannot read: an abbreviation,
    // a POSIX string (where UTC+8 means eight hours *behind* UTC), a lower-cased name.
    for zone in [
        "Mars/Olympus_Mons",
        "",
        "HKT",
        "UTC+8",
        "asia/hong_kong",
        "posix/Asia/Hong_Kong",
    ] {
        let err = db.exec_err(&robot_with_zone(zone)).await;
        assert!(
            err.contains(&format!("timezone {zone} is not an IANA time zone name")),
            "{zone:?}: {err}"
        );
        assert!(err.contains("Asia/Hong_Kong"), "{zone:?}: {err}");
    }
    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM wecom_robot_state").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_to_an_unknown_timezone_is_refused() {
    let db = with_parent_group().await;
    let err = db
        .exec_err("UPDATE wecom_webhooks SET timezone = 'Hong Kong'")
        .await;
    assert!(err.contains("not an IANA time zone name"), "{err}");
    assert_eq!(robot_count(&db, "timezone IS NULL").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zone_the_database_accepts_is_one_the_worker_can_read() {
    let db = TestDatabase::migrated().await;
    for zone in [
        "Asia/Hong_Kong",
        "Asia/Shanghai",
        "Asia/Macau",
        "UTC",
        "Etc/GMT-8",
        "America/New_York",
    ] {
        db.exec(&robot_with_zone(zone)).await;
        db.exec("DELETE FROM wecom_webhooks").await;
        assert!(
            zone.parse::<chrono_tz::Tz>().is_ok(),
            "the database accepts {zone} but the worker cannot read it"
        );
    }
    // The whole list the trigger checks against.
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pg_timezone_names
         WHERE name !~ '^(posix|right)/' AND name NOT IN ('localtime', 'posixrules', 'Factory')",
    )
    .fetch_all(db.pool())
    .await
    .expect("zone names");
    assert!(names.len() > 300, "only {} zones", names.len());
    let unreadable: Vec<&String> = names
        .iter()
        .filter(|n| n.parse::<chrono_tz::Tz>().is_err())
        .collect();
    assert!(
        unreadable.is_empty(),
        "accepted but unreadable by the worker: {unreadable:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_robot_gets_a_worker_state_row() {
    let db = with_parent_group().await;
    db.exec(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url)
         VALUES ('tutor_group', 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT')",
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks w JOIN wecom_robot_state s ON s.robot_id = w.id
             WHERE s.next_check_at <= now() AND s.paused_until IS NULL AND s.consecutive_45009 = 0"
        )
        .await,
        2
    );
    db.exec("DELETE FROM wecom_webhooks WHERE webhook_name = 'tutor_group'")
        .await;
    assert_eq!(db.count("SELECT count(*) FROM wecom_robot_state").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_url_puts_a_robot_the_worker_disabled_back_in_service() {
    let db = with_parent_group().await;
    // What the worker does on 93000.
    db.exec(
        "UPDATE wecom_webhooks SET is_active = false, disabled_reason = 'x'
         WHERE webhook_name = 'parent_group'",
    )
    .await;
    db.exec(&format!(
        "UPDATE wecom_robot_state SET paused_until = now() + interval '1 hour',
                                      next_check_at = now() + interval '1 hour';
         UPDATE wecom_webhooks SET webhook_url = '{ROBOT_URL}-new' WHERE webhook_name = 'parent_group'"
    ))
    .await;
    assert_eq!(
        robot_count(&db, "is_active AND disabled_reason IS NULL").await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_robot_state
             WHERE paused_until IS NULL AND next_check_at <= now()"
        )
        .await,
        1,
        "the workers should look at the robot again at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_url_leaves_a_robot_the_dba_disabled_disabled() {
    let db = with_parent_group().await;
    db.exec("UPDATE wecom_webhooks SET is_active = false WHERE webhook_name = 'parent_group'")
        .await;
    db.exec(&format!(
        "UPDATE wecom_webhooks SET webhook_url = '{ROBOT_URL}-new' WHERE webhook_name = 'parent_group'"
    ))
    .await;
    assert_eq!(robot_count(&db, "NOT is_active").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_enabling_a_robot_clears_the_old_reason() {
    let db = with_parent_group().await;
    db.exec(
        "UPDATE wecom_webhooks SET is_active = false, disabled_reason = 'host not allowed'
         WHERE webhook_name = 'parent_group'",
    )
    .await;
    db.exec("UPDATE wecom_webhooks SET is_active = true WHERE webhook_name = 'parent_group'")
        .await;
    assert_eq!(
        robot_count(&db, "is_active AND disabled_reason IS NULL").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_that_cannot_send_is_refused() {
    let db = TestDatabase::migrated().await;
    for (column, value, rule) in [
        ("rate_limit", "0", "wecom_webhooks_rate_limit_positive"),
        ("rate_limit", "-5", "wecom_webhooks_rate_limit_positive"),
        (
            "rate_window",
            "interval '0 seconds'",
            "wecom_webhooks_rate_window_positive",
        ),
        ("send_days", "ARRAY[0, 1]", "wecom_webhooks_send_days_iso"),
        ("send_days", "ARRAY[8]", "wecom_webhooks_send_days_iso"),
        (
            "send_window_start",
            "'09:00'",
            "wecom_webhooks_window_both_or_neither",
        ),
    ] {
        let err = db
            .exec_err(&format!(
                "INSERT INTO wecom_webhooks (webhook_name, webhook_url, {column})
                 VALUES ('bad', '{ROBOT_URL}', {value})"
            ))
            .await;
        assert!(err.contains(rule), "{column} = {value}: {err}");
    }
    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_change_wakes_the_workers_of_its_destination() {
    let db = TestDatabase::migrated().await;
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name)
         VALUES ('parent_1', '{ROBOT_URL}', 'parents')"
    ))
    .await;
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener.listen("wecom_outbox").await.expect("LISTEN");

    db.exec("UPDATE wecom_webhooks SET rate_limit = 10").await;
    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .expect("notification");
    assert_eq!(n.payload(), "parents");
}

/// `INSERT` of one robot `bad` with `column = value`; the error text.
async fn refused_robot(db: &TestDatabase, columns: &str, values: &str) -> String {
    db.exec_err(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, {columns})
         VALUES ('bad', '{ROBOT_URL}', {values})"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_starts_when_it_ends_is_refused_with_what_to_write_instead() {
    let db = TestDatabase::migrated().await;
    for (start, end, says) in [
        (
            "09:00",
            "09:00",
            "send window 09:00-09:00 starts and ends at the same time",
        ),
        (
            "00:00",
            "00:00",
            "send window 00:00-00:00 starts and ends at the same time",
        ),
        (
            "00:00",
            "24:00",
            "send window 00:00-24:00 uses 24:00: write midnight as 00:00",
        ),
        (
            "22:00",
            "24:00",
            "send window 22:00-24:00 uses 24:00: write midnight as 00:00",
        ),
    ] {
        let err = refused_robot(
            &db,
            "send_window_start, send_window_end",
            &format!("'{start}', '{end}'"),
        )
        .await;
        assert!(err.contains(says), "{start}-{end}: {err}");
        assert!(err.contains("NULL"), "says how to mean any time: {err}");
    }
    // The same on UPDATE of a good robot, which keeps its window.
    db.add_robot_at("parent_group", ROBOT_URL, None, 20, Duration::from_secs(60))
        .await;
    db.exec("UPDATE wecom_webhooks SET send_window_start = '09:00', send_window_end = '20:00'")
        .await;
    let err = db
        .exec_err("UPDATE wecom_webhooks SET send_window_end = '09:00'")
        .await;
    assert!(err.contains("starts and ends at the same time"), "{err}");
    assert_eq!(robot_count(&db, "send_window_end = '20:00'").await, 1);
    // Windows that wrap midnight are what they say.
    db.exec("UPDATE wecom_webhooks SET send_window_start = '22:00', send_window_end = '00:00'")
        .await;
    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_nested_send_days_are_refused() {
    let db = TestDatabase::migrated().await;
    for (days, says) in [
        (
            "'{}'",
            "send_days is empty ({}), so the robot would never send",
        ),
        (
            "'{{1,2},{3,4}}'",
            "send_days {{1,2},{3,4}} is an array of 2 dimensions",
        ),
        ("'{1,NULL}'", "send_days {1,NULL} contains NULL"),
    ] {
        let err = refused_robot(&db, "send_days", days).await;
        assert!(err.contains(says), "{days}: {err}");
        assert!(err.contains("{1,2,3,4,5}"), "shows a good value: {err}");
    }
    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 0);
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, send_days)
         VALUES ('weekdays', '{ROBOT_URL}', '{{1,2,3,4,5}}')"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_window_the_rules_cannot_plan_with_is_refused() {
    let db = TestDatabase::migrated().await;
    for (window, says) in [
        ("'2 years'", "rate_window 2 years is longer than 366 days"),
        (
            "'100000000 years'",
            "rate_window 100000000 years is longer than 366 days",
        ),
        // Positive as PostgreSQL compares intervals (30-day months), negative in seconds.
        ("'-1 year 361 days'", "give a positive length"),
    ] {
        let err = refused_robot(&db, "rate_window", window).await;
        assert!(err.contains(says), "{window}: {err}");
    }
    for window in ["'1 microsecond'", "'1 year'", "'366 days'"] {
        db.exec(&format!(
            "INSERT INTO wecom_webhooks (webhook_name, webhook_url, rate_window)
             VALUES ('ok', '{ROBOT_URL}', {window}); DELETE FROM wecom_webhooks"
        ))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_row_the_checks_would_refuse_still_takes_the_workers_updates() {
    let db = with_parent_group().await;
    // A row from before the checks (they are bypassed here to store it).
    db.exec(
        "ALTER TABLE wecom_webhooks DISABLE TRIGGER wecom_webhooks_before_write;
         UPDATE wecom_webhooks SET send_days = '{}', send_window_start = '09:00', send_window_end = '09:00';
         ALTER TABLE wecom_webhooks ENABLE TRIGGER wecom_webhooks_before_write;",
    )
    .await;
    // What the worker writes (counters, a 93000) does not touch the old values: accepted.
    db.exec(
        "UPDATE wecom_webhooks SET last_used_at = now(), total_messages_sent = 3;
         UPDATE wecom_webhooks SET is_active = false, disabled_reason = 'gone (93000)';
         UPDATE wecom_webhooks SET webhook_url = webhook_url || '-new';",
    )
    .await;
    assert_eq!(
        robot_count(&db, "is_active AND total_messages_sent = 3").await,
        1
    );
    // Writing another bad value is refused; fixing it is accepted.
    let err = db
        .exec_err("UPDATE wecom_webhooks SET send_days = '{{1},{2}}', rate_limit = 5")
        .await;
    assert!(err.contains("array of 2 dimensions"), "{err}");
    assert_eq!(robot_count(&db, "rate_limit = 20").await, 1);
    db.exec(
        "UPDATE wecom_webhooks SET send_days = NULL, send_window_start = NULL, send_window_end = NULL",
    )
    .await;
}
