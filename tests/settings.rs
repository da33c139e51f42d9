//! What a DBA sees when writing to `wecom_settings`: each known setting is checked the way its
//! reader needs it, an unknown name is refused, the settings the worker reads cannot vanish,
//! and a change makes every robot be looked at again at once. One bad setting must never
//! become a state change for every robot.
//!
//! Tests run on a multi-thread runtime: `TestDatabase`'s drop closes the pool from another
//! thread, which needs this runtime's I/O driver to keep running.

use sqlx::postgres::PgListener;
use std::time::Duration;
use wecom_outbox::testing::TestDatabase;

const ROBOT_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=test-key";

async fn set(db: &TestDatabase, name: &str, value: &str) {
    db.exec(&format!(
        "UPDATE wecom_settings SET value = '{value}' WHERE name = '{name}'"
    ))
    .await;
}

async fn set_err(db: &TestDatabase, name: &str, value: &str) -> String {
    db.exec_err(&format!(
        "UPDATE wecom_settings SET value = '{value}' WHERE name = '{name}'"
    ))
    .await
}

async fn value(db: &TestDatabase, name: &str) -> String {
    sqlx::query_scalar("SELECT value FROM wecom_settings WHERE name = $1")
        .bind(name)
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("setting {name}: {e}"))
}

