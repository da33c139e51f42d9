//! The send-window rule (quiet hours): a robot sends only inside its local window, on its
//! allowed ISO weekdays, in its own time zone.
//!
//! A window with `start > end` wraps midnight and belongs to the day it *starts* on: with
//! 22:00–02:00 on Fridays only, Saturday 01:00 is open and Friday 01:00 is not.
//! Local times that do not exist (a DST gap) move to the first instant that does; ambiguous
//! ones (a DST overlap) take the earlier instant.
//!
//! A robot's stored configuration becomes a window only through [`SendWindow::from_config`],
//! which refuses what can never mean what it says (the same rows the schema refuses when they
//! are written; older rows may still hold them): a window that starts when it ends, an empty
//! or out-of-range `send_days`, a zone that is not an IANA name.

use crate::rules::ConfigError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A robot's quiet-hours configuration (`send_window_start/end`, `send_days`, `timezone`).
#[derive(Debug, Clone, PartialEq)]
pub struct SendWindow {
    /// Both set, or both `None` (any time of day).
    pub hours: Option<(NaiveTime, NaiveTime)>,
    /// ISO weekdays, 1 = Monday … 7 = Sunday; `None` = every day.
    pub days: Option<Vec<u32>>,
    pub tz: Tz,
}

/// How far ahead `next_open` looks: a week covers every weekday set that is not empty.
const HORIZON_DAYS: i64 = 8;

impl SendWindow {
    /// The window a robot's columns describe (`send_window_start/end`, `send_days`, `timezone`,
    /// with `default_zone` = `wecom_settings.default_timezone` for a robot without its own
    /// zone), or why they cannot describe one, in words a DBA can act on.
    pub fn from_config(
        start: Option<NaiveTime>,
        end: Option<NaiveTime>,
        days: Option<&[i32]>,
        zone: Option<&str>,
        default_zone: &str,
    ) -> Result<SendWindow, ConfigError> {
        Ok(SendWindow {
            hours: hours_of(start, end)?,
            days: days.map(iso_weekdays).transpose()?,
            tz: zone_of(zone, default_zone)?,
        })
    }

    /// A window that is always open, for robots without quiet hours.
    pub fn always(tz: Tz) -> Self {
        SendWindow {
            hours: None,
            days: None,
            tz,
        }
    }

    /// Whether a message may be sent at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.intervals_around(now)
            .any(|(from, to)| from <= now && now < to)
    }

    /// `now` when open; otherwise when the window next opens; `None` if it never does
    /// (an empty `send_days`).
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(now) {
            return Some(now);
        }
        self.intervals_around(now)
            .map(|(from, _)| from)
            .filter(|from| *from > now)
            .min()
    }

    /// When the window that is open at `now` closes (`None` when closed, or never closing).
    pub fn closes_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.intervals_around(now)
            .filter(|(from, to)| *from <= now && now < *to)
            .map(|(_, to)| to)
            .max()
    }

    fn day_allowed(&self, day: NaiveDate) -> bool {
        match &self.days {
            None => true,
            Some(days) => days.contains(&day.weekday().number_from_monday()),
        }
    }

    /// The open intervals (UTC) of the local days from yesterday to a week ahead.
    fn intervals_around(
        &self,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let today = now.with_timezone(&self.tz).date_naive();
        (-1..=HORIZON_DAYS)
            .map(move |offset| today + Duration::days(offset))
            .filter(|day| self.day_allowed(*day))
            .map(|day| self.interval_of(day))
    }

    fn interval_of(&self, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let (start, end) = self.hours.unwrap_or((NaiveTime::MIN, NaiveTime::MIN));
        let end_day = if end <= start {
            day + Duration::days(1)
        } else {
            day
        };
        (
            to_utc(self.tz, day.and_time(start)),
            to_utc(self.tz, end_day.and_time(end)),
        )
    }
}

/// Both ends or neither; a window that starts when it ends is refused, not read as "all day".
fn hours_of(
    start: Option<NaiveTime>,
    end: Option<NaiveTime>,
) -> Result<Option<(NaiveTime, NaiveTime)>, String> {
    let hm = |t: NaiveTime| t.format("%H:%M").to_string();
    match (start, end) {
        (None, None) => Ok(None),
        (Some(start), Some(end)) if start == end => Err(format!(
            "send window {}-{} starts and ends at the same time: set send_window_start and \
             send_window_end to NULL to send at any time, or to the hours it may send, e.g. 09:00 and 20:00",
            hm(start),
            hm(end)
        )),
        (Some(start), Some(end)) => Ok(Some((start, end))),
        (Some(t), None) | (None, Some(t)) => Err(format!(
            "only one end of the send window is set ({}): set both send_window_start and \
             send_window_end, or neither",
            hm(t)
        )),
    }
}

