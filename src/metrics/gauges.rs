//! The gauges read from the database (queue depth, oldest pending row, disabled robots),
//! refreshed by this replica on a timer — never per scrape, so any number of scrapers cost
//! the database one `destination_counts()` and one `robot_reports()` per interval.

use super::{Metrics, DATABASE_UP, OLDEST_PENDING_AGE, QUEUE_DEPTH, ROBOTS_DISABLED};
use crate::store::{DestinationCounts, RobotReport, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the gauges are read from the database by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(15);

/// A gauge this refresher has set: its name and label values.
type Series = (&'static str, Vec<(&'static str, String)>);

/// Refreshes `metrics`' database gauges now and then every `every`, until `shutdown`.
pub async fn refresh_every(
    store: Store,
    metrics: Metrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut shown = HashSet::new();
    loop {
        match read(&store).await {
            Ok((counts, robots)) => {
                shown = show(&metrics, &counts, &robots, Utc::now(), &shown);
                metrics.set_gauge(DATABASE_UP, &[], 1.0);
            }
            Err(e) => {
                tracing::debug!(error = %e, "metrics: could not read the queue from the database");
                metrics.set_gauge(DATABASE_UP, &[], 0.0);
            }
        }
        metrics.upkeep();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn read(store: &Store) -> Result<(Vec<DestinationCounts>, Vec<RobotReport>), StoreError> {
    Ok((
        store.destination_counts().await?,
        store.robot_reports().await?,
    ))
}

/// Sets every gauge from one reading; a series shown before (`shown`) that this reading no
/// longer has (a destination removed) is set to 0 rather than left at its old value.
/// Returns the series shown now.
fn show(
    metrics: &Metrics,
    counts: &[DestinationCounts],
    robots: &[RobotReport],
    now: DateTime<Utc>,
    shown: &HashSet<Series>,
) -> HashSet<Series> {
    let now_shown: Vec<(Series, f64)> = series(counts, robots, now);
    let mut current = HashSet::new();
    for ((name, labels), value) in now_shown {
        set(metrics, name, &labels, value);
        current.insert((name, labels));
    }
    for (name, labels) in shown.difference(&current) {
        set(metrics, name, labels, 0.0);
    }
    current
}

fn set(metrics: &Metrics, name: &'static str, labels: &[(&'static str, String)], value: f64) {
    let labels: Vec<(&'static str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    metrics.set_gauge(name, &labels, value);
}

/// Every gauge series of one reading, with its value.
fn series(
    counts: &[DestinationCounts],
    robots: &[RobotReport],
    now: DateTime<Utc>,
) -> Vec<(Series, f64)> {
    let mut out = Vec::new();
    for c in counts {
        let dest = || ("destination", c.destination.clone());
        for (status, n) in [("pending", c.pending), ("sending", c.sending)] {
            out.push((
                (QUEUE_DEPTH, vec![dest(), ("status", status.into())]),
                n as f64,
            ));
        }
        let age = c.oldest_pending.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        out.push(((OLDEST_PENDING_AGE, vec![dest()]), age));
    }
    let mut disabled: BTreeMap<&str, u32> = BTreeMap::new();
    for r in robots {
        *disabled.entry(r.destination.as_str()).or_default() += u32::from(!r.is_active);
    }
    for (destination, n) in disabled {
        let labels = vec![("destination", destination.to_owned())];
        out.push(((ROBOTS_DISABLED, labels), f64::from(n)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(destination: &str, pending: i64, oldest: Option<DateTime<Utc>>) -> DestinationCounts {
        DestinationCounts {
            destination: destination.into(),
            pending,
            sending: 1,
            sent: 5,
            failed: 0,
            cancelled: 0,
            expired: 0,
            oldest_pending: oldest,
            last_error: None,
        }
    }

    fn robot(destination: &str, is_active: bool) -> RobotReport {
        RobotReport {
            destination: destination.into(),
            is_active,
            ..RobotReport::default()
        }
    }

    fn value(series: &[(Series, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        series.iter().find_map(|((n, l), v)| {
            let same = l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((a, b), (c, d))| a == c && b == d);
            (*n == name && same).then_some(*v)
        })
    }

    #[test]
    fn series_count_the_queue_its_age_and_disabled_robots() {
        let now = Utc::now();
        let oldest = now - chrono::Duration::seconds(90);
        let s = series(
            &[counts("parents", 3, Some(oldest)), counts("staff", 0, None)],
            &[
                robot("parents", false),
                robot("parents", true),
                robot("staff", true),
            ],
            now,
        );
        let parents = [("destination", "parents"), ("status", "pending")];
        assert_eq!(value(&s, QUEUE_DEPTH, &parents), Some(3.0));
        let sending = [("destination", "parents"), ("status", "sending")];
        assert_eq!(value(&s, QUEUE_DEPTH, &sending), Some(1.0));
        let age = value(&s, OLDEST_PENDING_AGE, &[("destination", "parents")]);
        assert_eq!(age, Some(90.0));
        assert_eq!(
            value(&s, OLDEST_PENDING_AGE, &[("destination", "staff")]),
            Some(0.0)
        );
        assert_eq!(
            value(&s, ROBOTS_DISABLED, &[("destination", "parents")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, ROBOTS_DISABLED, &[("destination", "staff")]),
            Some(0.0)
        );
    }

    #[test]
    fn a_destination_that_went_away_is_shown_as_zero() {
        let metrics = Metrics::prometheus();
        let now = Utc::now();
        let first = show(
            &metrics,
            &[counts("gone", 4, None)],
            &[],
            now,
            &HashSet::new(),
        );
        let second = show(&metrics, &[], &[], now, &first);
        assert!(second.is_empty());
        let text = metrics.render().unwrap();
        assert!(
            text.contains(r#"wecom_queue_depth{destination="gone",status="pending"} 0"#),
            "{text}"
        );
    }
}