/// A migrated database with robot `parent_group` (the default destination) and pool `staff`.
async fn with_robots() -> TestDatabase {
    let db = TestDatabase::migrated().await;
    db.add_robot_at("parent_group", ROBOT_URL, None, 20, Duration::from_secs(60))
        .await;
    db.add_robot_at(
        "staff_1",
        ROBOT_URL,
        Some("staff"),
        20,
        Duration::from_secs(60),
    )
    .await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_default_timezone_is_refused_and_changes_nothing() {
    let db = with_robots().await;
    db.exec("UPDATE wecom_robot_state SET next_check_at = now() + interval '1 hour'")
        .await;
    for zone in [
        "Mars/Olympus",
        "",
        " Asia/Hong_Kong",
        "HKT",
        "UTC+8",
        "asia/hong_kong",
    ] {
        let err = set_err(&db, "default_timezone", zone).await;
        assert!(
            err.contains(&format!(
                "wecom_settings: default_timezone {zone} is not an IANA time zone name"
            )),
            "{zone:?}: {err}"
        );
        assert!(err.contains("such as Asia/Hong_Kong"), "{err}");
    }
    let err = db
        .exec_err("UPDATE wecom_settings SET value = NULL WHERE name = 'default_timezone'")
        .await;
    assert!(err.contains("not-null"), "{err}");
    // A forgotten WHERE: no other setting takes a zone as its value.
    let err = db
        .exec_err("UPDATE wecom_settings SET value = 'Asia/Macau'")
        .await;
    assert!(err.contains("wecom_settings: "), "{err}");
    assert_eq!(value(&db, "default_timezone").await, "Asia/Hong_Kong");
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_webhooks WHERE is_active AND disabled_reason IS NULL")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_robot_state WHERE next_check_at <= now()")
            .await,
        0,
        "a refused change must not wake the robots either"
    );
    set(&db, "default_timezone", "Asia/Macau").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_known_setting_is_checked_the_way_its_reader_needs_it() {
    let db = with_robots().await;
    db.exec(
        "CREATE VIEW active_enrollments_needing_renewal AS
         SELECT 1 AS enrollment_id, 'zh'::text AS language, 3 AS days_until_renewal,
                '🔴 Not Yet Renewed'::text AS renewal_action_status, 'Amy'::text AS student_name",
    )
    .await;
    for (name, bad, says) in [
        ("reminder_destination", "parent_grop", "reminder_destination parent_grop is no robot or pool in wecom_webhooks (destinations: parent_group, staff)"),
        ("reminder_destination", "staff_1", "reminder_destination staff_1 is a robot of pool staff: name the pool staff"),
        ("reminder_destination", " ", "reminder_destination is empty"),
        ("reminder_status", "", "reminder_status is empty"),
        ("reminder_min_days", "seven", "reminder_min_days 'seven' is not a whole number of days"),
        ("reminder_max_days", "7.5", "reminder_max_days '7.5' is not a whole number of days"),
        ("reminder_urgent_days", "99999999999", "reminder_urgent_days '99999999999' is not a whole number of days"),
        ("reminder_cadence", "7,3,,1", "reminder_cadence '7,3,,1' is not a list of whole numbers of days"),
        ("reminder_cadence", "7;3", "is not a list of whole numbers"),
        ("reminder_run_time", "9am", "reminder_run_time '9am' is not a local time like 09:00"),
        ("reminder_run_time", "24:00", "reminder_run_time '24:00' is not a local time like 09:00"),
        ("reminder_run_time", "", "is not a local time like 09:00 (00:00 to 23:59), or off"),
        ("reminder_route_column", "langauge", "reminder_route_column langauge is not a column of active_enrollments_needing_renewal"),
        ("reminder_route_fallback", "nobody", "reminder_route_fallback nobody is no robot or pool"),
        ("conversion_window_days", "-1", "conversion_window_days -1 is negative"),
        ("prune_after_days", "0", "prune_after_days '0' is not a whole number of days of at least 1, such as 90 (empty = never prune)"),
        ("prune_after_days", "90d", "prune_after_days '90d' is not a whole number of days of at least 1"),
    ] {
        let before = value(&db, name).await;
        let err = set_err(&db, name, bad).await;
        assert!(err.contains(says), "{name} = {bad:?}: {err}");
        assert_eq!(value(&db, name).await, before, "{name} changed");
    }
    for (name, good) in [
        ("reminder_destination", "staff"),
        ("reminder_status", "⏳ Renewal Created - Awaiting Payment"),
        ("reminder_max_days", "14"),
        ("reminder_min_days", "-2"),
        ("reminder_urgent_days", "+3"),
        ("reminder_cadence", "7, 3,1,0"),
        ("reminder_cadence", ""),
        ("reminder_run_time", "8:30"),
        ("reminder_run_time", " OFF "),
        ("reminder_run_time", "23:59:59"),
        ("reminder_route_column", "language"),
        ("reminder_route_column", ""),
        ("reminder_route_fallback", "skip"),
        ("reminder_route_fallback", "parent_group"),
        ("reminder_route_fallback", ""),
        ("conversion_window_days", "0"),
        ("prune_after_days", "90"),
        ("prune_after_days", ""),
    ] {
        set(&db, name, good).await;
    }
    // The readers agree: the day's plan still computes.
    db.exec("SELECT * FROM wecom_fee_reminders_due()").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_time_the_database_accepts_is_one_the_daily_rule_can_read() {
    let db = TestDatabase::migrated().await;
    // With the school's view in place the rule reads the run time (without it, it stops early).
    db.exec(
        "CREATE VIEW active_enrollments_needing_renewal AS SELECT 1 AS enrollment_id WHERE false",
    )
    .await;
    let mut accepted = 0;
    for h in ["0", "00", "7", "09", "19", "23", "24", "9a"] {
        for m in ["00", "5", "59", "60"] {
            for s in ["", ":00", ":59", ":60"] {
                let text = format!("{h}:{m}{s}");
                let stored = sqlx::raw_sql(&format!(
                    "UPDATE wecom_settings SET value = '{text}' WHERE name = 'reminder_run_time'"
                ))
                .execute(db.pool())
                .await
                .is_ok();
                // The daily rule (`wecom_daily_reminders_due`) is the one reader of this setting.
                let readable = sqlx::raw_sql("SELECT wecom_daily_reminders_due()")
                    .execute(db.pool())
                    .await
                    .is_ok();
                assert!(
                    !stored || readable,
                    "the database accepts {text:?}, the daily rule cannot read it"
                );
                accepted += i32::from(stored);
            }
        }
    }
    // 6 hours × 2 minutes × 3 ways to give seconds; 24:00, :60 and 9a:00 are refused.
    assert_eq!(accepted, 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_setting_name_is_refused_naming_the_known_ones() {
    let db = TestDatabase::migrated().await;
    let err = db
        .exec_err("INSERT INTO wecom_settings (name, value) VALUES ('default_timzone', 'UTC')")
        .await;
    assert!(err.contains("unknown setting default_timzone"), "{err}");
    assert!(
        err.contains("default_timezone, prune_after_days, reminder_cadence"),
        "{err}"
    );
    let err = db
        .exec_err(
            "INSERT INTO wecom_settings (name, value) VALUES ('reminder_run_tme', '08:00')
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .await;
    assert!(err.contains("unknown setting reminder_run_tme"), "{err}");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_settings WHERE name LIKE '%tme' OR name LIKE '%timz%'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_setting_cannot_be_deleted_renamed_or_truncated() {
    let db = TestDatabase::migrated().await;
    let settings = db.count("SELECT count(*) FROM wecom_settings").await;
    for (sql, says) in [
        (
            "DELETE FROM wecom_settings WHERE name = 'default_timezone'",
            "default_timezone cannot be deleted",
        ),
        (
            "UPDATE wecom_settings SET name = 'old_zone' WHERE name = 'default_timezone'",
            "default_timezone cannot be renamed",
        ),
        (
            "UPDATE wecom_settings SET name = 'reminder_status' WHERE name = 'reminder_destination'",
            "cannot be renamed",
        ),
        ("TRUNCATE wecom_settings", "cannot be truncated"),
    ] {
        let err = db.exec_err(sql).await;
        assert!(err.contains(says), "{sql}: {err}");
        assert!(err.contains("UPDATE"), "says what to do instead: {err}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_settings").await,
        settings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reminder_range_is_checked_as_a_whole_when_the_transaction_commits() {
    let db = TestDatabase::migrated().await;
    let err = set_err(&db, "reminder_min_days", "9").await;
    assert!(
        err.contains("reminder_min_days 9 is more than reminder_max_days 7"),
        "{err}"
    );
    let err = set_err(&db, "reminder_cadence", "14,3").await;
    assert!(
        err.contains(
            "reminder_cadence has 14, outside reminder_min_days..reminder_max_days (0..7)"
        ),
        "{err}"
    );
    assert_eq!(value(&db, "reminder_min_days").await, "0");
    // Moving the range in one transaction, one end at a time, is fine.
    db.exec(
        "BEGIN;
         UPDATE wecom_settings SET value = '10' WHERE name = 'reminder_min_days';
         UPDATE wecom_settings SET value = '14' WHERE name = 'reminder_max_days';
         UPDATE wecom_settings SET value = '14,10' WHERE name = 'reminder_cadence';
         COMMIT;",
    )
    .await;
    assert_eq!(value(&db, "reminder_min_days").await, "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_change_makes_every_robot_be_looked_at_again_at_once() {
    let db = with_robots().await;
    db.exec(
        "UPDATE wecom_robot_state SET next_check_at = now() + interval '1 hour',
                                      paused_until = now() + interval '1 minute'",
    )
    .await;
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener.listen("wecom_outbox").await.expect("LISTEN");

    set(&db, "default_timezone", "Asia/Shanghai").await;

    assert_eq!(
        db.count("SELECT count(*) FROM wecom_robot_state WHERE next_check_at <= now()")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_robot_state WHERE paused_until > now()")
            .await,
        2,
        "a 45009 pause is WeCom's, not the setting's"
    );
    let mut woken = Vec::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification within 5 s")
            .expect("notification");
        woken.push(n.payload().to_owned());
    }
    woken.sort();
    assert_eq!(woken, ["parent_group", "staff"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_default_timezone_puts_robots_an_earlier_worker_disabled_for_it_back() {
    let db = with_robots().await;
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, timezone)
         VALUES ('zoned', '{ROBOT_URL}', 'Asia/Macau')"
    ))
    .await;
    // The setting as an earlier version let it be stored, and what that version's worker did
    // to the robots without a zone of their own (and to one robot for a reason of its own).
    db.exec("ALTER TABLE wecom_settings DISABLE TRIGGER wecom_settings_before_write")
        .await;
    db.exec("UPDATE wecom_settings SET value = 'Mars/Olympus' WHERE name = 'default_timezone'")
        .await;
    db.exec("ALTER TABLE wecom_settings ENABLE TRIGGER wecom_settings_before_write")
        .await;
    db.exec(
        "UPDATE wecom_webhooks SET is_active = false,
                disabled_reason = 'timezone \"Mars/Olympus\" is not an IANA time zone name'
         WHERE webhook_name IN ('parent_group', 'staff_1');
         UPDATE wecom_webhooks SET is_active = false, disabled_reason = 'gone (93000)'
         WHERE webhook_name = 'zoned';",
    )
    .await;

    set(&db, "default_timezone", "Asia/Hong_Kong").await;

    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks
             WHERE webhook_name IN ('parent_group', 'staff_1') AND is_active AND disabled_reason IS NULL"
        )
        .await,
        2
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks WHERE webhook_name = 'zoned' AND NOT is_active"
        )
        .await,
        1,
        "a robot disabled for its own reason stays disabled"
    );
}
