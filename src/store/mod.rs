//! Everything the worker and the CLI ask of the database, one module per backend.
//! The SQL lives in the backend's module and in `migrations/<backend>/`, nowhere else;
//! the rules it needs to apply mid-transaction are handed in as plain functions.

pub mod postgres;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::PgStore as Store;

/// The robot a batch was claimed for: enough to send and to report, never logged whole.
#[derive(Debug, Clone)]
pub struct ClaimedRobot {
    pub id: i32,
    pub name: String,
    pub destination: String,
    /// Contains the key: never log it, never show it.
    pub url: String,
    pub rate_window: std::time::Duration,
    pub consecutive_45009: i32,
}

/// One outbox row claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
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
    /// The robot was disabled, for this reason.
    Disabled(String),
    /// These rows are ours until the lease ends, in send order.
    Claimed(ClaimedRobot, Vec<Claimed>),
}

/// A message WeCom accepted, waiting to be recorded (possibly with others in one commit).
#[derive(Debug, Clone)]
pub struct SentRecord {
    pub outbox_id: Uuid,
    pub slot_id: i64,
    pub robot_id: i32,
    pub robot_name: String,
}

impl SentRecord {
    /// The record for `row`, sent by `robot`.
    pub fn of(robot: &ClaimedRobot, row: &Claimed) -> SentRecord {
        SentRecord {
            outbox_id: row.id,
            slot_id: row.slot_id,
            robot_id: robot.id,
            robot_name: robot.name.clone(),
        }
    }
}

/// How one send ended, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// WeCom answered errcode 0: `sent`, one log row, robot counters updated.
    Sent,
    /// Given up: `failed`, one log row.
    Failed { errcode: Option<i64>, error: String },
    /// Try again at `not_before`; the attempt is used.
    RetryAt {
        not_before: DateTime<Utc>,
        errcode: Option<i64>,
        error: String,
    },
    /// 45009: back to `pending` without using an attempt; the robot pauses until `pause_until`.
    RateLimited {
        pause_until: DateTime<Utc>,
        error: String,
    },
    /// The robot is unusable: disable it with `reason`; the row goes back to `pending` for the
    /// rest of its pool without using an attempt.
    RobotGone {
        errcode: Option<i64>,
        reason: String,
    },
}
