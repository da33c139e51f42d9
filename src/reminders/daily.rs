//! The worker's side of the once-a-day run: every few seconds, read the schedule and the run
//! record; when the rule (`schedule::due_date`) says today's run is due, ask PostgreSQL to run
//! it (`wecom_run_daily_reminders`), which takes an advisory lock, re-checks, enqueues and
//! records the day in one transaction. So across any number of replicas (and pg_cron) the day
//! runs exactly once, and a day on which every replica was down at the run time is caught up
//! as soon as one is back.

use super::schedule::{self, History, Schedule};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::time::Duration;
use tokio::time::Instant;

/// How often the worker looks at the schedule (one small query).
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// After an error (e.g. migrations not applied yet), look again only this much later.
const CHECK_AFTER_ERROR: Duration = Duration::from_secs(60);

/// Why the daily run cannot be planned.
#[derive(Debug, thiserror::Error)]
enum DailyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setting(String),
}

/// The schedule to follow (None: the run is off, or there is no view to read) and the history.
async fn load(store: &Store) -> Result<(Option<Schedule>, History), DailyError> {
    let row = store.daily_state().await?;
    let history = History {
        last_done: row.last_done,
        last_failure: row.failed_day.zip(row.failed_at),
    };
    let zone: Tz = row.zone.parse().map_err(|_| {
        DailyError::Setting(format!(
            "wecom_settings.default_timezone {:?} is not an IANA zone",
            row.zone
        ))
    })?;
    let at = match schedule::parse_run_time(&row.run_time) {
        Some(at) => at,
        None if row.run_time.trim().eq_ignore_ascii_case("off") => return Ok((None, history)),
        None => {
            return Err(DailyError::Setting(format!(
                "wecom_settings.reminder_run_time {:?} is not a time like 09:00 (or off)",
                row.run_time
            )))
        }
    };
    let schedule = row.has_view.then_some(Schedule { zone, at });
    Ok((schedule, history))
}

/// One replica's view of the daily run: when to look at the database again and when the next
/// run is due, so the worker's loop can sleep until then.
#[derive(Debug, Default)]
pub struct DailyScheduler {
    next_check: Option<Instant>,
    next_run: Option<DateTime<Utc>>,
}

impl DailyScheduler {
    /// Called on every worker tick; touches the database at most every `CHECK_EVERY`. Returns
    /// when the worker should wake for the next run (never sooner than the next check), or
    /// `None` when no run is scheduled. Errors are logged, never returned: a problem with the
    /// reminders must not stop delivery.
    pub async fn poll(&mut self, store: &Store, runner: &str) -> Option<Instant> {
        let now = Instant::now();
        if self.next_check.is_none_or(|at| now >= at) {
            let (next_run, wait) = match check(store, runner).await {
                Ok(next_run) => (next_run, CHECK_EVERY),
                Err(e) => {
                    tracing::warn!(error = %e, "daily fee reminders: cannot check the schedule");
                    (None, CHECK_AFTER_ERROR)
                }
            };
            self.next_run = next_run;
            self.next_check = Some(now + wait);
        }
        let next_check = self.next_check?;
        let run_in = (self.next_run? - Utc::now()).to_std().unwrap_or_default();
        Some((Instant::now() + run_in).max(next_check))
    }
}

/// Look at the schedule, run the day if due; returns when the next run is due.
async fn check(store: &Store, runner: &str) -> Result<Option<DateTime<Utc>>, DailyError> {
    let (Some(schedule), mut history) = load(store).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    if let Some(day) = schedule::due_date(now, &schedule, &history) {
        match store.run_daily_reminders(runner).await? {
            Some(n) => {
                tracing::info!(%day, enqueued = n, "daily fee reminders run");
                history.last_done = Some(day);
            }
            None => tracing::debug!(%day, "daily fee reminders: another runner has it"),
        }
        return Ok(Some(schedule::next_run(Utc::now(), &schedule, &history)));
    }
    Ok(Some(schedule::next_run(now, &schedule, &history)))
}
