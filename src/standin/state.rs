//! What the stand-in remembers: per-key behaviours and arrivals, the accepted messages, and the
//! counters tests assert on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::behaviour::{self, Behaviour};
use super::rate_window::window_admits;
use super::StandinConfig;
use crate::wecom::redact::redact_key;

/// One message the stand-in accepted, so tests can check what was delivered and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The robot key it was sent to (full: this is the stand-in's own test key).
    pub key: String,
    /// Arrival time on the monotonic clock, for measuring rates and gaps.
    pub at: Instant,
    /// Arrival time on the wall clock, for display.
    pub at_utc: DateTime<Utc>,
    /// The JSON body as received.
    pub body: Value,
}

/// Counters over all requests to the send path, so tests can assert that WeCom "never had to
/// say 45009" and nothing invalid was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Messages answered errcode 0.
    pub accepted: u64,
    /// Sends refused with 45009 (over the rate limit, or a 45009 behaviour).
    pub rejected_45009: u64,
    /// Sends refused because the body was not JSON or broke a message rule.
    pub invalid: u64,
    /// Every other failure: bad URL (93000), errcode behaviours, HTTP errors, drops.
    pub other_errors: u64,
    /// Accepted and 45009 counts per key: full keys in [`super::Standin::stats`] (the test that
    /// holds the stand-in knows its keys), redacted in `GET /_stats` (see [`Stats::redacted`]).
    pub per_key: BTreeMap<String, KeyStats>,
}

impl Stats {
    /// The counters as `GET /_stats` shows them: keys as [`redact_key`] shows them (the page
    /// is for people and scripts, who must not learn a key from it). Keys that look alike
    /// there are counted together.
    pub fn redacted(&self) -> Stats {
        let mut per_key: BTreeMap<String, KeyStats> = BTreeMap::new();
        for (key, counts) in &self.per_key {
            let shown = per_key.entry(redact_key(key)).or_default();
            shown.accepted += counts.accepted;
            shown.rejected_45009 += counts.rejected_45009;
        }
        Stats {
            per_key,
            ..self.clone()
        }
    }
}

/// Per-key counters within [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeyStats {
    /// Messages to this key answered errcode 0.
    pub accepted: u64,
    /// Sends to this key refused with 45009.
    pub rejected_45009: u64,
}

/// State shared by all connections.
pub(super) struct Shared {
    pub(super) config: StandinConfig,
    inner: Mutex<Inner>,
    hints: AtomicU64,
}

/// The part of [`Shared`] behind its lock.
#[derive(Default)]
pub(super) struct Inner {
    behaviours: HashMap<String, Behaviour>,
    arrivals: HashMap<String, VecDeque<Instant>>,
    pub(super) received: Vec<Received>,
    pub(super) stats: Stats,
}

impl Shared {
    pub(super) fn new(config: StandinConfig) -> Self {
        Shared {
            config,
            inner: Mutex::new(Inner::default()),
            hints: AtomicU64::new(1),
        }
    }

    /// The state; a panic elsewhere while holding it does not stop the stand-in answering.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets how the next sends to `key` are treated.
    pub(super) fn set_behaviour(&self, key: String, behaviour: Behaviour) {
        self.lock().behaviours.insert(key, behaviour);
    }

    /// A WeCom-like `hint: […]` so errmsg looks like the real one.
    pub(super) fn next_hint(&self) -> String {
        let n = self.hints.fetch_add(1, Ordering::Relaxed);
        format!("{}_{n:06}", Utc::now().timestamp())
    }
}

impl Inner {
    /// The behaviour for this request, consuming one failure of a `FailTimes`.
    pub(super) fn next_behaviour(&mut self, key: &str) -> Behaviour {
        behaviour::next_behaviour(&mut self.behaviours, key)
    }

    /// Counts an error answer: 45009 on its own counters, the rest as other errors.
    pub(super) fn count_error(&mut self, key: Option<&str>, code: i64) {
        if code != 45009 {
            self.stats.other_errors += 1;
            return;
        }
        self.stats.rejected_45009 += 1;
        if let Some(key) = key {
            self.stats
                .per_key
                .entry(key.to_owned())
                .or_default()
                .rejected_45009 += 1;
        }
    }

    /// Applies the rate limit on arrival; records and counts the message if it is admitted.
    pub(super) fn admit(&mut self, key: &str, body: Value, config: StandinConfig) -> bool {
        let now = Instant::now();
        let arrivals = self.arrivals.entry(key.to_owned()).or_default();
        if !window_admits(arrivals, now, config) {
            self.count_error(Some(key), 45009);
            return false;
        }
        self.stats.accepted += 1;
        self.stats
            .per_key
            .entry(key.to_owned())
            .or_default()
            .accepted += 1;
        self.received.push(Received {
            key: key.to_owned(),
            at: now,
            at_utc: Utc::now(),
            body,
        });
        true
    }
}