/// ISO weekdays (1 = Monday … 7 = Sunday), at least one.
fn iso_weekdays(days: &[i32]) -> Result<Vec<u32>, String> {
    if days.is_empty() {
        return Err(
            "send_days is empty ({}), so the robot would never send: set it to NULL for \
                    every day, or list ISO weekdays such as {1,2,3,4,5}"
                .into(),
        );
    }
    days.iter()
        .map(|&d| match u32::try_from(d) {
            Ok(day @ 1..=7) => Ok(day),
            _ => Err(format!(
                "send_days {days:?} has {d}, which is not an ISO weekday (1 = Monday … 7 = Sunday)"
            )),
        })
        .collect()
}

/// The robot's own zone, else the deployment's; the error says which one is wrong.
fn zone_of(zone: Option<&str>, default_zone: &str) -> Result<Tz, String> {
    match zone {
        Some(zone) => zone.parse().map_err(|_| {
            format!("timezone {zone:?} is not an IANA time zone name (such as Asia/Hong_Kong)")
        }),
        None => default_zone.parse().map_err(|_| {
            format!(
                "wecom_settings.default_timezone {default_zone:?} is not an IANA time zone name \
                 (such as Asia/Hong_Kong): fix the setting, or give the robot a timezone of its own"
            )
        }),
    }
}

