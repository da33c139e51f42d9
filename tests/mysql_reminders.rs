//! Fee-renewal reminders on MySQL / MariaDB: `CALL wecom_enqueue_fee_reminders(NULL)` reads the
//! school's view active_enrollments_needing_renewal in the local day of default_timezone,
//! enqueues one reminder per enrollment due in 0-7 days (urgent wording at 3 or fewer), once per
//! local day, and answers with one row (enqueued, skipped, problems); a renewal cancels the
//! pending reminders through the school's own trigger; the daily run records its day once.

mod mysql_support;

use mysql_support::{text_at, MyDb};
use sqlx::Row;

/// Hong Kong's date today, in SQL (the default zone; it keeps one offset).
const HK_TODAY: &str = "DATE(UTC_TIMESTAMP() + INTERVAL 8 HOUR)";

/// The school's tables: enrollments with an end date, a renewal status and a tutor, and the
/// view over them, keyed by `key` (enrollment_id as the school's real view, or id as the seed's
/// AppSheet text). `due` is (student, days until renewal, status).
async fn school(test: &str, key: &str, due: &[(&str, i32, &str)]) -> Option<MyDb> {
    let db = MyDb::migrated(test).await?;
    db.add_robot("parent_group").await;
    db.exec(&format!(
        "CREATE TABLE enrollments (id INT AUTO_INCREMENT PRIMARY KEY, student_name VARCHAR(100), tutor_name VARCHAR(100),
                                   assigned_day VARCHAR(20), assigned_time TIME, end_date DATE, renewal_status VARCHAR(100),
                                   credits DECIMAL(5,1)) DEFAULT CHARSET = utf8mb4;
         CREATE VIEW active_enrollments_needing_renewal AS
         SELECT e.id AS {key}, e.id * 10 AS student_id, e.student_name, '91234567' AS phone, e.tutor_name,
                e.assigned_day, e.assigned_time, DATEDIFF(e.end_date, CURDATE()) AS days_until_renewal,
                e.credits AS total_credits_remaining, e.renewal_status AS renewal_action_status
         FROM enrollments e;"
    ))
    .await;
    for (name, days, status) in due {
        db.exec(&format!(
            "INSERT INTO enrollments (student_name, tutor_name, assigned_day, assigned_time, end_date, renewal_status, credits)
             VALUES ('{name}', 'Ms Lee', 'Saturday', '10:30', {HK_TODAY} + INTERVAL {days} DAY, '{status}', 2.5)"
        ))
        .await;
    }
    Some(db)
}

const NOT_RENEWED: &str = "🔴 Not Yet Renewed";
const PAID: &str = "✅ Renewal Paid - Ready for Sessions";

/// CALL wecom_enqueue_fee_reminders(NULL): (enqueued, skipped, problems).
async fn enqueue_today(db: &MyDb) -> (i64, i64, Option<String>) {
    let rows = sqlx::query("CALL wecom_enqueue_fee_reminders(NULL)")
        .fetch_all(&db.pool)
        .await
        .expect("CALL wecom_enqueue_fee_reminders");
    assert_eq!(rows.len(), 1, "one row with the count");
    let row = &rows[0];
    (row.get::<i64, _>(0), row.get::<i64, _>(1), text_at(row, 2))
}

