//! What `status` shows: per destination, its rows by status; per robot, its configuration and
//! recent sends, so the rules can say how much budget is left and when it sends next.

use super::PgStore;
use crate::rules::rate_limit::MAX_WINDOW;
use crate::store::{DestinationCounts, RobotReport, FINISHED_WINDOW_DAYS};
use crate::wecom::robot_url::RobotUrl;
use chrono::Utc;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

/// Per destination (every robot's, and every one with live or recent rows), reading only what
/// is live or recent, never all history: pending, sending and failed rows through their
/// partial indexes (claim, sending, failed), rows that finished in the last $1 days through
/// the finished_at index, and the latest error through the same partial indexes, one row each.
/// One pass over the rows (a UNION ALL grouped once), not a join of destinations to rows.
const DESTINATIONS: &str = r#"
SELECT c.destination,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'pending'), 0)::bigint   AS pending,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'sending'), 0)::bigint   AS sending,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'sent'), 0)::bigint      AS sent,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'failed'), 0)::bigint    AS failed,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'cancelled'), 0)::bigint AS cancelled,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'expired'), 0)::bigint   AS expired,
       min(c.oldest) AS oldest_pending,
       coalesce(
           (SELECT f.last_error FROM wecom_outbox f
             WHERE f.webhook_name = c.destination AND f.status = 'sending'
               AND f.last_error IS NOT NULL
             ORDER BY f.created_at DESC LIMIT 1),
           (SELECT f.last_error FROM wecom_outbox f
             WHERE f.webhook_name = c.destination AND f.status = 'pending'
               AND f.last_error IS NOT NULL
             ORDER BY f.created_at DESC LIMIT 1),
           (SELECT f.last_error FROM wecom_outbox f
             WHERE f.webhook_name = c.destination AND f.status = 'failed'
               AND f.last_error IS NOT NULL
             ORDER BY f.finished_at DESC LIMIT 1)) AS last_error
FROM (
    SELECT destination, NULL::text AS status, 0::bigint AS n, NULL::timestamptz AS oldest
    FROM wecom_webhooks
    UNION ALL
    SELECT webhook_name, 'pending', count(*), min(created_at)
    FROM wecom_outbox WHERE status = 'pending' GROUP BY webhook_name
    UNION ALL
    SELECT webhook_name, 'sending', count(*), NULL
    FROM wecom_outbox WHERE status = 'sending' GROUP BY webhook_name
    UNION ALL
    SELECT webhook_name, 'failed', count(*), NULL
    FROM wecom_outbox WHERE status = 'failed' GROUP BY webhook_name
    UNION ALL
    SELECT webhook_name, status, count(*), NULL
    FROM wecom_outbox
    WHERE finished_at >= now() - make_interval(days => $1)
      AND status IN ('sent', 'cancelled', 'expired')
    GROUP BY webhook_name, status
) c
GROUP BY c.destination
ORDER BY c.destination
"#;

/// For this transaction only, no JIT compilation: DESTINATIONS is estimated costly (a subquery
/// per destination, each one index probe) and PostgreSQL would spend 100-200 ms compiling it,
/// several times what running it takes (measured with 1 000 000 finished rows, BENCHMARKS.md).
const NO_JIT: &str = "SELECT set_config('jit', 'off', true)";

/// Every robot, each column read so that any value the schema accepts decodes: text as text,
/// a `send_days` of several dimensions (which the CHECK lets through) set aside with its
/// reason, instants outside what the rules can hold ('infinity', year 200000) as unknown,
/// and recent sends looked up at most two of the longest windows back.
const ROBOTS: &str = r#"
SELECT w.webhook_name::text AS webhook_name,
       w.destination,
       w.webhook_url::text AS webhook_url,
       coalesce(w.is_active, true) AS is_active,
       w.disabled_reason::text AS disabled_reason,
       w.rate_limit,
       extract(epoch FROM w.rate_window)::float8 AS rate_window_secs,
       w.send_window_start, w.send_window_end,
       CASE WHEN array_ndims(w.send_days) > 1 THEN NULL ELSE w.send_days END AS send_days,
       w.send_days::text AS send_days_text,
       CASE WHEN array_ndims(w.send_days) > 1 THEN
           format('send_days %s is an array of %s dimensions: write one list of ISO weekdays, such as {1,2,3,4,5}',
                  w.send_days, array_ndims(w.send_days))
       END AS unreadable,
       w.timezone::text AS timezone,
       coalesce((SELECT value FROM wecom_settings WHERE name = 'default_timezone'), 'UTC')
           AS default_timezone,
       CASE WHEN s.paused_until BETWEEN '0001-01-01' AND '200000-01-01' THEN s.paused_until END
           AS paused_until,
       s.last_errcode, s.last_error,
       s.learned_rate_limit,
       CASE WHEN s.learned_at BETWEEN '0001-01-01' AND '200000-01-01' THEN s.learned_at END
           AS learned_at,
       CASE WHEN s.last_error_at BETWEEN '0001-01-01' AND '200000-01-01' THEN s.last_error_at END
           AS last_error_at,
       coalesce(w.total_messages_sent, 0)::bigint AS total_messages_sent,
       CASE WHEN w.last_used_at::timestamptz BETWEEN '0001-01-01' AND '200000-01-01'
            THEN w.last_used_at::timestamptz END AS last_used_at,
       coalesce((SELECT array_agg(r.at) FROM wecom_rate_slots r
                  WHERE r.robot_id = w.id
                    AND r.at > clock_timestamp() - make_interval(secs =>
                            least(2 * extract(epoch FROM w.rate_window) + 1, $1))
                    AND r.at < '200000-01-01'),
                '{}') AS recent_sends,
       clock_timestamp() AS now
