//! What a robot may do right now: the rate limit, the send window and a 45009 pause, combined.
//! The store hands over a robot's configuration and recent sends inside the claim transaction;
//! the answer says how many messages to claim and when to look at the robot again.

use super::rate_limit::{Learned, RateLimit};
use super::send_window::SendWindow;
use crate::rules::ConfigError;
use chrono::{DateTime, NaiveTime, Utc};
use std::time::Duration;

/// A robot's settings as stored in `wecom_webhooks`: the one type every layer (the claim, the
/// rules, `status`) reads them into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RobotSettings {
    /// At most this many sends in any sliding `rate_window`.
    pub rate_limit: i32,
    pub rate_window: Duration,
    /// The local window it may send in; both or neither.
    pub send_window_start: Option<NaiveTime>,
    pub send_window_end: Option<NaiveTime>,
    /// ISO weekdays it may send on; `None` = every day.
    pub send_days: Option<Vec<i32>>,
    /// The robot's own zone, or `None` for the deployment's default.
    pub timezone: Option<String>,
}

/// A robot as the rules see it: its settings and what the store knows of its recent past.
#[derive(Debug, Clone)]
pub struct RobotSnapshot {
    pub settings: RobotSettings,
    /// `wecom_settings.default_timezone`.
    pub default_timezone: String,
    pub paused_until: Option<DateTime<Utc>>,
    /// What the worker learned of WeCom's real limit for it, if anything (see
    /// [`crate::rules::rate_limit`]).
    pub learned: Option<Learned>,
    /// When its recent sends happened (reserved, or answered once WeCom answered).
    pub recent_sends: Vec<DateTime<Utc>>,
}

/// What to do with a robot now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Claim up to `take` messages; if all are taken, look again at `then_next_check`.
    Claim {
        take: u32,
        then_next_check: DateTime<Utc>,
    },
    /// Nothing may go before `until` (quiet hours, budget spent, or paused after 45009).
    Wait { until: DateTime<Utc> },
    /// The robot's configuration cannot work as written (an unknown zone, a limit that allows
    /// nothing): it is skipped with `reason` until `recheck_at`, or until a DBA fixes it (any
    /// change to a robot or setting wakes the workers). It is never disabled for it: the fix
    /// alone puts it back in service.
    Unusable {
        reason: String,
        recheck_at: DateTime<Utc>,
    },
    /// This replica must not serve the robot (its own configuration forbids it, e.g. the
    /// robot's host is not in its allowed hosts). Nothing shared changes: other replicas may.
    Skip { reason: String },
}

/// How long to wait before looking at a robot whose window never opens (empty `send_days`);
/// a DBA's fix to the robot wakes the workers at once anyway.
const NEVER_RECHECK: chrono::Duration = chrono::Duration::hours(1);

impl RobotSnapshot {
    /// The robot's limit, or why its row cannot give one (stored before the schema refused
    /// such rows): the worker skips the robot with this reason and `status` shows it.
    pub fn rate(&self) -> Result<RateLimit, ConfigError> {
        RateLimit::from_config(self.settings.rate_limit, self.settings.rate_window)
    }

    /// The limit in force at `now`: the configured one, lowered to what WeCom was seen to
    /// accept while that is still in force. Everything that plans sends uses this one.
    pub fn rate_at(&self, now: DateTime<Utc>) -> Result<RateLimit, ConfigError> {
        Ok(self.rate()?.with_learned(self.learned, now))
    }

    /// The robot's send window in its zone, or why its row cannot give one (a window that
    /// starts when it ends, an empty `send_days`, a zone that is not an IANA name — its own
    /// or the deployment's default): the worker skips the robot with this reason.
    pub fn send_window(&self) -> Result<SendWindow, ConfigError> {
        let s = &self.settings;
        SendWindow::from_config(
            s.send_window_start,
            s.send_window_end,
            s.send_days.as_deref(),
            s.timezone.as_deref(),
            &self.default_timezone,
        )
    }
}

