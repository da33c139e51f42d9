//! The daily fee reminders against a real PostgreSQL: which enrollments get one, what parents
//! read, where it goes, that a day never sends twice, the triggers, cancellation on renewal,
//! the metrics views and the example school.

mod reminder_support;

use reminder_support::*;
use wecom_outbox::reminders;
use wecom_outbox::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_unrenewed_enrollments_get_one_reminder_and_the_rest_none() {
    let db = school().await;
    for (id, days) in [(1, -1), (2, 0), (3, 3), (4, 4), (5, 7), (6, 8), (7, 30)] {
        enrollment(&db, id, &format!("Student {id}"), days).await;
    }
    let awaiting = "⏳ Renewal Created - Awaiting Payment";
    let paid = "✅ Renewal Paid - Ready for Sessions";
    enrollment_with(&db, 8, "Awaiting", 2, awaiting, "en").await;
    enrollment_with(&db, 9, "Paid", 1, paid, "en").await;

    assert_eq!(enqueue(&db).await, 4);
    assert_eq!(reminded_ids(&db).await, vec![2, 3, 4, 5]);
    let wrong = db
        .count(
            "SELECT count(*) FROM wecom_outbox
             WHERE webhook_name <> 'parent_group' OR status <> 'pending'
                OR expires_at <> ((now() AT TIME ZONE 'Asia/Hong_Kong')::date + 1)::timestamp
                                 AT TIME ZONE 'Asia/Hong_Kong'",
        )
        .await;
    assert_eq!(
        wrong, 0,
        "all to parent_group, pending, expiring at the end of the local day"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_the_same_day_enqueues_nothing_and_the_next_day_does() {
    let db = school().await;
    enrollment(&db, 1, "Emily Wong", 2).await;
    enrollment(&db, 2, "陈小明", 5).await;
    assert_eq!(enqueue(&db).await, 2);
    assert_eq!(enqueue(&db).await, 0, "same local day: nothing new");
    let tomorrow = db
        .count(
            "SELECT wecom_enqueue_fee_reminders(
                 (now() AT TIME ZONE 'Asia/Hong_Kong')::date + 1)::bigint",
        )
        .await;
    assert_eq!(tomorrow, 2, "tomorrow is another day");
    let future_not_before = db
        .count(
            "SELECT count(*) FROM wecom_outbox
             WHERE not_before = ((now() AT TIME ZONE 'Asia/Hong_Kong')::date + 1 + time '09:00')
                                AT TIME ZONE 'Asia/Hong_Kong'",
        )
        .await;
    assert_eq!(
        future_not_before, 2,
        "tomorrow's reminders wait for tomorrow's run time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_wording_at_three_days_or_less_normal_wording_above() {
    let db = school().await;
    enrollment(&db, 3, "Urgent Kid", 3).await;
    enrollment(&db, 4, "Normal Kid", 4).await;
    enqueue(&db).await;
    let rows = reminders(&db).await;
    let (urgent, normal) = (&rows[0].2, &rows[1].2);
    assert!(urgent.contains("URGENT"), "{urgent}");
    assert!(urgent.contains("紧急续费提醒"), "bilingual: {urgent}");
    assert!(urgent.contains("Expires in / 到期: 3 days"), "{urgent}");
    assert!(!normal.contains("URGENT"), "{normal}");
    assert!(normal.contains("Please arrange renewal soon"), "{normal}");
    assert!(normal.contains("学费续费提醒"), "{normal}");
    let priorities = db
        .count("SELECT count(*) FROM wecom_outbox WHERE priority = 1 AND enrollment_id = 3")
        .await;
    assert_eq!(priorities, 1, "urgent reminders go first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_names_arrive_intact() {
    let db = school().await;
    enrollment(&db, 1, "陈小明", 1).await;
    enrollment(&db, 2, "Henry Tse 谢浩然", 6).await;
    enqueue(&db).await;
    let rows = reminders(&db).await;
    assert!(
        rows[0].2.contains("Student / 学生: 陈小明\n"),
        "{}",
        rows[0].2
    );
    assert!(
        rows[1].2.contains("Student / 学生: Henry Tse 谢浩然\n"),
        "{}",
        rows[1].2
    );
    assert!(rows[0].2.contains("Tutor / 导师: Ms. Chan 陈老师"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn very_long_names_are_cut_on_a_character_boundary_and_the_row_is_valid() {
    let db = school().await;
    let long = "张".repeat(3000); // 9000 bytes
    enrollment(&db, 1, &long, 2).await;
    // A template that would be far over 2048 bytes even with each value capped.
    db.exec(
        "UPDATE wecom_templates SET content = repeat('{{student_name}} ', 30)
         WHERE name = 'fee_reminder_urgent'",
    )
    .await;
    assert_eq!(enqueue(&db).await, 1, "the row is enqueued, not rejected");
    let content = &reminders(&db).await[0].2;
    assert!(content.len() <= 2048, "{} bytes", content.len());
    assert!(content.ends_with('…'), "a visible cut");
    assert!(content.trim_end_matches('…').ends_with(['张', ' ']));

    // News: title <= 128 bytes and description <= 512 bytes, cut cleanly too.
    db.exec(
        "UPDATE wecom_templates SET url = 'https://pay.example.com/?student_id={{student_id}}'
         WHERE name = 'fee_reminder_urgent';
         DELETE FROM wecom_outbox;",
    )
    .await;
    assert_eq!(enqueue(&db).await, 1);
    let (title, description): (String, String) = sqlx::query_as(
        "SELECT payload #>> '{news,articles,0,title}', payload #>> '{news,articles,0,description}'
         FROM wecom_outbox",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(title.len() <= 128 && title.ends_with('…'), "{title}");
    assert!(description.len() <= 512, "{} bytes", description.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_keyed_by_id_with_extra_columns_works_and_templates_use_them() {
    let db = TestDatabase::migrated().await;
    robot(&db, "parent_group").await;
    db.exec(
        "CREATE VIEW active_enrollments_needing_renewal AS
         SELECT 42 AS id, 'Mia Chow' AS student_name, 'Mia' AS display_name,
                '+852 9123 4016' AS phone, 2 AS days_until_renewal,
                '🔴 Not Yet Renewed' AS renewal_action_status;
         UPDATE wecom_templates SET content = 'Dear parent of {{display_name}} ({{phone}}): {{days_until_renewal}} days. Ref {{id}}/{{enrollment_id}}'
         WHERE name = 'fee_reminder_urgent';",
    )
    .await;
    assert_eq!(enqueue(&db).await, 1);
    let rows = reminders(&db).await;
    assert_eq!(rows[0].0, 42, "id is the enrollment key");
    assert_eq!(
        rows[0].2,
        "Dear parent of Mia (+852 9123 4016): 2 days. Ref 42/42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_naming_no_column_is_an_error_not_a_message() {
    let db = school().await;
    enrollment(&db, 1, "Emily Wong", 2).await;
    db.exec("UPDATE wecom_templates SET content = 'Hi {{studnet_name}}' WHERE name = 'fee_reminder_urgent'")
        .await;
    let err = db.exec_err("SELECT wecom_enqueue_fee_reminders()").await;
    assert!(err.contains("{{studnet_name}} names no column"), "{err}");
    assert!(err.contains("student_name"), "lists the columns: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_literal_range_and_cadence_are_settings() {
    let db = school().await;
    for days in 0..=9 {
        enrollment(&db, days, &format!("Kid {days}"), days).await;
    }
    setting(&db, "reminder_cadence", "7, 3,1,0").await;
    assert_eq!(enqueue(&db).await, 4);
    assert_eq!(reminded_ids(&db).await, vec![0, 1, 3, 7]);

    db.exec("DELETE FROM wecom_outbox").await;
    setting(&db, "reminder_cadence", "").await;
    setting(&db, "reminder_max_days", "9").await;
    setting(&db, "reminder_min_days", "5").await;
    assert_eq!(enqueue(&db).await, 5, "days 5..=9");

    db.exec("DELETE FROM wecom_outbox; UPDATE school_enrollments SET renewal_action_status = 'Not renewed'")
        .await;
    setting(&db, "reminder_status", "Not renewed").await;
    assert_eq!(enqueue(&db).await, 5, "the school's own status literal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_language_sends_each_family_to_its_group() {
    let db = school().await;
    robot(&db, "group_parents_en").await;
    robot(&db, "group_parents_cn").await;
    enrollment_with(&db, 1, "Emily Wong", 2, "🔴 Not Yet Renewed", "en").await;
    enrollment_with(&db, 2, "陈小明", 2, "🔴 Not Yet Renewed", "zh").await;
    enrollment_with(&db, 3, "Jean Dupont", 2, "🔴 Not Yet Renewed", "fr").await;
    db.exec(
        "INSERT INTO wecom_reminder_routes (route_value, destination)
         VALUES ('en', 'group_parents_en'), ('zh', 'group_parents_cn')",
    )
    .await;
    setting(&db, "reminder_route_column", "language").await;
    assert_eq!(enqueue(&db).await, 3);
    let dests: Vec<String> = reminders(&db).await.into_iter().map(|r| r.1).collect();
    assert_eq!(
        dests,
        ["group_parents_en", "group_parents_cn", "parent_group"],
        "no route: the default destination"
    );

    db.exec("DELETE FROM wecom_outbox").await;
    setting(&db, "reminder_route_fallback", "skip").await;
    assert_eq!(enqueue(&db).await, 2, "skip: no route, no message");
    let plan = db.store.reminder_plan(None).await.unwrap();
    let skipped = plan
        .reminders
        .iter()
        .find(|r| r.enrollment_key == "3")
        .unwrap();
    assert!(
        skipped
            .problem
            .as_deref()
            .unwrap()
            .contains("no route for language = fr"),
        "{skipped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_family_routing_uses_the_familys_own_group() {
    let db = school().await;
    robot(&db, "family_chan").await;
    enrollment(&db, 1, "陈小明", 2).await;
    enrollment(&db, 2, "Emily Wong", 2).await;
    db.exec(
        "UPDATE school_enrollments SET family_group = 'family_chan' WHERE enrollment_id = 1;
         UPDATE school_enrollments SET family_group = 'family_wong' WHERE enrollment_id = 2;",
    )
    .await;
    setting(&db, "reminder_route_column", "family_group").await;
    setting(&db, "reminder_route_fallback", "skip").await;
    assert_eq!(
        enqueue(&db).await,
        1,
        "only families with a group of their own"
    );
    assert_eq!(reminders(&db).await[0].1, "family_chan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_without_a_robot_skips_its_rows_instead_of_failing() {
    let db = TestDatabase::migrated().await;
    db.exec(SCHOOL).await;
    enrollment(&db, 1, "Emily Wong", 2).await;
    assert_eq!(enqueue(&db).await, 0);
    let plan = db.store.reminder_plan(None).await.unwrap();
    assert_eq!(plan.reminders.len(), 1);
    assert!(plan.reminders[0]
        .problem
        .as_deref()
        .unwrap()
        .contains("destination parent_group has no robot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_with_a_payment_link_when_one_is_configured() {
    let db = school().await;
    enrollment(&db, 7, "Sophie Lam", 5).await;
    db.exec(
        "UPDATE wecom_templates SET url = 'https://pay.example.com/pay?student_id={{student_id}}'
         WHERE name LIKE 'fee_reminder_%'",
    )
    .await;
    enqueue(&db).await;
    let (msgtype, url, title): (String, String, String) = sqlx::query_as(
        "SELECT payload ->> 'msgtype', payload #>> '{news,articles,0,url}',
                payload #>> '{news,articles,0,title}' FROM wecom_outbox",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(msgtype, "news");
    assert_eq!(url, "https://pay.example.com/pay?student_id=1007");
    assert_eq!(title, "💰 Fee Renewal Reminder / 学费续费提醒 - Sophie Lam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_what_enqueue_then_enqueues() {
    let db = school().await;
    enrollment(&db, 1, "陈小明", 0).await;
    enrollment(&db, 2, "Emily Wong", 6).await;
    enrollment(&db, 3, "Out Of Range", 12).await;
    let plan = db.store.reminder_plan(None).await.unwrap();
    assert_eq!(plan.zone, "Asia/Hong_Kong");
    assert_eq!(
        plan.reminders.iter().filter(|r| r.would_enqueue()).count(),
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox").await,
        0,
        "preview enqueues nothing"
    );
    let text = reminders::as_parent_reads(plan.reminders[0].payload.as_ref().unwrap());

    let report = db.store.enqueue_reminders(None).await.unwrap();
    assert_eq!(report.enqueued, 2);
    assert_eq!(report.per_destination.get("parent_group"), Some(&2));
    assert_eq!(
        reminders(&db).await[0].2,
        text,
        "the preview is the message"
    );

    let again = db.store.reminder_plan(None).await.unwrap();
    assert!(again.reminders.iter().all(|r| r.already_enqueued));
    let report = db.store.enqueue_reminders(None).await.unwrap();
    assert_eq!(report.enqueued, 0);
    assert!(report.per_destination.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_trigger_enqueues_a_template_rendered_from_any_row() {
    let db = school().await;
    robot(&db, "family_chan").await;
    db.exec(
        "CREATE TABLE payments (id serial PRIMARY KEY, enrollment_id int, amount numeric, family text);
         CREATE TRIGGER payment_received AFTER INSERT ON payments FOR EACH ROW
             EXECUTE FUNCTION wecom_enqueue_from_row('payment_received', 'parent_group',
                                                     'active_enrollments_needing_renewal');
         CREATE TABLE notes (id serial PRIMARY KEY, family text, note text);
         INSERT INTO wecom_templates (name, content) VALUES ('note', '📌 {{note}}');
         CREATE TRIGGER note_to_family BEFORE INSERT ON notes FOR EACH ROW
             EXECUTE FUNCTION wecom_enqueue_from_row('note', '{{family}}');",
    )
    .await;
    enrollment(&db, 5, "陈小明", 20).await;
    db.exec("INSERT INTO payments (enrollment_id, amount) VALUES (5, 3600)")
        .await;
    let (dest, kind, enrollment, content): (String, String, i64, String) = sqlx::query_as(
        "SELECT webhook_name, message_type, enrollment_id, payload #>> '{text,content}' FROM wecom_outbox",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (dest.as_str(), kind.as_str(), enrollment),
        ("parent_group", "payment_received", 5)
    );
    assert!(
        content.contains("学生: 陈小明"),
        "looked up by enrollment_id: {content}"
    );

    db.exec(
        "INSERT INTO notes (family, note) VALUES ('family_chan', 'Bring the workbook 带练习册')",
    )
    .await;
    let note = db
        .count("SELECT count(*) FROM wecom_outbox WHERE webhook_name = 'family_chan' AND payload #>> '{text,content}' = '📌 Bring the workbook 带练习册'")
        .await;
    assert_eq!(note, 1, "destination from the row");

    // A broken message never blocks the school's own INSERT.
    db.exec("INSERT INTO notes (family, note) VALUES ('no_such_group', 'x')")
        .await;
    db.exec("UPDATE wecom_templates SET content = '{{nope}}' WHERE name = 'note'")
        .await;
    db.exec("INSERT INTO notes (family, note) VALUES ('family_chan', 'y')")
        .await;
    assert_eq!(db.count("SELECT count(*) FROM notes").await, 3);
    assert_eq!(db.count("SELECT count(*) FROM wecom_outbox").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_cancels_pending_reminders_and_nothing_else() {
    let db = school().await;
    enrollment(&db, 1, "Emily Wong", 2).await;
    enrollment(&db, 2, "陈小明", 2).await;
    enqueue(&db).await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id)
         VALUES ('parent_group', 'Payment received', 'payment_received', 1);
         CREATE TABLE renewals (id serial, renews_enrollment_id int);
         CREATE TRIGGER cancel_reminders AFTER INSERT ON renewals FOR EACH ROW
             EXECUTE FUNCTION wecom_cancel_reminders_from_row('renews_enrollment_id');
         INSERT INTO renewals (renews_enrollment_id) VALUES (1);",
    )
    .await;
    let cancelled = db
        .count("SELECT count(*) FROM wecom_outbox WHERE status = 'cancelled' AND enrollment_id = 1 AND message_type = 'fee_reminder'")
        .await;
    assert_eq!(cancelled, 1);
    assert_eq!(
        db.status_count("pending").await,
        2,
        "enrollment 2's reminder and the payment message stay"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_renewals WHERE enrollment_id = 1")
            .await,
        1
    );
    // Renewed enrollments are no longer "Not Yet Renewed"; the same day's run adds nothing back.
    db.exec("UPDATE school_enrollments SET renewal_action_status = '⏳ Renewal Created - Awaiting Payment' WHERE enrollment_id = 1")
        .await;
    assert_eq!(enqueue(&db).await, 0);
    assert_eq!(
        db.count("SELECT wecom_cancel_reminders(2)::bigint").await,
        1,
        "the function, called directly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_success_metrics_views_count_days_students_and_conversions() {
    let db = school().await;
    db.exec(
        "INSERT INTO wecom_message_log (webhook_name, message_type, message_content, enrollment_id, send_status, send_timestamp) VALUES
            ('parent_group', 'fee_reminder', '{}', 1, 'sent', now() - interval '2 days'),
            ('parent_group', 'fee_reminder', '{}', 2, 'sent', now() - interval '2 days'),
            ('parent_group', 'fee_reminder', '{}', 1, 'sent', now() - interval '1 day'),
            ('parent_group', 'fee_reminder', '{}', 3, 'failed', now() - interval '1 day'),
            ('parent_group', 'other', '{}', 3, 'sent', now() - interval '1 day');
         INSERT INTO wecom_renewals (enrollment_id, renewed_at) VALUES (1, now() - interval '1 hour');",
    )
    .await;
    let per_day: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT reminders_sent, unique_students FROM wecom_reminders_per_day ORDER BY date",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(per_day, vec![(2, 2), (1, 1)]);
    let (reminded, renewed, percent): (i64, i64, f64) = sqlx::query_as(
        "SELECT enrollments_reminded, renewed_within_window, conversion_percent::float8
         FROM wecom_renewal_conversion",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((reminded, renewed, percent), (2, 1, 50.0));
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
async fn the_example_school_loads_twice_and_its_reminders_and_triggers_work() {
    let db = TestDatabase::migrated().await;
    db.exec(&example_school_sql()).await;
    db.exec(&example_school_sql()).await;
    assert_eq!(
        db.count("SELECT count(*) FROM example_school.enrollments")
            .await,
        36
    );
    robot(&db, "parent_group").await;

    let plan = db.store.reminder_plan(None).await.unwrap();
    let mut ids: Vec<&str> = plan
        .reminders
        .iter()
        .map(|r| r.enrollment_key.as_str())
        .collect();
    ids.sort_by_key(|k| k.parse::<i32>().unwrap());
    assert_eq!(
        ids,
        ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "30"]
    );
    assert_eq!(enqueue(&db).await, 13);

    // A renewal cancels; its payment says thank you.
    db.exec(
        "INSERT INTO example_school.enrollments (id, student_id, tutor_id, assigned_day, assigned_time,
                                                 start_date, end_date, total_credits, renewed_from_id)
         VALUES (40, 1, 1, 'Monday', '16:00', CURRENT_DATE + 1, CURRENT_DATE + 85, 12, 1);
         INSERT INTO example_school.payments (enrollment_id, amount) VALUES (40, 3600);",
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox WHERE enrollment_id = 1 AND status = 'cancelled'"
        )
        .await,
        1
    );
    let thanks = db
        .count("SELECT count(*) FROM wecom_outbox WHERE message_type = 'payment_received' AND payload #>> '{text,content}' LIKE '%陈小明%'")
        .await;
    assert_eq!(thanks, 1);
}

/// Run the binary against the test's database; returns (success, stdout, stderr).
fn cli(db: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wecom-outbox"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run wecom-outbox");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_and_enqueue_reminders_say_what_goes_where() {
    let db = school().await;
    enrollment(&db, 1, "陈小明", 1).await;
    enrollment(&db, 2, "Emily Wong", 6).await;
    db.exec("UPDATE school_enrollments SET language = 'fr' WHERE enrollment_id = 2")
        .await;
    db.exec("INSERT INTO wecom_reminder_routes VALUES ('fr', 'group_parents_fr')")
        .await;
    setting(&db, "reminder_route_column", "language").await;

    let (ok, out, err) = cli(&db, &["preview"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("→ parent_group · text · enrollment 1 · 1 day(s) left · urgent"),
        "{out}"
    );
    assert!(out.contains("Student / 学生: 陈小明\n"), "{out}");
    assert!(
        out.contains("Not sendable: destination group_parents_fr has no robot"),
        "{out}"
    );
    assert!(
        out.contains("1 would be enqueued (parent_group: 1)"),
        "{out}"
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_outbox").await, 0);

    let (ok, out, err) = cli(&db, &["enqueue-reminders"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("enqueued 1 reminder(s) for "), "{out}");
    assert!(out.contains("  parent_group: 1\n"), "{out}");
    assert!(
        out.contains("not enqueued: enrollment 2 (Emily Wong): destination group_parents_fr"),
        "{out}"
    );
    let (_, again, _) = cli(&db, &["enqueue-reminders"]);
    assert!(
        again.contains("enqueued 0 reminder(s)") && again.contains("1 already enqueued"),
        "{again}"
    );
}
