//! The once-a-day rule, as plain functions over plain values: is a local day's run due at
//! `now` (in zone Z, at local time T, given what the run record says), and when is the next
//! one. No database and no clock of its own, so it is tested with fixed instants.
//!
//! The same rule is written in SQL (`wecom_daily_reminders_due`) for runners that are only
//! SQL (pg_cron); the worker uses this one to decide when to ask, and the SQL one decides
//! under the lock. Keep them in step (tests/scheduler.rs checks they agree).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// After a failed run, the day's run is tried again this much later (a broken view must not
/// be hammered every few seconds, but a transient fault must not lose the day).
pub const RETRY_AFTER_FAILURE: Duration = Duration::minutes(5);

/// When the daily run happens: local time `at` in `zone`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// `wecom_settings.default_timezone`.
    pub zone: Tz,
    /// `wecom_settings.reminder_run_time`, local.
    pub at: NaiveTime,
}

/// What the run record says about past runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct History {
    /// The latest local day whose run is done.
    pub last_done: Option<NaiveDate>,
    /// The latest failed day and when it failed (it is retried after `RETRY_AFTER_FAILURE`).
    pub last_failure: Option<(NaiveDate, DateTime<Utc>)>,
}

/// The local day whose run is due at `now`, if any: today's run time has passed and today
/// is neither done nor failed too recently. A day missed entirely (every replica down until
/// after midnight) is not run late: its reminders would already have expired.
pub fn due_date(now: DateTime<Utc>, schedule: &Schedule, history: &History) -> Option<NaiveDate> {
    let local = now.with_timezone(&schedule.zone).naive_local();
    let today = local.date();
    if local.time() < schedule.at || history.last_done.is_some_and(|d| d >= today) {
        return None;
    }
    match history.last_failure {
        Some((day, at)) if day == today && now < at + RETRY_AFTER_FAILURE => None,
        _ => Some(today),
    }
}

/// When the next run is due: `now` if one is due, else the retry of today's failure, else
/// the run time of the next local day that is not done.
pub fn next_run(now: DateTime<Utc>, schedule: &Schedule, history: &History) -> DateTime<Utc> {
    if due_date(now, schedule, history).is_some() {
        return now;
    }
    let local = now.with_timezone(&schedule.zone).naive_local();
    let today = local.date();
    let done_today = history.last_done.is_some_and(|d| d >= today);
    if let Some((day, at)) = history.last_failure {
        if day == today && !done_today && local.time() >= schedule.at {
            return at + RETRY_AFTER_FAILURE;
        }
    }
    let day = if local.time() < schedule.at && !done_today {
        today
    } else {
        today.succ_opt().unwrap_or(today)
    };
    local_instant(schedule.zone, day.and_time(schedule.at))
}

/// The instant a local wall-clock time names in `zone`: the earlier of two in a DST fold,
/// the first minute after a DST gap.
fn local_instant(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    for _ in 0..(24 * 60) {
        if let Some(t) = zone.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += Duration::minutes(1);
    }
    Utc.from_utc_datetime(&local)
}

