//! What `status` shows: per destination, its rows by status; per robot, its configuration and
//! recent sends, so the rules can say how much budget is left and when it sends next.

use super::PgStore;
use crate::rules::decide::RobotSnapshot;
use chrono::{DateTime, NaiveTime, Utc};
use serde::Serialize;
use std::time::Duration;

const DESTINATIONS: &str = r#"
WITH destinations AS (
    SELECT coalesce(pool_name, webhook_name) AS destination FROM wecom_webhooks
    UNION
    SELECT DISTINCT webhook_name FROM wecom_outbox
)
SELECT d.destination,
       count(o.id) FILTER (WHERE o.status = 'pending')   AS pending,
       count(o.id) FILTER (WHERE o.status = 'sending')   AS sending,
       count(o.id) FILTER (WHERE o.status = 'sent')      AS sent,
       count(o.id) FILTER (WHERE o.status = 'failed')    AS failed,
       count(o.id) FILTER (WHERE o.status = 'cancelled') AS cancelled,
       count(o.id) FILTER (WHERE o.status = 'expired')   AS expired,
       min(o.created_at) FILTER (WHERE o.status = 'pending') AS oldest_pending,
       (SELECT last_error FROM wecom_outbox f
         WHERE f.webhook_name = d.destination AND f.last_error IS NOT NULL
         ORDER BY coalesce(f.sent_at, f.created_at) DESC LIMIT 1) AS last_error
FROM destinations d
LEFT JOIN wecom_outbox o ON o.webhook_name = d.destination
GROUP BY d.destination
ORDER BY d.destination
"#;

const ROBOTS: &str = r#"
SELECT w.webhook_name, coalesce(w.pool_name, w.webhook_name) AS destination,
       w.webhook_url, coalesce(w.is_active, true) AS is_active, w.disabled_reason,
       w.rate_limit, extract(epoch FROM w.rate_window)::float8 AS rate_window_secs,
       w.send_window_start, w.send_window_end, w.send_days, w.timezone,
       coalesce((SELECT value FROM wecom_settings WHERE name = 'default_timezone'), 'UTC')
           AS default_timezone,
       s.paused_until, s.last_errcode, s.last_error, s.last_error_at,
       coalesce(w.total_messages_sent, 0) AS total_messages_sent,
       w.last_used_at::timestamptz AS last_used_at,
       coalesce((SELECT array_agg(r.at) FROM wecom_rate_slots r
                  WHERE r.robot_id = w.id
                    AND r.at > clock_timestamp() - 2 * w.rate_window - interval '1 second'),
                '{}') AS recent_sends,
       clock_timestamp() AS now
FROM wecom_webhooks w
LEFT JOIN wecom_robot_state s ON s.robot_id = w.id
ORDER BY destination, w.webhook_name
"#;

/// One destination's rows by status.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DestinationCounts {
    pub destination: String,
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub expired: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
    /// The most recent error recorded on a row (keys are never stored in it).
    pub last_error: Option<String>,
}

/// One robot as stored; the URL holds the key and must be redacted before display.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RobotReport {
    pub webhook_name: String,
    pub destination: String,
    pub webhook_url: String,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub rate_limit: i32,
    pub rate_window_secs: f64,
    pub send_window_start: Option<NaiveTime>,
    pub send_window_end: Option<NaiveTime>,
    pub send_days: Option<Vec<i32>>,
    pub timezone: Option<String>,
    pub default_timezone: String,
    pub paused_until: Option<DateTime<Utc>>,
    pub last_errcode: Option<i32>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub total_messages_sent: i32,
    pub last_used_at: Option<DateTime<Utc>>,
    pub recent_sends: Vec<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

impl RobotReport {
    /// The robot as the rules see it.
    pub fn snapshot(&self) -> RobotSnapshot {
        RobotSnapshot {
            rate_limit: self.rate_limit,
            rate_window: Duration::try_from_secs_f64(self.rate_window_secs).unwrap_or_default(),
            send_window_start: self.send_window_start,
            send_window_end: self.send_window_end,
            send_days: self.send_days.clone(),
            timezone: self.timezone.clone(),
            default_timezone: self.default_timezone.clone(),
            paused_until: self.paused_until,
            recent_sends: self.recent_sends.clone(),
        }
    }
}

impl PgStore {
    /// Every destination (robots' and rows'), with its rows counted by status.
    pub async fn destination_counts(&self) -> sqlx::Result<Vec<DestinationCounts>> {
        sqlx::query_as(DESTINATIONS).fetch_all(&self.pool).await
    }

    /// Every robot with its state and recent sends.
    pub async fn robot_reports(&self) -> sqlx::Result<Vec<RobotReport>> {
        sqlx::query_as(ROBOTS).fetch_all(&self.pool).await
    }
}
