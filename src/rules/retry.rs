//! The retry rule: how long a message waits after a transient failure, when it gives up,
//! and how long a robot pauses after WeCom says 45009.
//!
//! Delays come from `backon`'s exponential backoff with jitter (the `backoff` crate is
//! unmaintained, RUSTSEC-2025-0012), so replicas that failed together do not retry together.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// Backoff for transient failures, scaled by `run --retry-base-delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the first retry (before jitter).
    pub base: Duration,
    /// No single delay grows beyond this (before jitter).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(30 * 60),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failed attempt (1-based): base · 2^(attempt-1), capped,
    /// plus a random jitter below that delay.
    pub fn delay(&self, attempt: u32) -> Duration {
        let attempt = attempt.max(1) as usize;
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(attempt)
            .build()
            .nth(attempt - 1)
            .unwrap_or(self.max)
    }

    /// Whether a message that has used `attempts` of `max_attempts` should be given up.
    pub fn gives_up(&self, attempts: i32, max_attempts: i32) -> bool {
        attempts >= max_attempts
    }
}

/// How long a robot pauses after its `consecutive`-th 45009 in a row: one window, doubling
/// with each repeat (WeCom's block lasts about a window), at most an hour.
pub fn pause_after_rate_limited(window: Duration, consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    window
        .saturating_mul(1 << doublings)
        .min(Duration::from_secs(3600))
        .max(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base_ms: u64) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(base_ms),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn delay_doubles_per_attempt_within_jitter() {
        let p = policy(200);
        for (attempt, floor) in [(1, 200u64), (2, 400), (3, 800), (4, 1600)] {
            for _ in 0..50 {
                let d = p.delay(attempt).as_millis() as u64;
                assert!(d >= floor && d < 2 * floor, "attempt {attempt}: {d} ms");
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let p = policy(1000);
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| p.delay(1)).collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn delay_is_capped() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        assert!(p.delay(30) < Duration::from_secs(20));
    }

    #[test]
    fn gives_up_at_max_attempts() {
        let p = policy(1);
        assert!(!p.gives_up(4, 5));
        assert!(p.gives_up(5, 5));
    }

    #[test]
    fn repeated_45009_doubles_the_pause_up_to_an_hour() {
        let w = Duration::from_secs(60);
        assert_eq!(pause_after_rate_limited(w, 1), w);
        assert_eq!(pause_after_rate_limited(w, 2), w * 2);
        assert_eq!(pause_after_rate_limited(w, 3), w * 4);
        assert_eq!(pause_after_rate_limited(w, 40), Duration::from_secs(3600));
    }
}
