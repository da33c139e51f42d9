//! Everything the worker, the CLI and the reminders ask of the database: one interface
//! ([`Store`]), one module per backend behind it. The SQL lives in the backend's module and in
//! `migrations/<backend>/`, nowhere else; the rules a backend applies mid-transaction are
//! handed in as plain functions, so both backends obey the same Rust rules.

mod error;
mod interface;
pub mod mysql;
pub mod postgres;
mod report;
mod retention;

use crate::wecom::robot_url::RobotUrl;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use error::{Result, StoreError};
pub use interface::{Store, Wake, Wakeups};
pub use report::{DestinationCounts, NamedRobot, RobotReport, FINISHED_WINDOW_DAYS};
pub use retention::{FailedFilter, FailedRow, Pruned, FINISHED};

/// The robot a batch was claimed for: enough to send and to report, never logged whole.
#[derive(Debug, Clone)]
pub struct ClaimedRobot {
    pub id: i32,
    pub name: String,
    pub destination: String,
    /// Prints redacted; the key only through `expose_secret`.
    pub url: RobotUrl,
    /// The configured limit (`wecom_webhooks.rate_limit`) and window, for learning from 45009.
    pub rate_limit: i32,
    pub rate_window: std::time::Duration,
    pub consecutive_45009: i32,
    /// Set when the claim took all the rules allowed: more rows may be waiting, and this is
    /// when the robot may take them (its next check). `None`: it took every claimable row,
    /// so only a new row (which wakes the workers) gives it more to do.
    pub more_at: Option<DateTime<Utc>>,
}

/// One outbox row claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    /// The claim's token: only the claim holding it may finish or release the row, so two
    /// replicas started with the same `--worker-id` can never finish each other's rows.
    pub lease: Uuid,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The rate-limit reservation this send uses.
    pub slot_id: i64,
}

/// What a claim attempt found.
#[derive(Debug)]
pub enum ClaimResult {
    /// Another replica is deciding for this robot right now, or it is no longer active.
    Busy,
    /// Nothing may go before this time; the robot's next check is set to it.
    Waiting(DateTime<Utc>),
    /// The robot's configuration cannot work; it is skipped (not disabled) for this reason.
    Unusable(String),
    /// This replica may not serve the robot (its own configuration); nothing shared changed.
    Skipped(String),
    /// These rows are ours until the lease ends, in send order.
    Claimed(ClaimedRobot, Vec<Claimed>),
}

/// What one housekeeping pass did, so the replica that ran it can say so and knows when
/// to run the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct HousekeepingRun {
    /// Pending rows past `expires_at`, now `expired`.
    pub expired: u64,
    /// Rows whose lease ended without an answer, now `pending` again (or `failed`).
    pub rescued: i64,
    /// The earliest lease end or expiry still ahead (`None`: none).
    pub next_due: Option<DateTime<Utc>>,
}

/// A message WeCom accepted, waiting to be recorded (possibly with others in one commit).
#[derive(Debug, Clone)]
pub struct SentRecord {
    pub outbox_id: Uuid,
    pub lease: Uuid,
    pub slot_id: i64,
    pub robot_id: i32,
    pub robot_name: String,
}

impl SentRecord {
    /// The record for `row`, sent by `robot`.
    pub fn of(robot: &ClaimedRobot, row: &Claimed) -> SentRecord {
        SentRecord {
            outbox_id: row.id,
            lease: row.lease,
            slot_id: row.slot_id,
            robot_id: robot.id,
            robot_name: robot.name.clone(),
        }
    }
}

/// The learned limit as stored in `wecom_robot_state` (`learned_rate_limit`, `learned_at`),
/// for the rules; both or nothing.
pub(crate) fn learned(
    limit: Option<i32>,
    at: Option<DateTime<Utc>>,
) -> Option<crate::rules::rate_limit::Learned> {
    Some(crate::rules::rate_limit::Learned {
        limit: u32::try_from(limit?).ok()?,
        at: at?,
    })
}

/// How one send ended, as the store records it. Delays are durations from the database's
/// clock (the one clock every replica shares), never instants from the worker's.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// WeCom answered errcode 0: `sent`, one log row, robot counters updated.
    Sent,
    /// Given up: `failed`, one log row.
    Failed { errcode: Option<i64>, error: String },
    /// Try again after `retry_in`; the attempt is used.
    RetryAfter {
        retry_in: std::time::Duration,
        errcode: Option<i64>,
        error: String,
    },
    /// 45009: back to `pending` without using an attempt; the robot pauses for `pause`, and
    /// learns WeCom's real limit from the sends in its last window
    /// ([`crate::rules::rate_limit::RateLimit::learn_from_45009`]).
    RateLimited {
        pause: std::time::Duration,
        error: String,
        /// Slots of the batch's rows that were reserved but will not be sent (they go back):
        /// not counted as sends WeCom accepted.
        unsent_slots: Vec<i64>,
    },
    /// The robot is unusable: disable it with `reason`; the row goes back to `pending` for the
    /// rest of its pool without using an attempt.
    RobotGone {
        errcode: Option<i64>,
        reason: String,
    },
}
