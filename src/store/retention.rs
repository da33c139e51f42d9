//! What `prune` and `retry` ask of the store, whichever backend: how much a prune removed,
//! which failed rows a retry means, and those rows as the operator sees them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Statuses a row never leaves by itself: the only ones `prune` deletes.
pub const FINISHED: [&str; 4] = ["sent", "failed", "cancelled", "expired"];

/// What a prune batch deleted (or a dry run would delete): outbox rows and their log rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Finished `wecom_outbox` rows.
    pub messages: u64,
    /// Their `wecom_message_log` rows (one per sent or failed row).
    pub log_rows: u64,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Pruned) {
        self.messages += other.messages;
        self.log_rows += other.log_rows;
    }
}

/// Which `failed` rows `retry` means: every given selector must match (an empty one matches
/// all), so a retry is never wider than what the operator wrote.
#[derive(Debug, Clone, Default)]
pub struct FailedFilter {
    /// These rows only (empty: any).
    pub ids: Vec<Uuid>,
    /// Rows of this destination only.
    pub destination: Option<String>,
    /// Rows that failed at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Rows that failed before this instant.
    pub before: Option<DateTime<Utc>>,
}

/// A failed row as `retry` lists it. `last_error` is as stored (keys are never stored in it;
/// the CLI redacts it again before printing).
#[derive(Debug, Clone, Serialize)]
pub struct FailedRow {
    pub id: Uuid,
    pub destination: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// When it failed (`finished_at`); for rows that failed before migration 0010 (MySQL
    /// 0011), the latest time the row recorded.
    pub failed_at: Option<DateTime<Utc>>,
}