/// Decide for one robot at `now`, claiming at most `max_batch` messages at a time.
pub fn decide(robot: &RobotSnapshot, now: DateTime<Utc>, max_batch: u32) -> Decision {
    let (rate, window) = match (robot.rate_at(now), robot.send_window()) {
        (Ok(rate), Ok(window)) => (rate, window),
        (Err(reason), _) | (_, Err(reason)) => {
            return Decision::Unusable {
                reason: reason.0,
                recheck_at: now + NEVER_RECHECK,
            }
        }
    };
    if let Some(paused) = robot.paused_until.filter(|p| *p > now) {
        return Decision::Wait {
            until: window.next_open(paused).unwrap_or(paused),
        };
    }
    let Some(opens) = window.next_open(now) else {
        return Decision::Wait {
            until: now + NEVER_RECHECK,
        };
    };
    if opens > now {
        return Decision::Wait { until: opens };
    }
    let budget = rate.budget(now, &robot.recent_sends);
    if budget.available == 0 {
        let free = budget.next_free_at.unwrap_or(now);
        return Decision::Wait {
            until: window.next_open(free).unwrap_or(free),
        };
    }
    let take = budget.available.min(max_batch.max(1));
    let free = rate
        .next_free_after(now, &robot.recent_sends, take)
        .unwrap_or(now);
    Decision::Claim {
        take,
        then_next_check: window.next_open(free).unwrap_or(free),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        // 2026-11-27 (Friday) h:m in Hong Kong.
        chrono_tz::Asia::Hong_Kong
            .with_ymd_and_hms(2026, 11, 27, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn robot() -> RobotSnapshot {
        RobotSnapshot {
            settings: RobotSettings {
                rate_limit: 20,
                rate_window: Duration::from_secs(60),
                send_window_start: NaiveTime::from_hms_opt(9, 0, 0),
                send_window_end: NaiveTime::from_hms_opt(20, 0, 0),
                send_days: None,
                timezone: None,
            },
            default_timezone: "Asia/Hong_Kong".into(),
            paused_until: None,
            learned: None,
            recent_sends: vec![],
        }
    }

    #[test]
    fn a_learned_limit_caps_the_batch_and_the_budget() {
        let mut r = robot();
        r.learned = Some(Learned {
            limit: 5,
            at: at(9, 59),
        });
        assert!(matches!(
            decide(&r, at(10, 0), 20),
            Decision::Claim { take: 5, .. }
        ));
        r.recent_sends = vec![at(10, 0); 5];
        assert!(matches!(decide(&r, at(10, 0), 20), Decision::Wait { .. }));
    }

    #[test]
    fn an_open_robot_with_budget_claims_a_batch() {
        let d = decide(&robot(), at(10, 0), 20);
        assert_eq!(
            d,
            Decision::Claim {
                take: 20,
                then_next_check: at(10, 0) + chrono::Duration::milliseconds(60_120)
            }
        );
    }

    #[test]
    fn the_batch_is_capped() {
        assert!(matches!(
            decide(&robot(), at(10, 0), 5),
            Decision::Claim { take: 5, .. }
        ));
    }

    #[test]
    fn quiet_hours_wait_for_the_window() {
        assert_eq!(
            decide(&robot(), at(3, 0), 20),
            Decision::Wait { until: at(9, 0) }
        );
    }

    #[test]
    fn a_spent_budget_waits_for_the_oldest_send_to_leave() {
        let mut r = robot();
        r.recent_sends = vec![at(10, 0); 20];
        assert_eq!(
            decide(&r, at(10, 0), 20),
            Decision::Wait {
                until: at(10, 1) + chrono::Duration::milliseconds(120)
            }
        );
    }

    #[test]
    fn budget_freeing_after_the_window_closes_waits_for_tomorrow() {
        let mut r = robot();
        r.recent_sends = vec![at(19, 59); 20];
        let tomorrow_9 = at(9, 0) + chrono::Duration::days(1);
        assert_eq!(
            decide(&r, at(19, 59), 20),
            Decision::Wait { until: tomorrow_9 }
        );
    }

    #[test]
    fn a_paused_robot_waits_out_its_pause() {
        let mut r = robot();
        r.paused_until = Some(at(10, 5));
        assert_eq!(
            decide(&r, at(10, 0), 20),
            Decision::Wait { until: at(10, 5) }
        );
        assert!(matches!(decide(&r, at(10, 6), 20), Decision::Claim { .. }));
    }

    #[test]
    fn a_robot_in_an_unknown_zone_is_skipped_with_the_reason_not_disabled() {
        let mut r = robot();
        r.settings.timezone = Some("Mars/Olympus".into());
        match decide(&r, at(10, 0), 20) {
            Decision::Unusable { reason, .. } => {
                assert!(reason.contains("Mars/Olympus"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_robots_own_zone_wins_over_the_default() {
        let mut r = robot();
        r.settings.timezone = Some("UTC".into());
        // 10:00 in Hong Kong is 02:00 UTC: closed for a 09:00-20:00 UTC window.
        assert!(matches!(decide(&r, at(10, 0), 20), Decision::Wait { .. }));
    }
}
