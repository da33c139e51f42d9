//! Pruning finished rows: batch by batch, each batch its own short transaction, so it is safe
//! while workers run and never holds the queue. `wecom-outbox prune` calls [`prune_before`];
//! every `run` replica also runs [`daily`] in a task of its own, which prunes once a day
//! (across all replicas: the day is claimed in `wecom_daily_runs`, job `prune`) when
//! `prune_after_days` is set.

use crate::store::{Pruned, Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows per batch the daily prune deletes (each batch one short transaction).
pub const DAILY_BATCH: i64 = 1000;
/// How often a replica asks whether today's prune is due (one small query).
const CHECK_EVERY: Duration = Duration::from_secs(60);
/// A pause between the daily prune's batches, so it never crowds out delivery.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// Delete everything finished before `cutoff`, `batch` rows at a time, calling `progress`
/// after each batch with the totals so far; stops early (with what it did) when `stop` is
/// cancelled. Returns the totals.
pub async fn prune_before(
    store: &Store,
    cutoff: DateTime<Utc>,
    batch: i64,
    pause: Duration,
    stop: &CancellationToken,
    mut progress: impl FnMut(Pruned),
) -> Result<Pruned, StoreError> {
    let mut total = Pruned::default();
    while !stop.is_cancelled() {
        let done = store.prune_batch(cutoff, batch).await?;
        if done.messages == 0 {
            break;
        }
        total += done;
        progress(total);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(total)
}

/// `prune_after_days` as the worker reads it: `None` (off) when empty or absent; a value the
/// database's check would refuse (stored before the check existed) also means off.
pub fn days_setting(value: Option<&str>) -> Option<u32> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|d| *d >= 1)
}

/// Prune today if `prune_after_days` is set and no replica has pruned today: `None` when
/// there was nothing to do, else what was deleted. The outcome is recorded in
/// `wecom_daily_runs` (job `prune`); a failed day is not retried until the next day.
pub async fn run_daily_once(
    store: &Store,
    runner: &str,
    stop: &CancellationToken,
) -> Result<Option<Pruned>, StoreError> {
    let Some(days) = days_setting(store.prune_setting().await?.as_deref()) else {
        return Ok(None);
    };
    if !store.claim_daily_prune(runner).await? {
        return Ok(None);
    }
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
    let result = prune_before(store, cutoff, DAILY_BATCH, BETWEEN_BATCHES, stop, |_| {}).await;
    let (messages, error) = match &result {
        Ok(p) => (p.messages, None),
        Err(e) => (0, Some(e.to_string())),
    };
    store
        .finish_daily_prune(runner, messages, error.as_deref())
        .await?;
    result.map(Some)
}

/// The replica's daily-prune task: asks every minute until `shutdown`; errors are logged,
/// never fatal (a prune problem must not stop delivery).
pub async fn daily(store: Store, runner: String, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match run_daily_once(&store, &runner, &shutdown).await {
            Ok(Some(p)) => tracing::info!(
                messages = p.messages,
                log_rows = p.log_rows,
                "daily prune: finished rows deleted"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "daily prune failed (tried again tomorrow)"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::days_setting;

    #[test]
    fn an_empty_or_absent_setting_is_off_and_a_positive_number_is_days() {
        assert_eq!(days_setting(None), None);
        assert_eq!(days_setting(Some("")), None);
        assert_eq!(days_setting(Some("  ")), None);
        assert_eq!(days_setting(Some("0")), None);
        assert_eq!(days_setting(Some("x")), None);
        assert_eq!(days_setting(Some(" 90 ")), Some(90));
    }
}
