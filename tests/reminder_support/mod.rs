//! A school for reminder tests: a table of enrollments and, over it, the view
//! `active_enrollments_needing_renewal` with the columns DESIGN.md names (plus language and
//! family_group for routing). Days are counted from today in the configured zone, as the
//! school's own view does.

#![allow(dead_code)]

use chrono::{Timelike, Utc};
use wecom_outbox::testing::TestDatabase;

pub const SCHOOL: &str = r#"
CREATE TABLE school_enrollments (
    enrollment_id           int PRIMARY KEY,
    student_id              int NOT NULL,
    student_name            text NOT NULL,
    phone                   text,
    tutor_name              text NOT NULL DEFAULT 'Ms. Chan 陈老师',
    assigned_day            text NOT NULL DEFAULT 'Monday',
    assigned_time           text NOT NULL DEFAULT '16:00',
    end_date                date NOT NULL,
    total_credits_remaining int NOT NULL DEFAULT 4,
    renewal_action_status   text NOT NULL DEFAULT '🔴 Not Yet Renewed',
    language                text NOT NULL DEFAULT 'en',
    family_group            text NULL
);
CREATE VIEW active_enrollments_needing_renewal AS
SELECT enrollment_id, student_id, student_name, phone, tutor_name, assigned_day, assigned_time,
       end_date - CURRENT_DATE AS days_until_renewal, total_credits_remaining,
       renewal_action_status, language, family_group
FROM school_enrollments;
"#;

/// A migrated database with the school's view and a `parent_group` robot.
pub async fn school() -> TestDatabase {
    let db = TestDatabase::migrated().await;
    db.exec(SCHOOL).await;
    robot(&db, "parent_group").await;
    db
}

/// A robot that is never called (these tests look at the outbox, not at deliveries).
pub async fn robot(db: &TestDatabase, name: &str) {
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url)
         VALUES ('{name}', 'http://127.0.0.1:9/cgi-bin/webhook/send?key=never-{name}')"
    ))
    .await;
}

/// An enrollment ending `days` from today (local), not renewed.
pub async fn enrollment(db: &TestDatabase, id: i32, name: &str, days: i32) {
    enrollment_with(db, id, name, days, "🔴 Not Yet Renewed", "en").await;
}

/// An enrollment with a given status and language.
pub async fn enrollment_with(
    db: &TestDatabase,
    id: i32,
    name: &str,
    days: i32,
    status: &str,
    language: &str,
) {
    sqlx::query(
        "INSERT INTO school_enrollments (enrollment_id, student_id, student_name, phone, end_date,
                                         renewal_action_status, language)
         VALUES ($1, $1 + 1000, $2, '+852 9000 ' || $1, 
                 (now() AT TIME ZONE wecom_setting('default_timezone', 'Asia/Hong_Kong'))::date + $3,
                 $4, $5)",
    )
    .bind(id)
    .bind(name)
    .bind(days)
    .bind(status)
    .bind(language)
    .execute(db.pool())
    .await
    .expect("insert enrollment");
}

/// `wecom_enqueue_fee_reminders()` for today.
pub async fn enqueue(db: &TestDatabase) -> i64 {
    db.count("SELECT wecom_enqueue_fee_reminders()::bigint")
        .await
}

/// (enrollment_id, destination, what the parent reads) of the outbox's fee reminders.
pub async fn reminders(db: &TestDatabase) -> Vec<(i64, String, String)> {
    sqlx::query_as(
        "SELECT enrollment_id, webhook_name,
                coalesce(payload #>> '{text,content}', payload::text)
         FROM wecom_outbox WHERE message_type = 'fee_reminder' ORDER BY enrollment_id",
    )
    .fetch_all(db.pool())
    .await
    .expect("read reminders")
}

/// The enrollment ids that got a reminder.
pub async fn reminded_ids(db: &TestDatabase) -> Vec<i64> {
    reminders(db)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect()
}

/// Set a row of wecom_settings.
pub async fn setting(db: &TestDatabase, name: &str, value: &str) {
    sqlx::query("UPDATE wecom_settings SET value = $2 WHERE name = $1")
        .bind(name)
        .bind(value)
        .execute(db.pool())
        .await
        .expect("update setting");
}

/// An IANA zone where it is now between 12:00 and 13:00, so "run at 11:00" is due and "run
/// at 14:00" is not, whatever the hour of the test (no midnight in between).
pub fn zone_at_noon() -> String {
    let offset = 12 - Utc::now().hour() as i32; // hours east of UTC, -11..=12
    match offset {
        0 => "Etc/GMT".into(),
        east if east > 0 => format!("Etc/GMT-{east}"),
        west => format!("Etc/GMT+{}", -west),
    }
}
