//! WeCom's per-robot rate limit as the stand-in enforces it: a sliding window counted on arrival.

use std::collections::VecDeque;
use std::time::Instant;

use super::StandinConfig;

/// The sliding window, counted on arrival like WeCom: an arrival is admitted when fewer than
/// `limit` admitted arrivals lie within the last `window` (strictly `now - t < window`), and
/// only admitted arrivals are remembered.
pub(super) fn window_admits(
    arrivals: &mut VecDeque<Instant>,
    now: Instant,
    config: StandinConfig,
) -> bool {
    if config.limit == 0 {
        return true;
    }
    while arrivals
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= config.window)
    {
        arrivals.pop_front();
    }
    if arrivals.len() >= config.limit {
        return false;
    }
    arrivals.push_back(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(limit: usize, ms: u64) -> StandinConfig {
        StandinConfig {
            limit,
            window: Duration::from_millis(ms),
        }
    }

    #[test]
    fn window_counts_admitted_arrivals_strictly_within_the_window() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let cfg = config(2, 1000);
        let mut q = VecDeque::new();
        assert!(window_admits(&mut q, at(0), cfg));
        assert!(window_admits(&mut q, at(10), cfg));
        assert!(
            !window_admits(&mut q, at(999), cfg),
            "t0 is still within the window"
        );
        assert!(
            window_admits(&mut q, at(1000), cfg),
            "now - t0 == window: t0 no longer counts"
        );
        assert!(!window_admits(&mut q, at(1009), cfg));
        assert!(window_admits(&mut q, at(1010), cfg));
        assert_eq!(q.len(), 2, "refused arrivals are not remembered");
    }

    #[test]
    fn zero_limit_is_unlimited() {
        let mut q = VecDeque::new();
        let now = Instant::now();
        assert!((0..1000).all(|_| window_admits(&mut q, now, config(0, 1000))));
    }
}
