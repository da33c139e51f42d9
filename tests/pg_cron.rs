//! sql/pg_cron.sql against a PostgreSQL that has pg_cron loaded (scripts/test loads it when
//! the machine has postgresql-NN-cron): the job is scheduled in the wecom-outbox database and,
//! run by pg_cron itself, does the day's reminders once. Skips, saying why, elsewhere.

mod reminder_support;

use reminder_support::*;
use sqlx::{Connection, PgConnection};
use std::process::Command;
use std::time::Duration;
use wecom_outbox::testing::{server_url, with_database};

/// pg_cron's own database on the test server, or why this server cannot run the test.
async fn cron_database() -> Result<String, String> {
    let mut admin = PgConnection::connect(&server_url())
        .await
        .map_err(|e| e.to_string())?;
    let preload: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    if !preload.contains("pg_cron") {
        return Err(format!(
            "pg_cron is not in shared_preload_libraries ({preload:?}) of the server DATABASE_URL names; \
             scripts/test loads it when postgresql-NN-cron is installed"
        ));
    }
    if Command::new("psql").arg("--version").output().is_err() {
        return Err("psql is not on PATH (sql/pg_cron.sql is a psql script)".into());
    }
    sqlx::query_scalar("SELECT current_setting('cron.database_name')")
        .fetch_one(&mut admin)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_cron_runs_the_day_once_at_the_local_time() {
    let cron_db = match cron_database().await {
        Ok(db) => db,
        Err(why) => {
            eprintln!("SKIPPED pg_cron_runs_the_day_once_at_the_local_time: {why}");
            return;
        }
    };
    let cron_url = with_database(&server_url(), &cron_db);
    let mut cron = PgConnection::connect(&cron_url).await.unwrap();
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_cron")
        .execute(&mut cron)
        .await
        .unwrap();

    let db = school().await;
    setting(&db, "default_timezone", &zone_at_noon()).await;
    setting(&db, "reminder_run_time", "11:00").await;
    enrollment(&db, 1, "陈小明", 2).await;
    let name = db.url.rsplit('/').next().unwrap().to_string();

    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-d",
            &cron_url,
            "-v",
            &format!("wecom_db={name}"),
        ])
        .args([
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/sql/pg_cron.sql"),
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql -f sql/pg_cron.sql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = format!("wecom-fee-reminders:{name}");
    let (jobid, schedule, database): (i64, String, String) =
        sqlx::query_as("SELECT jobid, schedule, database FROM cron.job WHERE jobname = $1")
            .bind(&job)
            .fetch_one(&mut cron)
            .await
            .expect("the job is scheduled");
    assert_eq!(
        (schedule.as_str(), database.as_str()),
        ("*/5 * * * *", name.as_str())
    );

    // Every minute instead of every 5, so the test sees pg_cron run it within ~a minute.
    sqlx::query("SELECT cron.alter_job($1, schedule => '* * * * *')")
        .bind(jobid)
        .execute(&mut cron)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(130);
    let mut runs = 0;
    while tokio::time::Instant::now() < deadline {
        runs = db
            .count("SELECT count(*) FROM wecom_daily_runs WHERE status = 'done' AND runner = 'pg_cron'")
            .await;
        if runs > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sqlx::query("SELECT cron.unschedule($1)")
        .bind(jobid)
        .execute(&mut cron)
        .await
        .unwrap();
    assert_eq!(runs, 1, "pg_cron ran the day (see cron.job_run_details)");
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE message_type = 'fee_reminder'")
            .await,
        1
    );
}
