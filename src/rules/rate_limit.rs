//! The rate-limit rule: at most `limit` sends in any sliding `window`, counted from the
//! moments WeCom could have seen them.
//!
//! WeCom counts requests as they *arrive*; the store records a send when it is reserved and
//! moves the record to when WeCom answered, which is never earlier than the arrival. A small
//! guard on top of the window absorbs the rest (clock granularity, the stand-in's strict `<`),
//! so a server that counts arrivals exactly never has to answer 45009.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// A robot's limit, as configured in `wecom_webhooks.rate_limit` / `rate_window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

/// What the limit allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Sends that may be reserved now.
    pub available: u32,
    /// When one more send frees up, if none is available now.
    pub next_free_at: Option<DateTime<Utc>>,
}

impl RateLimit {
    /// The margin added to the window: 0.2 % of it, at least 10 ms. Sends are counted from
    /// when WeCom answered, so the guard only covers clock granularity and rounding.
    pub fn guard(&self) -> Duration {
        (self.window / 500).max(Duration::from_millis(10))
    }

    /// The window as the worker enforces it: WeCom's window plus the guard.
    pub fn effective_window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window + self.guard()).unwrap_or(chrono::Duration::MAX)
    }

    /// How many sends may be reserved at `now`, given the times of earlier sends (any order).
    pub fn budget(&self, now: DateTime<Utc>, sends: &[DateTime<Utc>]) -> Budget {
        let window = self.effective_window();
        let mut recent: Vec<DateTime<Utc>> = sends
            .iter()
            .copied()
            .filter(|t| *t > now - window)
            .collect();
        recent.sort_unstable();
        let used = recent.len() as u32;
        if used < self.limit {
            return Budget {
                available: self.limit - used,
                next_free_at: None,
            };
        }
        // The oldest sends leave the window first; one more must leave for a slot to free.
        let freeing = recent[(used - self.limit) as usize];
        Budget {
            available: 0,
            next_free_at: Some(freeing + window),
        }
    }

    /// When the robot may send again after `taken` more sends are reserved at `now`.
    pub fn next_free_after(
        &self,
        now: DateTime<Utc>,
        sends: &[DateTime<Utc>],
        taken: u32,
    ) -> Option<DateTime<Utc>> {
        let mut all = sends.to_vec();
        all.extend(std::iter::repeat_n(now, taken as usize));
        self.budget(now, &all).next_free_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
    }

    fn limit(n: u32, secs: u64) -> RateLimit {
        RateLimit {
            limit: n,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn empty_history_gives_the_whole_limit() {
        let b = limit(20, 60).budget(t(0), &[]);
        assert_eq!(
            b,
            Budget {
                available: 20,
                next_free_at: None
            }
        );
    }

    #[test]
    fn sends_inside_the_window_use_budget() {
        let sends = [t(0), t(1_000), t(2_000)];
        assert_eq!(limit(5, 60).budget(t(3_000), &sends).available, 2);
    }

    #[test]
    fn a_full_window_frees_when_its_oldest_send_leaves_plus_guard() {
        let sends = [t(2_000), t(0), t(1_000)];
        let b = limit(3, 60).budget(t(5_000), &sends);
        assert_eq!(b.available, 0);
        assert_eq!(b.next_free_at, Some(t(60_000 + 120)));
    }

    #[test]
    fn sends_older_than_window_plus_guard_no_longer_count() {
        let sends = [t(0), t(1_000)];
        assert_eq!(limit(2, 2).budget(t(2_000 + 9), &sends).available, 0);
        assert_eq!(limit(2, 2).budget(t(2_000 + 10), &sends).available, 1);
    }

    #[test]
    fn guard_is_at_least_10ms() {
        assert_eq!(limit(5, 2).guard(), Duration::from_millis(10));
        assert_eq!(limit(20, 60).guard(), Duration::from_millis(120));
    }

    #[test]
    fn next_free_after_taking_the_rest_of_the_budget() {
        let sends = [t(0)];
        let l = limit(3, 10);
        assert_eq!(l.next_free_after(t(500), &sends, 1), None);
        assert_eq!(l.next_free_after(t(500), &sends, 2), Some(t(10_020)));
    }

    #[test]
    fn more_sends_than_the_limit_wait_for_enough_to_leave() {
        // A DBA lowered the limit from 5 to 2 while 4 sends were in the window.
        let sends = [t(0), t(100), t(200), t(300)];
        let b = limit(2, 10).budget(t(400), &sends);
        assert_eq!(b.next_free_at, Some(t(200 + 10_020)));
    }
}
