//! What the store reports, whichever backend: `status`'s rows per destination and per robot,
//! and the robot `send-test` names. Each backend decodes its rows into these.

use crate::rules::decide::{RobotSettings, RobotSnapshot};
use crate::wecom::robot_url::RobotUrl;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many days back `status` counts sent, cancelled and expired rows. A week: long enough
/// that Monday morning still shows what went out before a quiet weekend and the last run of a
/// weekly cadence, short enough that counting it reads a week of rows, never all history
/// (which grows by every message ever sent, until `prune`).
pub const FINISHED_WINDOW_DAYS: i32 = 7;

/// One destination's rows by status. What waits or needs a person (pending, sending, failed)
/// is counted exactly; what went well or was dropped (sent, cancelled, expired) only when it
/// finished in the last [`FINISHED_WINDOW_DAYS`] days, so `status` stays fast however much
/// history the outbox keeps.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DestinationCounts {
    pub destination: String,
    pub pending: i64,
    pub sending: i64,
    /// Sent in the last [`FINISHED_WINDOW_DAYS`] days.
    pub sent: i64,
    /// Every failed row still stored (they wait for `retry` or `prune`).
    pub failed: i64,
    /// Cancelled in the last [`FINISHED_WINDOW_DAYS`] days.
    pub cancelled: i64,
    /// Expired in the last [`FINISHED_WINDOW_DAYS`] days.
    pub expired: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
    /// The latest error of a row still being retried (sending, then pending), else that of
    /// the row that failed last (keys are never stored in it).
    pub last_error: Option<String>,
}

/// One robot as stored; the URL holds the key and must be redacted before display.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct RobotReport {
    pub webhook_name: String,
    pub destination: String,
    pub webhook_url: RobotUrl,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    /// `send_days` is `None` also when the stored array cannot be a list of days (see
    /// `unreadable`).
    #[sqlx(flatten)]
    pub settings: RobotSettings,
    /// `send_days` as stored, for display.
    pub send_days_text: Option<String>,
    /// Why this row cannot be read as a robot at all; the rest of the report still shows.
    pub unreadable: Option<String>,
    pub default_timezone: String,
    pub paused_until: Option<DateTime<Utc>>,
    pub last_errcode: Option<i32>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// What the worker learned of WeCom's real limit, and when (see `rules::rate_limit`).
    pub learned_rate_limit: Option<i32>,
    pub learned_at: Option<DateTime<Utc>>,
    pub total_messages_sent: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub recent_sends: Vec<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

impl RobotReport {
    /// The robot as the rules see it.
    pub fn snapshot(&self) -> RobotSnapshot {
        RobotSnapshot {
            settings: self.settings.clone(),
            default_timezone: self.default_timezone.clone(),
            paused_until: self.paused_until,
            learned: super::learned(self.learned_rate_limit, self.learned_at),
            recent_sends: self.recent_sends.clone(),
        }
    }
}

/// A robot as `send-test` sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NamedRobot {
    pub id: i32,
    pub webhook_name: String,
    pub destination: String,
    /// Contains the key: never print it unredacted.
    pub webhook_url: RobotUrl,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
}
