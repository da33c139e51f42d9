//! A robot's settings read from a MySQL row: the one decoding every MySQL query that reads a
//! robot (the claim, `status`) shares. Queries select the columns under these names, with
//! `send_days` as text (`CAST(w.send_days AS CHAR) AS send_days`).

use crate::rules::decide::RobotSettings;
use sqlx::mysql::MySqlRow;
use sqlx::{FromRow, Row};
use std::time::Duration;

impl<'r> FromRow<'r, MySqlRow> for RobotSettings {
    /// Columns `rate_limit`, `rate_window` (INT seconds), `send_window_start`,
    /// `send_window_end` (TIME), `send_days` (a JSON array of ISO weekdays, as text),
    /// `timezone`. A `send_days` that is not a list of integers is an error naming it.
    fn from_row(row: &'r MySqlRow) -> sqlx::Result<Self> {
        let window_secs: i64 = row.try_get("rate_window")?;
        Ok(RobotSettings {
            rate_limit: row.try_get("rate_limit")?,
            rate_window: Duration::from_secs(window_secs.max(0) as u64),
            send_window_start: row.try_get("send_window_start")?,
            send_window_end: row.try_get("send_window_end")?,
            send_days: send_days(row.try_get("send_days")?)?,
            timezone: row.try_get("timezone")?,
        })
    }
}

/// `send_days` as stored: NULL is every day; otherwise a JSON array of integers.
fn send_days(text: Option<String>) -> sqlx::Result<Option<Vec<i32>>> {
    let Some(text) = text else { return Ok(None) };
    serde_json::from_str::<Vec<i32>>(&text)
        .map(Some)
        .map_err(|e| sqlx::Error::ColumnDecode {
            index: "send_days".into(),
            source: format!(
                "send_days {text} is not a JSON list of ISO weekdays such as [1,2,3,4,5] ({e})"
            )
            .into(),
        })
}
