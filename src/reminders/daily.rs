//! The worker's side of the once-a-day run. The rule (is today's run due: the local run time
//! has passed, the day is not done, a failure is retried after five minutes) has one home:
//! the database's `wecom_daily_reminders_due`, which pg_cron (or a MySQL EVENT) runs without
//! this binary too. Every few seconds the worker asks the database to run the day
//! (`wecom_run_daily_reminders`); it re-checks the rule under an advisory lock, enqueues and
//! records the day in one transaction, or does nothing. So across any number of replicas (and
//! pg_cron) the day runs exactly once, and a day on which every replica was down at the run
//! time is caught up as soon as one is back.

use crate::store::Store;
use std::time::Duration;
use tokio::time::Instant;

/// How often the worker asks (one small query when nothing is due).
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// After an error (e.g. migrations not applied yet), ask again only this much later.
const CHECK_AFTER_ERROR: Duration = Duration::from_secs(60);

/// One replica's clock for the daily run: when to ask the database again.
#[derive(Debug, Default)]
pub struct DailyScheduler {
    next_check: Option<Instant>,
}

impl DailyScheduler {
    /// Called on every worker tick; asks the database at most every `CHECK_EVERY`. Returns
    /// when the worker should wake to ask again. Errors are logged, never returned: a problem
    /// with the reminders must not stop delivery.
    pub async fn poll(&mut self, store: &Store, runner: &str) -> Option<Instant> {
        let now = Instant::now();
        if self.next_check.is_none_or(|at| now >= at) {
            let wait = match store.run_daily_reminders(runner).await {
                Ok(Some(enqueued)) => {
                    tracing::info!(enqueued, "daily fee reminders run");
                    CHECK_EVERY
                }
                Ok(None) => CHECK_EVERY,
                Err(e) => {
                    tracing::warn!(error = %e, "daily fee reminders: cannot run the day");
                    CHECK_AFTER_ERROR
                }
            };
            self.next_check = Some(now + wait);
        }
        self.next_check
    }
}
