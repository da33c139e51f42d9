//! The zones MySQL is told about: every IANA zone chrono-tz knows (the worker's own zone data)
//! into `wecom_timezones`, and each zone's UTC offsets from 2000 to 2100 into
//! `wecom_timezone_offsets`, which the database's reminder procedures read instead of the
//! server's time zone tables (empty on Cloud SQL) and instead of CONVERT_TZ.

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone};
use chrono_tz::{Tz, TZ_VARIANTS};
use sqlx::{MySqlPool, QueryBuilder};
use std::sync::OnceLock;

/// The years covered: reminders look days ahead, robots' windows use "now".
const FIRST: i64 = 946_684_800; // 2000-01-01T00:00:00Z
const LAST: i64 = 4_133_980_800; // 2101-01-01T00:00:00Z

/// Sampling step: a change between two samples is then found to the second. Zones do not
/// change offset twice within a week (the closest pairs, around Ramadan, are weeks apart).
const STEP: i64 = 7 * 86_400;

/// Rows per INSERT: a few round trips for the whole set, well under MySQL's 65,535 binds.
const BATCH: usize = 2_000;

/// One offset: zone, UTC instant it starts, seconds east of UTC.
type OffsetRow = (&'static str, NaiveDateTime, i32);

fn offset(tz: Tz, at: i64) -> i32 {
    let utc = DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .naive_utc();
    tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
}

/// The first second in `(from, to]` at which `tz` has the offset it has at `to`.
fn change_between(tz: Tz, mut from: i64, mut to: i64) -> i64 {
    let target = offset(tz, to);
    while to - from > 1 {
        let mid = from + (to - from) / 2;
        if offset(tz, mid) == target {
            to = mid;
        } else {
            from = mid;
        }
    }
    to
}

fn offsets_of(tz: Tz, rows: &mut Vec<OffsetRow>) {
    let at = |s: i64| {
        DateTime::from_timestamp(s, 0)
            .unwrap_or_default()
            .naive_utc()
    };
    let mut current = offset(tz, FIRST);
    rows.push((tz.name(), at(FIRST), current));
    let mut t = FIRST;
    while t < LAST {
        let next = (t + STEP).min(LAST);
        let o = offset(tz, next);
        if o != current {
            let from = change_between(tz, t, next);
            rows.push((tz.name(), at(from), o));
            current = o;
        }
        t = next;
    }
}

/// Every zone's offsets, computed once per process.
fn all_offsets() -> &'static [OffsetRow] {
    static ROWS: OnceLock<Vec<OffsetRow>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let mut rows = Vec::with_capacity(40_000);
        for tz in TZ_VARIANTS {
            offsets_of(tz, &mut rows);
        }
        rows
    })
}

/// Fill both tables, unless a previous `migrate` already did (then nothing is written).
pub(super) async fn fill(pool: &MySqlPool) -> sqlx::Result<()> {
    let rows = tokio::task::spawn_blocking(all_offsets)
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("computing zone offsets failed: {e}")))?;
    let zones: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM wecom_timezones")
        .fetch_one(pool)
        .await?;
    let offsets: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM wecom_timezone_offsets WHERE valid_from >= '2000-01-01'",
    )
    .fetch_one(pool)
    .await?;
    if zones >= TZ_VARIANTS.len() as i64 && offsets >= rows.len() as i64 {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for chunk in TZ_VARIANTS.chunks(BATCH) {
        QueryBuilder::new("INSERT IGNORE INTO wecom_timezones (name) ")
            .push_values(chunk, |mut b, tz| {
                b.push_bind(tz.name());
            })
            .build()
            .execute(&mut *tx)
            .await?;
    }
    for chunk in rows.chunks(BATCH) {
        QueryBuilder::new(
            "INSERT IGNORE INTO wecom_timezone_offsets (name, valid_from, utc_offset) ",
        )
        .push_values(chunk, |mut b, (name, from, offset)| {
            b.push_bind(*name).push_bind(*from).push_bind(*offset);
        })
        .build()
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_york_changes_offset_at_2_am_local_on_the_second_sunday_of_march_2026() {
        let rows: Vec<_> = all_offsets()
            .iter()
            .filter(|(name, from, _)| {
                *name == "America/New_York" && from.format("%Y").to_string() == "2026"
            })
            .map(|(_, from, o)| (from.to_string(), *o))
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-03-08 07:00:00".to_string(), -4 * 3600),
                ("2026-11-01 06:00:00".to_string(), -5 * 3600)
            ]
        );
    }

    #[test]
    fn hong_kong_keeps_one_offset_since_2000() {
        let hk: Vec<_> = all_offsets()
            .iter()
            .filter(|(name, _, _)| *name == "Asia/Hong_Kong")
            .collect();
        assert_eq!(hk.len(), 1);
        assert_eq!(hk[0].2, 8 * 3600);
    }
}
