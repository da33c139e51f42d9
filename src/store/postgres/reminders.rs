//! The fee reminders' side of PostgreSQL: the plan of a day, enqueuing it, and the daily
//! run's record. The reminders themselves are SQL functions (migration 0004).

use super::PgStore;
use crate::reminders::{DayPlan, DueReminder, EnqueueReport};
use chrono::NaiveDate;
use sqlx::PgConnection;

/// The day asked for (default: today in the configured zone) and that zone.
const RESOLVE_DAY: &str = r#"
SELECT coalesce($1, (now() AT TIME ZONE wecom_setting('default_timezone', 'Asia/Hong_Kong'))::date),
       wecom_setting('default_timezone', 'Asia/Hong_Kong')
"#;

const DUE: &str = "SELECT * FROM wecom_fee_reminders_due($1)";

const ENQUEUE: &str = "SELECT wecom_enqueue_fee_reminders($1)";

/// What the enqueue just wrote, per destination (rows of this transaction).
const ENQUEUED_PER_DESTINATION: &str = r#"
SELECT webhook_name, count(*) FROM wecom_outbox
WHERE dedupe_key = ANY($1) AND created_at = now()
GROUP BY webhook_name ORDER BY webhook_name
"#;

/// Runs the day if `wecom_daily_reminders_due` says so: takes an advisory lock, re-checks,
/// enqueues and records the day in one transaction.
const RUN_DAILY: &str = "SELECT wecom_run_daily_reminders($1)";

async fn resolve_day(
    conn: &mut PgConnection,
    date: Option<NaiveDate>,
) -> sqlx::Result<(NaiveDate, String)> {
    sqlx::query_as(RESOLVE_DAY).bind(date).fetch_one(conn).await
}

async fn due(conn: &mut PgConnection, date: NaiveDate) -> sqlx::Result<Vec<DueReminder>> {
    sqlx::query_as(DUE).bind(date).fetch_all(conn).await
}

impl PgStore {
    /// Every reminder `date` calls for, rendered, without enqueuing anything.
    pub async fn reminder_plan(&self, date: Option<NaiveDate>) -> sqlx::Result<DayPlan> {
        let mut conn = self.pool.acquire().await?;
        let (date, zone) = resolve_day(&mut conn, date).await?;
        let reminders = due(&mut conn, date).await?;
        Ok(DayPlan {
            date,
            zone,
            reminders,
        })
    }

    /// Enqueue `date`'s reminders (the same function the daily run calls) and say what
    /// happened, in one transaction.
    pub async fn enqueue_reminders(&self, date: Option<NaiveDate>) -> sqlx::Result<EnqueueReport> {
        let mut tx = self.pool.begin().await?;
        let (date, zone) = resolve_day(&mut tx, date).await?;
        let reminders = due(&mut tx, date).await?;
        let enqueued: i32 = sqlx::query_scalar(ENQUEUE)
            .bind(date)
            .fetch_one(&mut *tx)
            .await?;
        let keys: Vec<&str> = reminders.iter().map(|r| r.dedupe_key.as_str()).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(ENQUEUED_PER_DESTINATION)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(EnqueueReport {
            plan: DayPlan {
                date,
                zone,
                reminders,
            },
            enqueued: enqueued.into(),
            per_destination: rows.into_iter().collect(),
        })
    }

    /// Run today's reminders now unless another runner has; how many were enqueued.
    pub async fn run_daily_reminders(&self, runner: &str) -> sqlx::Result<Option<i32>> {
        sqlx::query_scalar(RUN_DAILY)
            .bind(runner)
            .fetch_one(&self.pool)
            .await
    }
}
