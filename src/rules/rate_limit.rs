//! The rate-limit rule: at most `limit` sends in any sliding `window`, counted from the
//! moments WeCom could have seen them.
//!
//! WeCom counts requests as they *arrive*; the store records a send when it is reserved and
//! moves the record to when WeCom answered, which is never earlier than the arrival. A small
//! guard on top of the window absorbs the rest (clock granularity, the stand-in's strict `<`),
//! so a server that counts arrivals exactly never has to answer 45009.
//!
//! ## When WeCom is stricter than configured: the learned limit
//!
//! WeCom's real limit is undocumented in shape and may change, so the configured limit can be
//! more than WeCom allows. Sending at the configured limit would then burst, get 45009, pause a
//! window and burst again. Instead the worker learns (AIMD-like):
//! - **Decrease at once.** A 45009 answered after `n` sends in the last window, with
//!   `1 ≤ n < limit`, means WeCom allows about `n`: the robot's learned limit becomes `n`
//!   ([`RateLimit::learn_from_45009`]). A 45009 after no accepted send (a block still running)
//!   or at the configured limit teaches nothing; the pause alone handles it.
//! - **Increase slowly.** The learned limit grows by one per [`PROBE_AFTER_WINDOWS`] windows
//!   since it was learned, back up to the configured limit, where it is forgotten
//!   ([`RateLimit::learned_limit`]). A limit WeCom relaxed, or a 45009 that was transient, is
//!   recovered; one that still holds costs one 45009 per probe, which learns it again.
//! - **In force:** the rule plans with `min(configured, learned)` ([`RateLimit::with_learned`]).
//!   The learned value and when it was learned are stored per robot in `wecom_robot_state`
//!   (`learned_rate_limit`, `learned_at`) and read by the claim in the same snapshot as the
//!   budget, so every replica holds to the same limit.
//! - **Any cause.** A 45009 caused by another sender sharing the robot's key looks the same:
//!   the worker learns the share it actually gets, and probes back up when the other stops.
//! - **Reset.** Changing the robot's `rate_limit` or `rate_window` forgets what was learned
//!   (a trigger clears it); `status` shows the configured and the learned limit.

use crate::rules::ConfigError;
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

/// What the worker learned of WeCom's real limit for one robot (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// Sends WeCom accepted in the window before its 45009.
    pub limit: u32,
    /// When it was learned (the 45009's time on the database's clock).
    pub at: DateTime<Utc>,
}

/// How many windows without a new 45009 raise the learned limit by one.
pub const PROBE_AFTER_WINDOWS: u32 = 10;

/// The longest `rate_window` the rules plan with; the schema refuses longer ones when they
/// are written (`wecom_rate_window_problem`).
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

impl RateLimit {
    /// The limit a robot's `rate_limit` / `rate_window` describe, or why they cannot (a row
    /// stored before the schema refused it). A window that is not a positive length of time
    /// arrives here as zero.
    pub fn from_config(limit: i32, window: Duration) -> Result<RateLimit, ConfigError> {
        let limit = u32::try_from(limit)
            .ok()
            .filter(|l| *l >= 1)
            .ok_or_else(|| format!("rate_limit {limit} cannot send anything: give 1 or more"))?;
        if window.is_zero() {
            return Err(ConfigError::from(
                "rate_window is not a positive length of time: give one such as 60 seconds",
            ));
        }
        if window > MAX_WINDOW {
            return Err(ConfigError::from(format!(
                "rate_window of {} days is longer than 366 days: give a window of at most a year",
                window.as_secs() / 86_400
            )));
        }
        Ok(RateLimit { limit, window })
    }

    /// The learned limit still in force at `now`: `learned` grown by one per
    /// [`PROBE_AFTER_WINDOWS`] windows since it was learned; `None` when nothing was learned
    /// or it has grown back to the configured limit.
    pub fn learned_limit(&self, learned: Option<Learned>, now: DateTime<Utc>) -> Option<u32> {
        let learned = learned?;
        let probe = self
            .window
            .saturating_mul(PROBE_AFTER_WINDOWS)
            .as_nanos()
            .max(1);
        let since = (now - learned.at).to_std().unwrap_or(Duration::ZERO);
        let grown = u128::from(learned.limit.max(1)) + since.as_nanos() / probe;
        (grown < u128::from(self.limit)).then_some(grown as u32)
    }

    /// This limit lowered to what was learned and is still in force at `now`.
    pub fn with_learned(self, learned: Option<Learned>, now: DateTime<Utc>) -> RateLimit {
        match self.learned_limit(learned, now) {
            Some(limit) => RateLimit { limit, ..self },
            None => self,
        }
    }

