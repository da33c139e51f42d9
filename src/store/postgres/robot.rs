//! A robot's settings read from a row: the one decoding every PostgreSQL query that reads a
//! robot (the claim, `status`) shares. Queries select the columns under these names.

use crate::rules::decide::RobotSettings;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use std::time::Duration;

impl<'r> FromRow<'r, PgRow> for RobotSettings {
    /// Columns `rate_limit`, `rate_window_secs` (float seconds), `send_window_start`,
    /// `send_window_end`, `send_days`, `timezone`.
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        let window_secs: f64 = row.try_get("rate_window_secs")?;
        Ok(RobotSettings {
            rate_limit: row.try_get("rate_limit")?,
            rate_window: Duration::try_from_secs_f64(window_secs).unwrap_or_default(),
            send_window_start: row.try_get("send_window_start")?,
            send_window_end: row.try_get("send_window_end")?,
            send_days: row.try_get("send_days")?,
            timezone: row.try_get("timezone")?,
        })
    }
}
