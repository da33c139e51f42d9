//! What `status` shows, on MySQL: per destination its rows by status; per robot its
//! configuration and recent sends. Every robot column is read on its own, so one odd row (a
//! `send_days` that is not a list, a zero date) costs only its own line of the report.

use super::MySqlStore;
use crate::rules::decide::RobotSettings;
use crate::rules::rate_limit::MAX_WINDOW;
use crate::store::{DestinationCounts, RobotReport, FINISHED_WINDOW_DAYS};
use crate::wecom::robot_url::RobotUrl;
use chrono::{DateTime, Utc};
use sqlx::mysql::MySqlRow;
use sqlx::{FromRow, Row};

/// Per destination (every robot's, and every one with live or recent rows), reading only what
/// is live or recent, never all history: pending, sending and failed rows through an index
/// that starts with status, rows that finished in the last ? days through
/// wecom_outbox_finished_idx, and the latest error of a failed row through
/// wecom_outbox_failed_idx (migration 0013), one row each. One pass over the rows (a UNION
/// ALL grouped once: MariaDB computes a CTE once per mention).
const DESTINATIONS: &str = r#"
SELECT c.destination,
       CAST(COALESCE(SUM(CASE WHEN c.status = 'pending'   THEN c.n END), 0) AS SIGNED) AS pending,
       CAST(COALESCE(SUM(CASE WHEN c.status = 'sending'   THEN c.n END), 0) AS SIGNED) AS sending,
       CAST(COALESCE(SUM(CASE WHEN c.status = 'sent'      THEN c.n END), 0) AS SIGNED) AS sent,
       CAST(COALESCE(SUM(CASE WHEN c.status = 'failed'    THEN c.n END), 0) AS SIGNED) AS failed,
       CAST(COALESCE(SUM(CASE WHEN c.status = 'cancelled' THEN c.n END), 0) AS SIGNED) AS cancelled,
       CAST(COALESCE(SUM(CASE WHEN c.status = 'expired'   THEN c.n END), 0) AS SIGNED) AS expired,
       MIN(c.oldest) AS oldest_pending,
       COALESCE(
           (SELECT f.last_error FROM wecom_outbox f
             WHERE f.status = 'sending' AND f.webhook_name = c.destination
               AND f.last_error IS NOT NULL
             ORDER BY f.created_at DESC LIMIT 1),
           (SELECT f.last_error FROM wecom_outbox f
             WHERE f.status = 'pending' AND f.webhook_name = c.destination
               AND f.last_error IS NOT NULL
             ORDER BY f.created_at DESC LIMIT 1),
           (SELECT f.last_error FROM wecom_outbox f
             WHERE f.status = 'failed' AND f.webhook_name = c.destination
               AND f.last_error IS NOT NULL
             ORDER BY f.finished_at DESC LIMIT 1)) AS last_error
FROM (
    SELECT destination, NULL AS status, 0 AS n, CAST(NULL AS DATETIME(6)) AS oldest
    FROM wecom_webhooks
    UNION ALL
    SELECT webhook_name, status, COUNT(*), MIN(created_at)
    FROM wecom_outbox WHERE status = 'pending' GROUP BY webhook_name, status
    UNION ALL
    SELECT webhook_name, status, COUNT(*), NULL
    FROM wecom_outbox WHERE status IN ('sending', 'failed') GROUP BY webhook_name, status
    UNION ALL
    SELECT webhook_name, status, COUNT(*), NULL
    FROM wecom_outbox
    WHERE finished_at >= UTC_TIMESTAMP(6) - INTERVAL ? DAY
      AND status IN ('sent', 'cancelled', 'expired')
    GROUP BY webhook_name, status
) c
GROUP BY c.destination
ORDER BY c.destination
"#;

/// Every robot with its state; text columns as text whatever the school's charset.
const ROBOTS: &str = r#"
SELECT w.id,
       CAST(w.webhook_name AS CHAR) AS webhook_name,
       CAST(w.destination AS CHAR) AS destination,
       CAST(w.webhook_url AS CHAR) AS webhook_url,
       CAST(COALESCE(w.is_active, TRUE) AS SIGNED) AS is_active,
       CAST(w.disabled_reason AS CHAR) AS disabled_reason,
       w.rate_limit, w.rate_window, w.send_window_start, w.send_window_end,
       CAST(w.send_days AS CHAR) AS send_days,
       CAST(w.timezone AS CHAR) AS timezone,
       COALESCE((SELECT value FROM wecom_settings WHERE name = 'default_timezone'), 'UTC')
           AS default_timezone,
       s.paused_until, s.last_errcode, CAST(s.last_error AS CHAR) AS last_error, s.last_error_at,
       s.learned_rate_limit, s.learned_at,
       CAST(COALESCE(w.total_messages_sent, 0) AS SIGNED) AS total_messages_sent,
       w.last_used_at,
       UTC_TIMESTAMP(6) AS now
FROM wecom_webhooks w
LEFT JOIN wecom_robot_state s ON s.robot_id = w.id
ORDER BY w.destination, w.webhook_name
"#;

