//! The fee reminders' side of MySQL: the plan of a day, enqueuing it, and the daily run. The
//! reminders themselves are procedures (migration 0006); the plan reads the school's view
//! through the same procedure (`wecom_read_renewal_view`) and renders each row with the same
//! functions, so what the plan shows is what `wecom_enqueue_fee_reminders` enqueues.

use super::MySqlStore;
use crate::reminders::{DayPlan, DueReminder, EnqueueReport};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sqlx::mysql::MySqlRow;
use sqlx::{MySqlConnection, Row};

/// The settings the day's plan needs, as the enqueue procedure reads them, and the local
/// today in the deployment's zone (from `wecom_timezone_offsets`, which `migrate` fills).
const SETTINGS: &str = r#"
SELECT CAST(z.zone AS CHAR) AS zone,
       DATE(UTC_TIMESTAMP(6) + INTERVAL wecom_utc_offset(z.zone, UTC_TIMESTAMP(6)) SECOND) AS local_today,
       CAST(wecom_offset_text(wecom_utc_offset(z.zone, UTC_TIMESTAMP(6))) AS CHAR) AS offset_text,
       IF(wecom_setting('reminder_run_time', '09:00') REGEXP '^[0-9]',
          CAST(wecom_setting('reminder_run_time', '09:00') AS TIME), CAST('09:00' AS TIME)) AS run_time,
       CAST(wecom_setting('reminder_urgent_days', '3') AS SIGNED) AS urgent_days,
       CAST(REPLACE(COALESCE(wecom_setting('reminder_cadence', ''), ''), ' ', '') AS CHAR) AS cadence
FROM (SELECT wecom_setting('default_timezone', 'Asia/Hong_Kong') AS zone) z
"#;

/// When the day's reminders may go (now, or the run time of a future day) and when they
/// go stale (the end of that local day), as UTC instants.
const DAY_TIMES: &str = r#"
SELECT IF(? > ?, wecom_local_to_utc(?, TIMESTAMP(?, ?)), UTC_TIMESTAMP(6)) AS not_before,
       wecom_local_to_utc(?, TIMESTAMP(? + INTERVAL 1 DAY)) AS expires_at
"#;

/// The view's rows for the day (left in `wecom_reminder_rows` by `wecom_read_renewal_view`),
/// each rendered and routed as `wecom_enqueue_fee_reminders_into` does, with why it cannot go.
/// Binds: shift, reminder_date, urgent_days, cadence, cadence, reminder_date.
const DUE: &str = r#"
SELECT q.k, CAST(q.student_name AS CHAR) AS student_name, q.days,
       CAST(q.dest AS CHAR) AS destination, CAST(q.payload AS CHAR) AS payload,
       CAST(IF(q.dest IS NULL,
               CONCAT('no route for ', wecom_setting('reminder_route_column', ''), ' = ',
                      COALESCE(wecom_row_value(q.r, wecom_setting('reminder_route_column', '')), 'NULL'),
                      ' and reminder_route_fallback is skip'),
               wecom_enqueue_problem(q.dest, q.payload)) AS CHAR) AS problem,
       CAST(EXISTS (SELECT 1 FROM wecom_outbox o
                     WHERE o.dedupe_key = CONCAT('fee_reminder:', q.k, ':', ?)) AS SIGNED) AS already
FROM (
    SELECT p.n, p.k, p.r, p.student_name, p.days,
           wecom_render_message(IF(p.days <= ?, 'fee_reminder_urgent', 'fee_reminder_normal'), p.r) AS payload,
           wecom_reminder_destination(p.r) AS dest
    FROM (
        SELECT t.n, t.k, t.days, wecom_row_value(t.r, 'student_name') AS student_name,
               JSON_SET(JSON_INSERT(t.r, '$.enrollment_id', t.k, '$.id', t.k),
                        '$.days_until_renewal', t.days, '$.reminder_date', ?) AS r
        FROM (SELECT n, r,
                     COALESCE(wecom_row_value(r, 'enrollment_id'), wecom_row_value(r, 'id')) AS k,
                     CAST(FLOOR(CAST(wecom_row_value(r, 'days_until_renewal') AS DECIMAL(20, 6))) AS SIGNED) - ?
                         AS days
              FROM wecom_reminder_rows) t
    ) p
    WHERE ? = '' OR FIND_IN_SET(CAST(p.days AS CHAR), ?) > 0
) q
ORDER BY q.n
"#;

/// Enqueue the day (one row: enqueued, skipped, problems).
const ENQUEUE: &str = "CALL wecom_enqueue_fee_reminders(?)";

/// What the enqueue just wrote, per destination.
const ENQUEUED_PER_DESTINATION: &str = r#"
SELECT CAST(webhook_name AS CHAR), COUNT(*) FROM wecom_outbox
WHERE dedupe_key IN ({keys}) AND created_at >= ?
GROUP BY webhook_name ORDER BY webhook_name
"#;

/// Runs the day if `wecom_daily_reminders_due()` says so (a lock, the record and the
/// reminders in its own transaction); how many in `@wecom_daily_enqueued`.
const RUN_DAILY: &str = "CALL wecom_run_daily_reminders(?)";
const DAILY_ENQUEUED: &str = "SELECT CAST(@wecom_daily_enqueued AS SIGNED)";

/// The deployment's day settings.
struct Day {
    zone: String,
    local_today: NaiveDate,
    offset_text: String,
    run_time: NaiveTime,
    urgent_days: i64,
    cadence: String,
}