/// The instant a local wall-clock time names in `tz`.
fn to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    loop {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        // In a DST gap: the first minute after it.
        probe += Duration::minutes(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hk(s: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        to_utc(chrono_tz::Asia::Hong_Kong, naive)
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    fn window(start: &str, end: &str, days: Option<Vec<u32>>) -> SendWindow {
        SendWindow {
            hours: Some((hm(start), hm(end))),
            days,
            tz: chrono_tz::Asia::Hong_Kong,
        }
    }

    #[test]
    fn no_hours_and_no_days_is_always_open() {
        let w = SendWindow::always(chrono_tz::UTC);
        assert!(w.is_open(hk("2026-11-27 03:00")));
        assert_eq!(
            w.next_open(hk("2026-11-27 03:00")),
            Some(hk("2026-11-27 03:00"))
        );
    }

    #[test]
    fn daytime_window_is_closed_at_3am_and_opens_at_9() {
        let w = window("09:00", "20:00", None);
        assert!(!w.is_open(hk("2026-11-27 03:00")));
        assert_eq!(
            w.next_open(hk("2026-11-27 03:00")),
            Some(hk("2026-11-27 09:00"))
        );
        assert!(w.is_open(hk("2026-11-27 09:00")));
        assert!(w.is_open(hk("2026-11-27 19:59")));
        assert!(!w.is_open(hk("2026-11-27 20:00")));
        assert_eq!(
            w.next_open(hk("2026-11-27 21:00")),
            Some(hk("2026-11-28 09:00"))
        );
        assert_eq!(
            w.closes_at(hk("2026-11-27 10:00")),
            Some(hk("2026-11-27 20:00"))
        );
    }

    #[test]
    fn window_in_the_robots_zone_not_utc() {
        // 09:00 in Hong Kong is 01:00 UTC.
        let w = window("09:00", "20:00", None);
        let utc_0100 = DateTime::parse_from_rfc3339("2026-11-27T01:00:00Z")
            .unwrap()
            .to_utc();
        assert!(w.is_open(utc_0100));
        assert!(!w.is_open(utc_0100 - Duration::seconds(1)));
    }

    #[test]
    fn wrapping_window_belongs_to_the_day_it_starts() {
        // 2026-11-27 is a Friday (ISO 5).
        let w = window("22:00", "02:00", Some(vec![5]));
        assert!(w.is_open(hk("2026-11-27 23:00")));
        assert!(w.is_open(hk("2026-11-28 01:30"))); // Saturday, but Friday's window
        assert!(!w.is_open(hk("2026-11-28 02:00")));
        assert!(!w.is_open(hk("2026-11-27 01:30"))); // Friday early: Thursday's window, not allowed
        assert_eq!(
            w.next_open(hk("2026-11-28 03:00")),
            Some(hk("2026-12-04 22:00"))
        );
    }

    #[test]
    fn weekdays_only_skip_the_weekend() {
        let w = window("09:00", "18:00", Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(
            w.next_open(hk("2026-11-27 18:30")),
            Some(hk("2026-11-30 09:00"))
        );
        assert!(!w.is_open(hk("2026-11-28 10:00")));
    }

    #[test]
    fn days_without_hours_open_whole_days() {
        let w = SendWindow {
            hours: None,
            days: Some(vec![6]),
            tz: chrono_tz::Asia::Hong_Kong,
        };
        assert!(!w.is_open(hk("2026-11-27 23:59")));
        assert_eq!(
            w.next_open(hk("2026-11-27 23:59")),
            Some(hk("2026-11-28 00:00"))
        );
        assert!(w.is_open(hk("2026-11-28 23:59")));
    }

    #[test]
    fn empty_days_never_open() {
        let w = window("09:00", "18:00", Some(vec![]));
        assert!(!w.is_open(hk("2026-11-27 10:00")));
        assert_eq!(w.next_open(hk("2026-11-27 10:00")), None);
    }

    #[test]
    fn equal_start_and_end_is_the_whole_day() {
        let w = window("00:00", "00:00", None);
        assert!(w.is_open(hk("2026-11-27 03:00")));
    }

    fn from_config(
        hours: Option<(&str, &str)>,
        days: Option<&[i32]>,
        zone: Option<&str>,
        default_zone: &str,
    ) -> Result<SendWindow, ConfigError> {
        SendWindow::from_config(
            hours.map(|(s, _)| hm(s)),
            hours.map(|(_, e)| hm(e)),
            days,
            zone,
            default_zone,
        )
    }

    #[test]
    fn a_stored_window_that_starts_when_it_ends_is_refused_not_read_as_all_day() {
        let err = from_config(Some(("09:00", "09:00")), None, None, "UTC").unwrap_err();
        assert!(
            err.contains("send window 09:00-09:00 starts and ends at the same time"),
            "{err}"
        );
        assert!(err.contains("NULL"), "{err}");
    }

    #[test]
    fn stored_send_days_that_can_never_send_are_refused_with_the_reason() {
        let err = from_config(None, Some(&[]), None, "UTC").unwrap_err();
        assert!(err.contains("send_days is empty"), "{err}");
        for bad in [0, 8, -1] {
            let err = from_config(None, Some(&[1, bad]), None, "UTC").unwrap_err();
            assert!(
                err.contains(&format!("has {bad}, which is not an ISO weekday")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_bad_zone_says_whether_it_is_the_robots_or_the_default() {
        let own = from_config(None, None, Some("Mars/Olympus"), "UTC").unwrap_err();
        assert!(own.starts_with("timezone \"Mars/Olympus\""), "{own}");
        let default = from_config(None, None, None, "Mars/Olympus").unwrap_err();
        assert!(
            default.contains("wecom_settings.default_timezone \"Mars/Olympus\""),
            "{default}"
        );
        // A robot with its own good zone does not depend on the default.
        assert!(from_config(None, None, Some("Asia/Macau"), "Mars/Olympus").is_ok());
    }

    #[test]
    fn only_one_end_of_a_window_is_refused() {
        let err = SendWindow::from_config(Some(hm("09:00")), None, None, None, "UTC").unwrap_err();
        assert!(
            err.contains("only one end of the send window is set"),
            "{err}"
        );
    }

    #[test]
    fn a_sound_configuration_becomes_its_window() {
        let w = from_config(Some(("22:00", "02:00")), Some(&[5]), None, "Asia/Hong_Kong").unwrap();
        assert_eq!(w, window("22:00", "02:00", Some(vec![5])));
    }

    #[test]
    fn dst_gap_start_moves_to_first_real_minute() {
        // New York springs forward at 02:00 on 2026-03-08: 02:30 does not exist.
        let w = SendWindow {
            hours: Some((hm("02:30"), hm("05:00"))),
            days: None,
            tz: chrono_tz::America::New_York,
        };
        let before = DateTime::parse_from_rfc3339("2026-03-08T06:59:00Z")
            .unwrap()
            .to_utc();
        let opens = w.next_open(before).unwrap();
        assert_eq!(
            opens,
            DateTime::parse_from_rfc3339("2026-03-08T07:00:00Z")
                .unwrap()
                .to_utc()
        );
    }
}
