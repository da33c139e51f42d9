//! What a replica tells Prometheus, and where it is decided: every metric's name, labels and
//! meaning are here, and the worker calls [`Metrics`] at the few places an outcome is known
//! (a WeCom answer, housekeeping), instead of naming metrics all over the code.
//!
//! A [`Metrics`] owns its own recorder (it is never installed as the process's global one),
//! so two replicas in one process, as the tests run them, never count into each other's
//! numbers; [`Metrics::off`] (the default) records nothing at all.
//!
//! Labels are `destination` and `robot`, the robot's NAME: never its URL, which holds the key.
//! Both are bounded by the rows of `wecom_webhooks` (and destinations rows name).

pub mod gauges;
pub mod health;
pub mod server;

use crate::store::{ClaimedRobot, Finish};
use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Messages WeCom accepted (errcode 0), per destination and robot.
pub const SENT: &str = "wecom_messages_sent_total";
/// Messages given up on (`failed`): WeCom rejected the payload, or attempts ran out.
pub const FAILED: &str = "wecom_messages_failed_total";
/// Messages that passed `expires_at` unsent, expired by this replica's housekeeping.
pub const EXPIRED: &str = "wecom_messages_expired_total";
/// 45009 answers: the robot paused, the message requeued without using an attempt.
pub const RATE_LIMITED: &str = "wecom_rate_limited_total";
/// Transient faults (network, timeout, 5xx, -1, unknown errcodes) that will be retried.
pub const RETRIES: &str = "wecom_retries_total";
/// 93000/93004/93008 answers: the robot was disabled, its messages wait for the rest of its pool.
pub const ROBOTS_GONE: &str = "wecom_robots_gone_total";
/// Leases that ran out (a replica died mid-batch) and were handed back by housekeeping.
pub const LEASES_RESCUED: &str = "wecom_leases_rescued_total";
/// How long WeCom took to answer one POST (every send, whatever the answer).
pub const SEND_DURATION: &str = "wecom_send_duration_seconds";
/// Outbox rows by destination and status (`pending`, `sending`), as of the last refresh.
pub const QUEUE_DEPTH: &str = "wecom_queue_depth";
/// Age of the oldest pending row per destination (0 when none is pending).
pub const OLDEST_PENDING_AGE: &str = "wecom_oldest_pending_age_seconds";
/// Robots disabled (`is_active` false) per destination, as of the last refresh.
pub const ROBOTS_DISABLED: &str = "wecom_robots_disabled";
/// 1 when the last refresh of the gauges above could read the database, else 0.
pub const DATABASE_UP: &str = "wecom_database_up";

/// Buckets of [`SEND_DURATION`], in seconds: WeCom usually answers in tens of milliseconds;
/// the top buckets catch a slow path up to the default 10 s timeout and beyond.
const SEND_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Where a replica's metrics go: a Prometheus recorder of its own, or nowhere.
#[derive(Clone, Default)]
pub struct Metrics {
    recorder: Option<Arc<PrometheusRecorder>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.recorder.is_some() { "on" } else { "off" };
        write!(f, "Metrics({state})")
    }
}

impl Metrics {
    /// Records nothing: a replica started without `--metrics-addr`.
    pub fn off() -> Metrics {
        Metrics::default()
    }