FROM wecom_webhooks w
LEFT JOIN wecom_robot_state s ON s.robot_id = w.id
ORDER BY destination, w.webhook_name
"#;

/// Whether this database has the settings checks (migration 0006); a database not yet
/// migrated that far is shown without them.
/// What running replicas said they skip, and why (their own configuration), newest first.
/// A replica refreshes its notes while it runs; older ones belong to replicas long gone.
const REPLICA_NOTES: &str = r#"
SELECT format('replica %s skips robot %s: %s (%s s ago)', n.worker_id, w.webhook_name, n.note,
              floor(extract(epoch FROM now() - n.noted_at))::bigint)
FROM wecom_replica_notes n
JOIN wecom_webhooks w ON w.id = n.robot_id
WHERE n.noted_at > now() - interval '10 minutes'
ORDER BY n.noted_at DESC, n.worker_id, w.webhook_name
"#;

const HAS_SETTINGS_CHECKS: &str = r#"
SELECT to_regprocedure('wecom_setting_problem(text,text)') IS NOT NULL
   AND to_regprocedure('wecom_settings_conflict()') IS NOT NULL
   AND to_regprocedure('wecom_setting_kinds()') IS NOT NULL
"#;

/// Every stored setting the worker or the reminders cannot use, and why (each message names
/// its setting): values stored before they were checked, or a destination since removed.
/// Without the view the reminders read, the reminder settings are not in use and not shown.
const SETTINGS_PROBLEMS: &str = r#"
SELECT problem FROM (
    SELECT wecom_setting_problem(name, value) AS problem, 1 AS k, name FROM wecom_settings
    UNION ALL
    SELECT wecom_settings_conflict(), 2, 'reminder_min_days'
) p
WHERE problem IS NOT NULL
  AND NOT (name LIKE 'reminder\_%'
           AND EXISTS (SELECT 1 FROM wecom_setting_kinds() k WHERE k.name = p.name)
           AND to_regclass('active_enrollments_needing_renewal') IS NULL)
ORDER BY k, name
"#;

/// A robot row that did not decode: its name (if that much reads) and why, so one odd row
/// costs only its own line of the report.
fn undecodable(row: &PgRow, error: &sqlx::Error) -> RobotReport {
    let text = |column: &str| row.try_get::<String, _>(column).unwrap_or_default();
    RobotReport {
        webhook_name: text("webhook_name"),
        destination: text("destination"),
        webhook_url: RobotUrl::new(text("webhook_url")),
        is_active: row.try_get("is_active").unwrap_or(true),
        unreadable: Some(format!("this row cannot be read as a robot: {error}")),
        now: row.try_get("now").unwrap_or_else(|_| Utc::now()),
        ..RobotReport::default()
    }
}

impl PgStore {
    /// Every destination (robots' and live or recent rows'), with its rows counted by status.
    pub async fn destination_counts(&self) -> sqlx::Result<Vec<DestinationCounts>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(NO_JIT).execute(&mut *tx).await?;
        let counts = sqlx::query_as(DESTINATIONS)
            .bind(FINISHED_WINDOW_DAYS)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Every robot with its state and recent sends; a row that does not decode is reported
    /// with its reason instead of failing the whole report.
    pub async fn robot_reports(&self) -> sqlx::Result<Vec<RobotReport>> {
        let longest_lookback = 2.0 * MAX_WINDOW.as_secs_f64() + 1.0;
        let rows = sqlx::query(ROBOTS)
            .bind(longest_lookback)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| RobotReport::from_row(row).unwrap_or_else(|e| undecodable(row, &e)))
            .collect())
    }

    /// What is wrong with the stored settings, one sentence each (empty when all is well, or
    /// when the database predates the settings checks).
    pub async fn settings_problems(&self) -> sqlx::Result<Vec<String>> {
        let checked: bool = sqlx::query_scalar(HAS_SETTINGS_CHECKS)
            .fetch_one(&self.pool)
            .await?;
        if !checked {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(SETTINGS_PROBLEMS)
            .fetch_all(&self.pool)
            .await
    }

    /// What replicas skip because of their own configuration, one sentence each.
    pub async fn replica_notes(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(REPLICA_NOTES)
            .fetch_all(&self.pool)
            .await
    }
}