    /// The limit to learn from a 45009 that WeCom answered after `accepted` sends in the last
    /// window, or `None` when it teaches nothing (no send accepted: a block still running;
    /// the configured limit reached: the worker's own overshoot, not WeCom's stricter limit).
    pub fn learn_from_45009(&self, accepted: u32) -> Option<u32> {
        (1..self.limit).contains(&accepted).then_some(accepted)
    }

    /// The margin added to the window: 0.2 % of it, at least 10 ms. Sends are counted from
    /// when WeCom answered, so the guard only covers clock granularity and rounding.
    pub fn guard(&self) -> Duration {
        (self.window / 500).max(Duration::from_millis(10))
    }

    /// The window as the worker enforces it: WeCom's window plus the guard.
    pub fn effective_window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window.saturating_add(self.guard()))
            .unwrap_or(chrono::Duration::MAX)
    }

    /// How many sends may be reserved at `now`, given the times of earlier sends (any order).
    pub fn budget(&self, now: DateTime<Utc>, sends: &[DateTime<Utc>]) -> Budget {
        self.budget_after(now, sends, 0)
    }

    /// When the robot may send again after `taken` more sends are reserved at `now`.
    /// `taken` may be anything up to `u32::MAX`: nothing is allocated per send.
    pub fn next_free_after(
        &self,
        now: DateTime<Utc>,
        sends: &[DateTime<Utc>],
        taken: u32,
    ) -> Option<DateTime<Utc>> {
        self.budget_after(now, sends, taken).next_free_at
    }

    /// The budget at `now` once `taken` sends at `now` are added to `sends`.
    fn budget_after(&self, now: DateTime<Utc>, sends: &[DateTime<Utc>], taken: u32) -> Budget {
        let window = self.effective_window();
        // A window reaching before the earliest representable instant counts every send.
        let cutoff = now.checked_sub_signed(window);
        let mut recent: Vec<DateTime<Utc>> = sends
            .iter()
            .copied()
            .filter(|t| cutoff.is_none_or(|c| *t > c))
            .collect();
        recent.sort_unstable();
        let used = recent.len() as u64 + u64::from(taken);
        let limit = u64::from(self.limit);
        if used < limit {
            return Budget {
                available: (limit - used) as u32,
                next_free_at: None,
            };
        }
        // The oldest sends leave the window first; one more must leave for a slot to free.
        let freeing = nth_in_order(&recent, now, taken, used - limit);
        Budget {
            available: 0,
            next_free_at: Some(
                freeing
                    .checked_add_signed(window)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            ),
        }
    }
}