/// Sends that may still count against any robot's limit (two of the longest windows back).
const RECENT_SENDS: &str = r#"
SELECT robot_id, at FROM wecom_rate_slots
WHERE at > UTC_TIMESTAMP(6) - INTERVAL ? SECOND
"#;

/// What running replicas said they skip, and why, newest first (notes older than 10 minutes
/// belong to replicas long gone).
const REPLICA_NOTES: &str = r#"
SELECT CONCAT('replica ', n.worker_id, ' skips robot ', w.webhook_name, ': ', n.note,
              ' (', TIMESTAMPDIFF(SECOND, n.noted_at, UTC_TIMESTAMP(6)), ' s ago)')
FROM wecom_replica_notes n
JOIN wecom_webhooks w ON w.id = n.robot_id
WHERE n.noted_at > UTC_TIMESTAMP(6) - INTERVAL 10 MINUTE
ORDER BY n.noted_at DESC, n.worker_id, w.webhook_name
"#;

const HAS_SETTINGS_CHECKS: &str = r#"
SELECT COUNT(*) FROM information_schema.routines
WHERE routine_schema = DATABASE() AND routine_name IN ('wecom_setting_problem', 'wecom_setting_kind')
"#;

/// Every stored setting the worker or the reminders cannot use, and why. Without the view
/// the reminders read, the reminder settings are not in use and not shown.
const SETTINGS_PROBLEMS: &str = r#"
SELECT CAST(p.problem AS CHAR) FROM (
    SELECT wecom_setting_problem(name, value) AS problem, name FROM wecom_settings
) p
WHERE p.problem IS NOT NULL
  AND NOT (p.name LIKE 'reminder\_%'
           AND wecom_setting_kind(p.name) IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema = DATABASE()
                              AND table_name = 'active_enrollments_needing_renewal'))
ORDER BY p.name
"#;

/// One robot's row as the report shows it; a column that does not decode is unknown, and a
/// robot whose settings do not decode says why in `unreadable`.
fn robot_report(row: &MySqlRow, recent: &[(i32, DateTime<Utc>)]) -> RobotReport {
    let text = |c: &str| row.try_get::<Option<String>, _>(c).ok().flatten();
    let when = |c: &str| row.try_get::<Option<DateTime<Utc>>, _>(c).ok().flatten();
    let now = when("now").unwrap_or_else(Utc::now);
    let (settings, unreadable) = match RobotSettings::from_row(row) {
        Ok(settings) => (settings, None),
        Err(e) => (
            RobotSettings::default(),
            Some(format!("this row cannot be read as a robot: {e}")),
        ),
    };
    let id: i32 = row.try_get("id").unwrap_or_default();
    let horizon = now
        - chrono::Duration::milliseconds(
            ((2.0 * settings.rate_window.as_secs_f64() + 1.0) * 1000.0) as i64,
        );
    RobotReport {
        webhook_name: text("webhook_name").unwrap_or_default(),
        destination: text("destination").unwrap_or_default(),
        webhook_url: RobotUrl::new(text("webhook_url").unwrap_or_default()),
        is_active: row.try_get::<i64, _>("is_active").map_or(true, |v| v != 0),
        disabled_reason: text("disabled_reason"),
        send_days_text: text("send_days"),
        settings,
        unreadable,
        default_timezone: text("default_timezone").unwrap_or_else(|| "UTC".into()),
        paused_until: when("paused_until"),
        last_errcode: row.try_get("last_errcode").ok().flatten(),
        last_error: text("last_error"),
        last_error_at: when("last_error_at"),
        learned_rate_limit: row.try_get("learned_rate_limit").ok().flatten(),
        learned_at: when("learned_at"),
        total_messages_sent: row.try_get("total_messages_sent").unwrap_or_default(),
        last_used_at: when("last_used_at"),
        recent_sends: recent
            .iter()
            .filter(|(robot, at)| *robot == id && *at > horizon)
            .map(|(_, at)| *at)
            .collect(),
        now,
    }
}

impl MySqlStore {
    /// Every destination (robots' and live or recent rows'), with its rows counted by status.
    pub async fn destination_counts(&self) -> sqlx::Result<Vec<DestinationCounts>> {
        sqlx::query_as(DESTINATIONS)
            .bind(FINISHED_WINDOW_DAYS)
            .fetch_all(&self.pool)
            .await
    }

    /// Every robot with its state and recent sends; a row that does not decode is reported
    /// with its reason instead of failing the whole report.
    pub async fn robot_reports(&self) -> sqlx::Result<Vec<RobotReport>> {
        let longest_lookback = 2 * MAX_WINDOW.as_secs() + 1;
        let recent: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(RECENT_SENDS)
            .bind(longest_lookback as i64)
            .fetch_all(&self.pool)
            .await?;
        let rows = sqlx::query(ROBOTS).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|row| robot_report(row, &recent)).collect())
    }

    /// What is wrong with the stored settings, one sentence each.
    pub async fn settings_problems(&self) -> sqlx::Result<Vec<String>> {
        let checks: i64 = sqlx::query_scalar(HAS_SETTINGS_CHECKS)
            .fetch_one(&self.pool)
            .await?;
        if checks < 2 {
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