#[tokio::test(flavor = "multi_thread")]
async fn todays_reminders_go_once_per_enrollment_and_a_second_call_the_same_day_adds_none() {
    let due = [
        ("陳小明", 2, NOT_RENEWED),
        ("Amy", 6, NOT_RENEWED),
        ("Ben", 10, NOT_RENEWED),
        ("Cat", 1, PAID),
        ("Dan", 0, NOT_RENEWED),
    ];
    let Some(db) = school("reminders", "enrollment_id", &due).await else {
        return;
    };
    assert_eq!(enqueue_today(&db).await, (3, 0, None));
    assert_eq!(
        enqueue_today(&db).await,
        (0, 0, None),
        "the same local day again enqueues nothing"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_outbox").await, 3);

    let urgent = db
        .text("SELECT JSON_UNQUOTE(JSON_EXTRACT(payload, '$.text.content')) FROM wecom_outbox WHERE enrollment_id = 1")
        .await
        .unwrap();
    assert!(
        urgent.starts_with("🔴 URGENT FEE RENEWAL / 紧急续费提醒\n\nStudent / 学生: 陳小明\n"),
        "{urgent}"
    );
    assert!(
        urgent.contains("⏰ Expires in / 到期: 2 days / 天"),
        "{urgent}"
    );
    assert!(
        urgent.contains("📊 Credits remaining / 剩余课时: 2.5"),
        "{urgent}"
    );
    assert!(
        urgent.contains("Schedule / 上课时间: Saturday 10:30:00"),
        "{urgent}"
    );
    let normal = db
        .text("SELECT JSON_UNQUOTE(JSON_EXTRACT(payload, '$.text.content')) FROM wecom_outbox WHERE enrollment_id = 2")
        .await
        .unwrap();
    assert!(
        normal.starts_with("💰 Fee Renewal Reminder / 学费续费提醒"),
        "{normal}"
    );
    assert!(normal.contains("6 days"), "{normal}");

    let today = db
        .text(&format!("SELECT CAST({HK_TODAY} AS CHAR)"))
        .await
        .unwrap();
    assert_eq!(
        db.text("SELECT GROUP_CONCAT(CONCAT(dedupe_key, ' ', priority) ORDER BY enrollment_id) FROM wecom_outbox").await.unwrap(),
        format!("fee_reminder:1:{today} 1,fee_reminder:2:{today} 0,fee_reminder:5:{today} 1"),
        "one per enrollment and local day; urgent first"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM wecom_outbox WHERE message_type = 'fee_reminder' AND webhook_name = 'parent_group'
               AND expires_at = TIMESTAMP({HK_TODAY}) + INTERVAL 1 DAY - INTERVAL 8 HOUR"
        ))
        .await,
        3,
        "each expires at the end of its Hong Kong day (in UTC)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_gets_its_own_time_zone_back_after_reminders_whatever_happens() {
    let Some(db) = school("sessionzone", "enrollment_id", &[("Amy", 2, NOT_RENEWED)]).await else {
        return;
    };
    let mut conn = db.connection().await;
    sqlx::raw_sql("SET time_zone = '-05:00'; CALL wecom_enqueue_fee_reminders(NULL);")
        .execute(&mut conn)
        .await
        .unwrap();
    let after = sqlx::query("SELECT @@session.time_zone")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(text_at(&after, 0).as_deref(), Some("-05:00"));
    // Also when the view fails half-way.
    sqlx::raw_sql("DROP TABLE enrollments")
        .execute(&mut conn)
        .await
        .unwrap();
    let failed = sqlx::raw_sql("CALL wecom_enqueue_fee_reminders(NULL)")
        .execute(&mut conn)
        .await;
    assert!(failed.is_err(), "the broken view fails the call");
    let after = sqlx::query("SELECT @@session.time_zone")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(text_at(&after, 0).as_deref(), Some("-05:00"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_keyed_by_id_as_the_seed_has_it_works_as_well() {
    let Some(db) = school("reminders_id", "id", &[("Amy", 3, NOT_RENEWED)]).await else {
        return;
    };
    assert_eq!(enqueue_today(&db).await, (1, 0, None));
    assert_eq!(db.count("SELECT enrollment_id FROM wecom_outbox").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewing_an_enrollment_cancels_its_pending_reminder_through_the_schools_trigger() {
    let due = [("Amy", 2, NOT_RENEWED), ("Ben", 2, NOT_RENEWED)];
    let Some(db) = school("renewal", "enrollment_id", &due).await else {
        return;
    };
    db.exec(
        "CREATE TRIGGER enrollments_renewed AFTER UPDATE ON enrollments FOR EACH ROW
         BEGIN
             IF NEW.renewal_status LIKE '✅%' AND NOT (OLD.renewal_status LIKE '✅%') THEN
                 CALL wecom_cancel_reminders(NEW.id, 'renewal paid');
             END IF;
         END",
    )
    .await;
    assert_eq!(enqueue_today(&db).await.0, 2);
    db.exec(&format!(
        "UPDATE enrollments SET renewal_status = '{PAID}' WHERE student_name = 'Amy'"
    ))
    .await;
    assert_eq!(
        db.text(
            "SELECT CONCAT(status, ': ', last_error) FROM wecom_outbox WHERE enrollment_id = 1"
        )
        .await
        .as_deref(),
        Some("cancelled: cancelled: renewal paid")
    );
    assert_eq!(
        db.text("SELECT status FROM wecom_outbox WHERE enrollment_id = 2")
            .await
            .as_deref(),
        Some("pending")
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_renewals WHERE enrollment_id = 1")
            .await,
        1
    );
    assert_eq!(
        enqueue_today(&db).await,
        (0, 0, None),
        "a paid enrollment gets no new reminder"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_that_cannot_go_are_skipped_and_reported_and_a_template_typo_is_refused() {
    let Some(db) = school("skipped", "enrollment_id", &[("Amy", 2, NOT_RENEWED)]).await else {
        return;
    };
    db.exec("UPDATE wecom_webhooks SET webhook_name = 'teachers'")
        .await;
    let (n, skipped, problems) = enqueue_today(&db).await;
    assert_eq!((n, skipped), (0, 1));
    assert_eq!(
        problems.as_deref(),
        Some("enrollment 1 (Amy): destination parent_group has no robot in wecom_webhooks (add one: README, \"Daily fee reminders\")")
    );
    db.exec("UPDATE wecom_webhooks SET webhook_name = 'parent_group'; UPDATE wecom_templates SET content = 'Hi {{studnet_name}}' WHERE name = 'fee_reminder_urgent'").await;
    let e = db.exec_err("CALL wecom_enqueue_fee_reminders(NULL)").await;
    assert!(
        e.starts_with("template placeholder {{studnet_name}} names no column; available: "),
        "{e}"
    );
    assert!(e.contains("student_name"), "{e}");
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_outbox").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_run_enqueues_once_per_local_day_and_records_it() {
    let Some(db) = school("daily", "enrollment_id", &[("Amy", 2, NOT_RENEWED)]).await else {
        return;
    };
    db.exec("UPDATE wecom_settings SET value = '00:00' WHERE name = 'reminder_run_time'")
        .await;
    let mut conn = db.connection().await;
    let run = "CALL wecom_run_daily_reminders('test')";
    sqlx::raw_sql(run).execute(&mut conn).await.unwrap();
    let first = sqlx::query("SELECT @wecom_daily_enqueued")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(text_at(&first, 0).as_deref(), Some("1"));
    sqlx::raw_sql(run).execute(&mut conn).await.unwrap();
    let second = sqlx::query("SELECT @wecom_daily_enqueued")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(text_at(&second, 0), None, "the day is done: nothing to do");
    drop(conn);
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM wecom_daily_runs WHERE job = 'fee_reminders' AND status = 'done' AND local_date = {HK_TODAY} AND enqueued = 1")).await,
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM information_schema.events WHERE event_schema = DATABASE() AND event_name = 'wecom_daily_fee_reminders'").await,
        1,
        "the EVENT exists (it fires where event_scheduler is ON)"
    );
}