    /// A fresh recorder of its own, every metric described, for one replica.
    pub fn prometheus() -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(SEND_DURATION.into()), &SEND_BUCKETS)
            .expect("the send-duration buckets are not empty");
        let metrics = Metrics {
            recorder: Some(Arc::new(builder.build_recorder())),
        };
        metrics.describe_all();
        metrics
    }

    /// The metrics in Prometheus' text format, or `None` when they are off.
    pub fn render(&self) -> Option<String> {
        self.recorder.as_ref().map(|r| r.handle().render())
    }

    /// Folds recorded histogram samples into their buckets, so memory stays bounded between
    /// scrapes; the gauge refresher calls it on its timer.
    pub fn upkeep(&self) {
        if let Some(r) = &self.recorder {
            r.handle().run_upkeep();
        }
    }

    /// One POST to a robot is over: how long WeCom took, and what the worker records for it.
    pub(crate) fn send_finished(&self, robot: &ClaimedRobot, finish: &Finish, took: Duration) {
        let Some(r) = &self.recorder else { return };
        let labels = robot_labels(&robot.destination, &robot.name);
        histogram(r, SEND_DURATION, &labels).record(took.as_secs_f64());
        let counted = match finish {
            Finish::Sent => SENT,
            Finish::Failed { .. } => FAILED,
            Finish::RetryAfter { .. } => RETRIES,
            Finish::RateLimited { .. } => RATE_LIMITED,
            Finish::RobotGone { .. } => ROBOTS_GONE,
        };
        counter(r, counted, &labels).increment(1);
    }

    /// What one housekeeping pass of this replica did: rows expired, leases rescued.
    pub(crate) fn housekeeping(&self, expired: u64, rescued: i64) {
        let Some(r) = &self.recorder else { return };
        counter(r, EXPIRED, &[]).increment(expired);
        counter(r, LEASES_RESCUED, &[]).increment(rescued.max(0) as u64);
    }

    /// Sets gauge `name` with `labels` to `value`.
    pub(crate) fn set_gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        if let Some(r) = &self.recorder {
            gauge(r, name, &to_labels(labels)).set(value);
        }
    }

    fn describe_all(&self) {
        let Some(r) = &self.recorder else { return };
        let counters = [
            (SENT, "Messages WeCom accepted (errcode 0)."),
            (
                FAILED,
                "Messages given up on: WeCom rejected the payload, or attempts ran out.",
            ),
            (
                EXPIRED,
                "Messages past expires_at, expired unsent by this replica's housekeeping.",
            ),
            (
                RATE_LIMITED,
                "45009 answers: robot paused, message requeued without using an attempt.",
            ),
            (
                RETRIES,
                "Transient faults (network, timeout, 5xx, -1) that will be retried.",
            ),
            (
                ROBOTS_GONE,
                "93000/93004/93008 answers: the robot was disabled.",
            ),
            (
                LEASES_RESCUED,
                "Expired leases (a replica died mid-batch) rescued by housekeeping.",
            ),
        ];
        for (name, help) in counters {
            r.describe_counter(name.into(), None, help.into());
        }
        let gauges = [
            (
                QUEUE_DEPTH,
                "Outbox rows by destination and status (pending, sending).",
            ),
            (
                OLDEST_PENDING_AGE,
                "Age of the oldest pending row, 0 when none is pending.",
            ),
            (ROBOTS_DISABLED, "Robots with is_active false."),
            (
                DATABASE_UP,
                "1 when the last refresh of the gauges could read the database.",
            ),
        ];
        for (name, help) in gauges {
            r.describe_gauge(name.into(), None, help.into());
        }
        let help = "Time WeCom took to answer one POST, whatever the answer.";
        r.describe_histogram(SEND_DURATION.into(), Some(Unit::Seconds), help.into());
    }
}

/// The labels of a per-robot metric.
fn robot_labels(destination: &str, robot: &str) -> Vec<Label> {
    to_labels(&[("destination", destination), ("robot", robot)])
}

fn to_labels(labels: &[(&'static str, &str)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(name, value)| Label::new(*name, value.to_string()))
        .collect()
}

/// Where metrics are registered from, as the `metrics` macros would say it.
static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

fn counter(r: &PrometheusRecorder, name: &'static str, labels: &[Label]) -> Counter {
    r.register_counter(&Key::from_parts(name, labels.to_vec()), &METADATA)
}

fn gauge(r: &PrometheusRecorder, name: &'static str, labels: &[Label]) -> Gauge {
    r.register_gauge(&Key::from_parts(name, labels.to_vec()), &METADATA)
}

fn histogram(r: &PrometheusRecorder, name: &'static str, labels: &[Label]) -> Histogram {
    r.register_histogram(&Key::from_parts(name, labels.to_vec()), &METADATA)
}
