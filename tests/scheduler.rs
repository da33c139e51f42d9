//! The once-a-day run across replicas: three in-process workers, one run recorded, the
//! reminders enqueued (and delivered) once; nothing before the run time; the SQL rule that
//! pg_cron uses agrees with the worker's.

mod reminder_support;

use reminder_support::*;
use std::time::Duration;
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};

/// A school whose view counts how often it is read (each read is one enqueue run).
async fn counting_school(run_time: &str) -> TestDatabase {
    let db = TestDatabase::migrated().await;
    db.exec(SCHOOL).await;
    db.exec(
        "CREATE TABLE view_reads (at timestamptz DEFAULT clock_timestamp());
         CREATE FUNCTION note_read() RETURNS int LANGUAGE sql VOLATILE AS
             $$ INSERT INTO view_reads DEFAULT VALUES RETURNING 1 $$;
         CREATE OR REPLACE VIEW active_enrollments_needing_renewal AS
         WITH r AS (SELECT note_read())
         SELECT enrollment_id, student_id, student_name, phone, tutor_name, assigned_day, assigned_time,
                end_date - CURRENT_DATE AS days_until_renewal, total_credits_remaining,
                renewal_action_status, language, family_group
         FROM school_enrollments CROSS JOIN r;",
    )
    .await;
    setting(&db, "default_timezone", &zone_at_noon()).await;
    setting(&db, "reminder_run_time", run_time).await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_the_day_once_and_deliver_each_reminder_once() {
    let fake = standin(20, Duration::from_secs(60)).await;
    let db = counting_school("11:00").await;
    db.add_robot(&fake, "parent_group", None, 20, Duration::from_secs(60))
        .await;
    for (id, name) in [(1, "陈小明"), (2, "Emily Wong"), (3, "李嘉欣")] {
        enrollment(&db, id, name, id).await;
    }
    // Every replica was "down" at 11:00: they start after it, and catch up.
    let replicas: Vec<Replica> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| Replica::start(&db, fast_config(id, &fake)))
        .collect();
    db.wait_for_status("sent", 3, Duration::from_secs(15)).await;
    // Give the others several chances to run it again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for r in replicas {
        r.stop().await;
    }
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_daily_runs WHERE status = 'done' AND enqueued = 3")
            .await,
        1,
        "one run recorded"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM view_reads").await,
        1,
        "the view was read by one run only"
    );
    assert_eq!(fake.received().len(), 3, "each reminder delivered once");
    let runner = db
        .count("SELECT count(*) FROM wecom_daily_runs WHERE runner IN ('r1', 'r2', 'r3')")
        .await;
    assert_eq!(runner, 1, "the record names the replica that ran it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_runs_before_the_local_run_time_or_when_off() {
    let fake = standin(20, Duration::from_secs(60)).await;
    let db = counting_school("14:00").await;
    db.add_robot(&fake, "parent_group", None, 20, Duration::from_secs(60))
        .await;
    enrollment(&db, 1, "Emily Wong", 1).await;
    let replica = Replica::start(&db, fast_config("r1", &fake));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(db.count("SELECT count(*) FROM wecom_daily_runs").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM view_reads").await, 0);

    setting(&db, "reminder_run_time", "off").await;
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT wecom_run_daily_reminders('test')) r WHERE wecom_run_daily_reminders IS NOT NULL")
            .await,
        0,
        "off: the SQL runner does nothing either"
    );
    setting(&db, "reminder_run_time", "11:00").await;
    db.wait_for(
        "SELECT count(*) FROM wecom_daily_runs WHERE status = 'done'",
        1,
        Duration::from_secs(15),
    )
    .await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_runner_records_the_day_once_and_a_failure_is_recorded_without_reminders() {
    let db = counting_school("11:00").await;
    robot(&db, "parent_group").await;
    enrollment(&db, 1, "Emily Wong", 1).await;
    assert_eq!(
        db.count("SELECT wecom_run_daily_reminders('pg_cron')::bigint")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT wecom_run_daily_reminders('pg_cron') AS n) r WHERE n IS NULL")
            .await,
        1,
        "done today: nothing to do"
    );

    // A broken view: the failure is recorded, nothing is enqueued, and it is retried later.
    db.exec(
        "DELETE FROM wecom_daily_runs; DELETE FROM wecom_outbox;
         CREATE OR REPLACE VIEW active_enrollments_needing_renewal AS
         SELECT enrollment_id, student_id, student_name, phone, tutor_name, assigned_day, assigned_time,
                (end_date - CURRENT_DATE) / 0 AS days_until_renewal, total_credits_remaining,
                renewal_action_status, language, family_group
         FROM school_enrollments;",
    )
    .await;
    db.count("SELECT count(*) FROM (SELECT wecom_run_daily_reminders('pg_cron')) r")
        .await;
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, error FROM wecom_daily_runs")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.contains("division by zero"), "{error}");
    assert_eq!(db.count("SELECT count(*) FROM wecom_outbox").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT wecom_daily_reminders_due()) d WHERE wecom_daily_reminders_due IS NULL").await,
        1,
        "not retried at once"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT wecom_daily_reminders_due(now() + interval '6 minutes')) d WHERE wecom_daily_reminders_due IS NOT NULL").await,
        1,
        "retried after 5 minutes"
    );
}