async fn settings(conn: &mut MySqlConnection) -> sqlx::Result<Day> {
    let row = sqlx::query(SETTINGS).fetch_one(&mut *conn).await?;
    Ok(Day {
        zone: row.try_get("zone")?,
        local_today: row.try_get("local_today")?,
        offset_text: row.try_get("offset_text")?,
        run_time: row.try_get("run_time")?,
        urgent_days: row.try_get("urgent_days")?,
        cadence: row
            .try_get::<Option<String>, _>("cadence")?
            .unwrap_or_default(),
    })
}

/// Read the school's view for `date` into `wecom_reminder_rows`, with CURDATE() the local
/// day as the enqueue procedure has it; the session's zone is UTC again afterwards, whatever
/// happened.
async fn read_view(conn: &mut MySqlConnection, day: &Day, shift: i64) -> sqlx::Result<()> {
    sqlx::query("SET time_zone = ?")
        .bind(&day.offset_text)
        .execute(&mut *conn)
        .await?;
    let read = sqlx::query("CALL wecom_read_renewal_view(?)")
        .bind(shift)
        .execute(&mut *conn)
        .await;
    sqlx::query("SET time_zone = '+00:00'")
        .execute(&mut *conn)
        .await?;
    read.map(|_| ())
}

/// One reminder of the plan.
fn reminder(
    row: &MySqlRow,
    date: NaiveDate,
    urgent_days: i64,
    times: (DateTime<Utc>, DateTime<Utc>),
) -> sqlx::Result<DueReminder> {
    let key: Option<String> = row.try_get("k")?;
    let key = key.ok_or_else(|| {
        sqlx::Error::Decode(
            "active_enrollments_needing_renewal needs an enrollment_id (or id) column with a value"
                .into(),
        )
    })?;
    let days: i64 = row.try_get("days")?;
    let payload: Option<String> = row.try_get("payload")?;
    let is_id = !key.is_empty() && key.len() <= 18 && key.bytes().all(|b| b.is_ascii_digit());
    Ok(DueReminder {
        enrollment_id: if is_id { key.parse().ok() } else { None },
        student_name: row.try_get("student_name")?,
        days_until_renewal: days as i32,
        urgent: days <= urgent_days,
        destination: row.try_get("destination")?,
        payload: payload.and_then(|p| serde_json::from_str(&p).ok()),
        dedupe_key: format!("fee_reminder:{key}:{date}"),
        not_before: times.0,
        expires_at: times.1,
        already_enqueued: row.try_get::<i64, _>("already")? == 1,
        problem: row.try_get("problem")?,
        enrollment_key: key,
    })
}

/// The plan of `date` (default: today in the deployment's zone) on one connection.
async fn plan(conn: &mut MySqlConnection, date: Option<NaiveDate>) -> sqlx::Result<DayPlan> {
    let day = settings(conn).await?;
    let date = date.unwrap_or(day.local_today);
    let shift = (date - day.local_today).num_days();
    read_view(conn, &day, shift).await?;
    let times: (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(DAY_TIMES)
        .bind(date)
        .bind(day.local_today)
        .bind(&day.zone)
        .bind(date)
        .bind(day.run_time)
        .bind(&day.zone)
        .bind(date)
        .fetch_one(&mut *conn)
        .await?;
    let date_text = date.to_string();
    let rows = sqlx::query(DUE)
        .bind(&date_text)
        .bind(day.urgent_days)
        .bind(&date_text)
        .bind(shift)
        .bind(&day.cadence)
        .bind(&day.cadence)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::query("DROP TEMPORARY TABLE IF EXISTS wecom_reminder_rows")
        .execute(&mut *conn)
        .await?;
    let reminders = rows
        .iter()
        .map(|row| reminder(row, date, day.urgent_days, times))
        .collect::<sqlx::Result<_>>()?;
    Ok(DayPlan {
        date,
        zone: day.zone,
        reminders,
    })
}

impl MySqlStore {
    /// Every reminder `date` calls for, rendered, without enqueuing anything.
    pub async fn reminder_plan(&self, date: Option<NaiveDate>) -> sqlx::Result<DayPlan> {
        let mut conn = self.pool.acquire().await?;
        plan(&mut conn, date).await
    }

    /// Enqueue `date`'s reminders (the procedure the daily run calls) and say what happened,
    /// in one transaction.
    pub async fn enqueue_reminders(&self, date: Option<NaiveDate>) -> sqlx::Result<EnqueueReport> {
        let mut tx = self.pool.begin().await?;
        let plan = plan(&mut tx, date).await?;
        let started: DateTime<Utc> = sqlx::query_scalar("SELECT UTC_TIMESTAMP(6)")
            .fetch_one(&mut *tx)
            .await?;
        let row = sqlx::query(ENQUEUE)
            .bind(plan.date)
            .fetch_one(&mut *tx)
            .await?;
        let enqueued: i64 = row.try_get(0)?;
        let mut per_destination = Vec::new();
        if !plan.reminders.is_empty() {
            let keys = vec!["?"; plan.reminders.len()].join(", ");
            let sql = ENQUEUED_PER_DESTINATION.replace("{keys}", &keys);
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
            for r in &plan.reminders {
                query = query.bind(&r.dedupe_key);
            }
            per_destination = query.bind(started).fetch_all(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(EnqueueReport {
            plan,
            enqueued,
            per_destination: per_destination.into_iter().collect(),
        })
    }

    /// Run today's reminders now unless another runner has (or they are not due); how many
    /// were enqueued. The procedure runs its own transaction.
    pub async fn run_daily_reminders(&self, runner: &str) -> sqlx::Result<Option<i32>> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(RUN_DAILY)
            .bind(runner)
            .execute(&mut *conn)
            .await?;
        let enqueued: Option<i64> = sqlx::query_scalar(DAILY_ENQUEUED)
            .fetch_one(&mut *conn)
            .await?;
        Ok(enqueued.map(|n| n as i32))
    }
}