/// A run time as a DBA writes it in `reminder_run_time` (`09:00`, `9:30`, `21:15:00`);
/// `None` for `off` (the worker does not schedule the run) or anything unreadable.
pub fn parse_run_time(text: &str) -> Option<NaiveTime> {
    let text = text.trim();
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Hong_Kong};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn hk_at(h: u32, m: u32) -> Schedule {
        Schedule {
            zone: Hong_Kong,
            at: NaiveTime::from_hms_opt(h, m, 0).unwrap(),
        }
    }

    #[test]
    fn not_due_before_the_local_run_time() {
        // 08:59 in Hong Kong is 00:59 UTC.
        let now = utc("2026-11-27T00:59:00Z");
        assert_eq!(due_date(now, &hk_at(9, 0), &History::default()), None);
        assert_eq!(
            next_run(now, &hk_at(9, 0), &History::default()),
            utc("2026-11-27T01:00:00Z")
        );
    }

    #[test]
    fn due_at_the_local_run_time_and_the_local_day_counts_not_the_utc_one() {
        // 09:00 on the 28th in Hong Kong is still the 27th in UTC.
        let now = utc("2026-11-28T01:00:00Z");
        let late = utc("2026-11-27T17:30:00Z"); // 01:30 on the 28th in Hong Kong
        assert_eq!(
            due_date(now, &hk_at(9, 0), &History::default()),
            Some(day("2026-11-28"))
        );
        assert_eq!(
            due_date(late, &hk_at(1, 0), &History::default()),
            Some(day("2026-11-28"))
        );
    }

    #[test]
    fn catches_up_later_the_same_day_when_nobody_ran_it() {
        let history = History {
            last_done: Some(day("2026-11-26")),
            last_failure: None,
        };
        let afternoon = utc("2026-11-27T07:00:00Z"); // 15:00 in Hong Kong
        assert_eq!(
            due_date(afternoon, &hk_at(9, 0), &history),
            Some(day("2026-11-27"))
        );
    }

    #[test]
    fn done_today_means_tomorrow() {
        let history = History {
            last_done: Some(day("2026-11-27")),
            last_failure: None,
        };
        let now = utc("2026-11-27T07:00:00Z");
        assert_eq!(due_date(now, &hk_at(9, 0), &history), None);
        assert_eq!(
            next_run(now, &hk_at(9, 0), &history),
            utc("2026-11-28T01:00:00Z")
        );
    }

    #[test]
    fn a_failure_is_retried_after_a_pause() {
        let failed_at = utc("2026-11-27T01:00:05Z");
        let history = History {
            last_done: Some(day("2026-11-26")),
            last_failure: Some((day("2026-11-27"), failed_at)),
        };
        let soon = failed_at + Duration::minutes(1);
        let later = failed_at + RETRY_AFTER_FAILURE;
        assert_eq!(due_date(soon, &hk_at(9, 0), &history), None);
        assert_eq!(next_run(soon, &hk_at(9, 0), &history), later);
        assert_eq!(
            due_date(later, &hk_at(9, 0), &history),
            Some(day("2026-11-27"))
        );
    }

    #[test]
    fn yesterdays_failure_does_not_hold_today_back() {
        let history = History {
            last_done: None,
            last_failure: Some((day("2026-11-26"), utc("2026-11-26T23:59:00Z"))),
        };
        let now = utc("2026-11-27T01:00:00Z");
        assert_eq!(
            due_date(now, &hk_at(9, 0), &history),
            Some(day("2026-11-27"))
        );
    }

    #[test]
    fn a_run_time_in_a_dst_gap_runs_when_the_clock_has_passed_it() {
        // New York, 2026-03-08: 02:00 jumps to 03:00; a 02:30 run happens at 03:00 local.
        let schedule = Schedule {
            zone: New_York,
            at: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
        };
        let before = utc("2026-03-08T06:59:00Z"); // 01:59 EST
        assert_eq!(
            next_run(before, &schedule, &History::default()),
            utc("2026-03-08T07:00:00Z")
        );
        let after = utc("2026-03-08T07:00:00Z"); // 03:00 EDT
        assert_eq!(
            due_date(after, &schedule, &History::default()),
            Some(day("2026-03-08"))
        );
    }

    #[test]
    fn run_times_as_dbas_write_them() {
        assert_eq!(parse_run_time("09:00"), NaiveTime::from_hms_opt(9, 0, 0));
        assert_eq!(parse_run_time(" 9:30 "), NaiveTime::from_hms_opt(9, 30, 0));
        assert_eq!(
            parse_run_time("21:15:00"),
            NaiveTime::from_hms_opt(21, 15, 0)
        );
        assert_eq!(parse_run_time("off"), None);
    }
}