/// The `k`-th (from 0) of the sorted `recent` sends merged with `taken` sends at `now`,
/// found without building the merged list.
fn nth_in_order(recent: &[DateTime<Utc>], now: DateTime<Utc>, taken: u32, k: u64) -> DateTime<Utc> {
    let before = recent.partition_point(|t| *t < now) as u64;
    if k < before {
        return recent[k as usize];
    }
    let after_now = before + u64::from(taken);
    if k < after_now {
        return now;
    }
    recent[(k - u64::from(taken)) as usize]
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
    fn taking_the_largest_limit_allocates_nothing_per_send() {
        // rate_limit = 2147483647 once asked for ~25 GB here (status aborted).
        let l = limit(i32::MAX as u32, 60);
        let sends = [t(0), t(1_000)];
        assert_eq!(
            l.next_free_after(t(2_000), &sends, i32::MAX as u32 - 3),
            None
        );
        assert_eq!(
            l.next_free_after(t(2_000), &sends, i32::MAX as u32 - 2),
            Some(t(60_120))
        );
        assert_eq!(
            l.next_free_after(t(2_000), &sends, i32::MAX as u32 - 1),
            Some(t(1_000 + 60_120))
        );
        assert_eq!(
            l.next_free_after(t(2_000), &sends, u32::MAX),
            Some(t(2_000 + 60_120))
        );
    }

    #[test]
    fn next_free_after_agrees_with_reserving_the_sends_one_by_one() {
        let l = limit(4, 10);
        let now = t(5_000);
        // Sends before, at and (clock skew) after now.
        let sends = [t(6_000), t(1_000), now, t(3_000)];
        for taken in 0..6u32 {
            let mut all = sends.to_vec();
            all.extend(std::iter::repeat_n(now, taken as usize));
            assert_eq!(
                l.next_free_after(now, &sends, taken),
                l.budget(now, &all).next_free_at,
                "taken {taken}"
            );
        }
    }

    #[test]
    fn a_window_longer_than_time_itself_neither_panics_nor_frees() {
        let l = RateLimit {
            limit: 1,
            window: Duration::from_secs(u64::MAX / 4),
        };
        let b = l.budget(t(0), &[t(-5_000)]);
        assert_eq!(b.available, 0);
        assert_eq!(b.next_free_at, Some(DateTime::<Utc>::MAX_UTC));
    }

    #[test]
    fn a_stored_limit_or_window_that_cannot_send_is_refused_with_the_reason() {
        let minute = Duration::from_secs(60);
        for bad in [0, -5] {
            let err = RateLimit::from_config(bad, minute).unwrap_err();
            assert!(
                err.contains(&format!("rate_limit {bad} cannot send")),
                "{err}"
            );
        }
        let err = RateLimit::from_config(20, Duration::ZERO).unwrap_err();
        assert!(
            err.contains("rate_window is not a positive length"),
            "{err}"
        );
        let err = RateLimit::from_config(20, MAX_WINDOW + Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("longer than 366 days"), "{err}");
    }

    #[test]
    fn every_limit_and_window_the_schema_accepts_is_planned() {
        for (n, window) in [
            (i32::MAX, Duration::from_secs(60)),
            (1, Duration::from_micros(1)),
            (20, MAX_WINDOW),
        ] {
            let rate = RateLimit::from_config(n, window).expect("accepted");
            let b = rate.budget(t(0), &[t(-1)]);
            assert_eq!(b.available, n as u32 - 1);
            let spent = rate.next_free_after(t(0), &[t(-1)], b.available);
            assert!(spent.is_some_and(|at| at > t(0)), "{n} per {window:?}");
        }
    }

    fn learned(n: u32, at_ms: i64) -> Option<Learned> {
        Some(Learned {
            limit: n,
            at: t(at_ms),
        })
    }

    #[test]
    fn a_45009_under_the_configured_limit_learns_what_was_accepted() {
        assert_eq!(limit(10, 2).learn_from_45009(5), Some(5));
        assert_eq!(limit(10, 2).learn_from_45009(1), Some(1));
    }

    #[test]
    fn a_45009_after_nothing_accepted_or_at_the_configured_limit_teaches_nothing() {
        assert_eq!(limit(10, 2).learn_from_45009(0), None);
        assert_eq!(limit(10, 2).learn_from_45009(10), None);
        assert_eq!(limit(10, 2).learn_from_45009(12), None);
    }

    #[test]
    fn the_learned_limit_is_in_force_instead_of_the_configured_one() {
        let l = limit(10, 2).with_learned(learned(5, 0), t(1_000));
        assert_eq!(l, limit(5, 2));
        let sends = [t(0); 5];
        assert_eq!(l.budget(t(1_000), &sends).available, 0);
        assert_eq!(limit(10, 2).budget(t(1_000), &sends).available, 5);
    }

    #[test]
    fn nothing_learned_leaves_the_configured_limit() {
        assert_eq!(limit(10, 2).with_learned(None, t(0)), limit(10, 2));
        assert_eq!(limit(10, 2).learned_limit(None, t(0)), None);
    }

    #[test]
    fn the_learned_limit_grows_by_one_every_probe_period_without_45009() {
        let l = limit(10, 2);
        let period = 2_000 * i64::from(PROBE_AFTER_WINDOWS);
        assert_eq!(l.learned_limit(learned(5, 0), t(period - 1)), Some(5));
        assert_eq!(l.learned_limit(learned(5, 0), t(period)), Some(6));
        assert_eq!(l.learned_limit(learned(5, 0), t(4 * period)), Some(9));
    }

    #[test]
    fn a_learned_limit_grown_back_to_the_configured_one_is_forgotten() {
        let l = limit(10, 2);
        let period = 2_000 * i64::from(PROBE_AFTER_WINDOWS);
        assert_eq!(l.learned_limit(learned(5, 0), t(5 * period)), None);
        assert_eq!(l.with_learned(learned(5, 0), t(500 * period)), l);
        assert_eq!(
            l.learned_limit(learned(12, 0), t(0)),
            None,
            "above configured"
        );
    }

    #[test]
    fn a_learned_limit_from_the_future_or_of_zero_still_sends() {
        let l = limit(10, 2);
        assert_eq!(l.learned_limit(learned(5, 9_000), t(0)), Some(5));
        assert_eq!(l.learned_limit(learned(0, 0), t(0)), Some(1));
    }

    #[test]
    fn more_sends_than_the_limit_wait_for_enough_to_leave() {
        // A DBA lowered the limit from 5 to 2 while 4 sends were in the window.
        let sends = [t(0), t(100), t(200), t(300)];
        let b = limit(2, 10).budget(t(400), &sends);
        assert_eq!(b.next_free_at, Some(t(200 + 10_020)));
    }
}
