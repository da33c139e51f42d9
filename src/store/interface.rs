//! The one door to storage. [`Store`] picks its backend from the `DATABASE_URL` scheme and
//! hands each operation to it; a backend is a module with the same operations, so adding one
//! is one more arm in [`on_backend!`] and the conformance suite (`tests/store_conformance.rs`)
//! proves it behaves the same.

use super::mysql::{self, MySqlStore};
use super::postgres::{self, PgStore};
use super::{
    ClaimResult, Claimed, ClaimedRobot, DestinationCounts, FailedFilter, FailedRow, Finish,
    HousekeepingRun, NamedRobot, Pruned, Result, RobotReport, SentRecord, StoreError,
};
use crate::reminders::{DayPlan, EnqueueReport};
use crate::rules::decide::RobotSnapshot;
use crate::wecom::robot_url::RobotUrl;
use chrono::{DateTime, NaiveDate, Utc};
use std::time::Duration;
use uuid::Uuid;

/// The database, whichever backend `DATABASE_URL` names. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub enum Store {
    /// `postgres://` or `postgresql://`.
    Postgres(PgStore),
    /// `mysql://` or `mariadb://` (MySQL 8.0, MariaDB 10.6+).
    MySql(MySqlStore),
}

/// Calls the same operation on whichever backend `$store` is, converting its errors.
macro_rules! on_backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Postgres($backend) => Ok($call.await?),
            Store::MySql($backend) => Ok($call.await?),
        }
    };
}

/// Which backend a `DATABASE_URL` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    MySql,
}

/// Which backend a `DATABASE_URL` asks for, or an error that says what a URL looks like.
fn scheme(url: &str) -> Result<Backend> {
    match url.split("://").next().unwrap_or_default() {
        "postgres" | "postgresql" => Ok(Backend::Postgres),
        "mysql" | "mariadb" => Ok(Backend::MySql),
        _ => Err(StoreError::Url(format!(
            "DATABASE_URL must look like postgres://user:password@host:5432/database \
             or mysql://user:password@host:3306/database (got {})",
            postgres::display_url(url)
        ))),
    }
}

impl Store {
    /// A pool that connects on first use and reconnects by itself, so a worker started while
    /// the database is down waits for it instead of exiting.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Store> {
        Ok(match scheme(url)? {
            Backend::Postgres => Store::Postgres(PgStore::connect_lazy(url, max_connections)?),
            Backend::MySql => Store::MySql(MySqlStore::connect_lazy(url, max_connections)?),
        })
    }

    /// Connect now, or say plainly why not (for one-shot commands).
    pub async fn connect(url: &str) -> Result<Store> {
        Ok(match scheme(url)? {
            Backend::Postgres => Store::Postgres(PgStore::connect(url).await?),
            Backend::MySql => Store::MySql(MySqlStore::connect(url).await?),
        })
    }

    /// The PostgreSQL pool, for the demo's example school and the benchmarks, which are
    /// PostgreSQL showcases; `None` on another backend. The worker, the CLI and the reminders
    /// never use it.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match self {
            Store::Postgres(s) => Some(s.pool()),
            Store::MySql(_) => None,
        }
    }

    /// The MySQL pool, for this backend's tests; `None` on another backend.
    pub fn mysql_pool(&self) -> Option<&sqlx::MySqlPool> {
        match self {
            Store::MySql(s) => Some(s.pool()),
            Store::Postgres(_) => None,
        }
    }

    /// Check what it would adopt, then apply the migrations; a second run does nothing.
    pub async fn migrate(&self) -> Result<()> {
        on_backend!(self, s => s.migrate())
    }

    /// An error that says what to do when the schema is missing.
    pub async fn check_schema(&self) -> Result<()> {
        on_backend!(self, s => s.check_schema())
    }

    /// One cheap round trip (`SELECT 1`): whether this replica can reach its database now.
    pub async fn ping(&self) -> Result<()> {
        on_backend!(self, s => s.ping())
    }

    /// A source of "something may have changed" signals for the worker's loop.
    pub async fn wakeups(&self) -> Result<Wakeups> {
        match self {
            Store::Postgres(s) => Ok(Wakeups::Postgres(s.wakeups().await?)),
            Store::MySql(s) => Ok(Wakeups::Poll(s.poll())),
        }
    }

    /// Up to `limit` robots worth a claim attempt now, most overdue first, leaving out
    /// `excluded` (robots this replica serves or holds back).
    pub async fn due_robots(&self, limit: i64, excluded: &[i32]) -> Result<Vec<i32>> {
        on_backend!(self, s => s.due_robots(limit, excluded))
    }

    /// Decide for the most overdue due robot of `destination` that no one else is deciding
    /// for (leaving out `excluded`), and claim what the rules allow, in one short
    /// transaction. `None`: no such robot right now.
    pub async fn claim_for_destination(
        &self,
        destination: &str,
        excluded: &[i32],
        worker_id: &str,
        lease: Duration,
        plan: impl Fn(&RobotSnapshot, &RobotUrl, DateTime<Utc>) -> crate::rules::decide::Decision,
    ) -> Result<Option<(i32, ClaimResult)>> {
        on_backend!(self, s => s.claim_for_destination(destination, excluded, worker_id, lease, plan))
    }

    /// When to look again if nothing signals first (`None`: nothing pending).
    pub async fn next_wake(&self, excluded: &[i32]) -> Result<Option<DateTime<Utc>>> {
        on_backend!(self, s => s.next_wake(excluded))
    }

    /// Decide for one robot with `plan` and claim what it allows, in one short transaction.
    pub async fn claim(
        &self,
        robot_id: i32,
        worker_id: &str,
        lease: Duration,
        plan: impl Fn(&RobotSnapshot, &RobotUrl, DateTime<Utc>) -> crate::rules::decide::Decision,
    ) -> Result<ClaimResult> {
        on_backend!(self, s => s.claim(robot_id, worker_id, lease, plan))
    }

    /// Record how one send ended; `false` if the claim no longer held the row.
    pub async fn finish(
        &self,
        robot: &ClaimedRobot,
        row: &Claimed,
        outcome: &Finish,
    ) -> Result<bool> {
        on_backend!(self, s => s.finish(robot, row, outcome))
    }

    /// Record messages WeCom accepted, many at once; returns the ids recorded.
    pub async fn record_sent(&self, sent: &[SentRecord]) -> Result<Vec<Uuid>> {
        on_backend!(self, s => s.record_sent(sent))
    }

    /// Give back rows a claim holds but will not send, with their rate-limit slots.
    pub async fn release(&self, rows: &[Claimed]) -> Result<()> {
        on_backend!(self, s => s.release(rows))
    }

    /// Expire overdue rows and rescue expired leases; returns (expired, rescued). Nothing
    /// is done while another replica is doing it (both are then 0).
    pub async fn housekeeping(&self) -> Result<(u64, i64)> {
        Ok(self
            .housekeeping_turn()
            .await?
            .map_or((0, 0), |run| (run.expired, run.rescued)))
    }

    /// Housekeeping by one replica at a time: `None` when another replica is doing it right
    /// now; otherwise what was done and when it next has something to do.
    pub async fn housekeeping_turn(&self) -> Result<Option<HousekeepingRun>> {
        on_backend!(self, s => s.housekeeping())
    }

    /// Say why a robot could not be served and leave it alone for `back_off` (every replica).
    pub async fn note_robot_trouble(
        &self,
        robot_id: i32,
        reason: &str,
        back_off: Duration,
    ) -> Result<()> {
        on_backend!(self, s => s.note_robot_trouble(robot_id, reason, back_off))
    }

    /// Record that replica `worker_id` skips a robot, and why (shown by `status`).
    pub async fn note_replica_skip(
        &self,
        worker_id: &str,
        robot_id: i32,
        note: &str,
    ) -> Result<()> {
        on_backend!(self, s => s.note_replica_skip(worker_id, robot_id, note))
    }

    /// Forget what replica `worker_id` said it skips.
    pub async fn forget_replica_notes(&self, worker_id: &str) -> Result<()> {
        on_backend!(self, s => s.forget_replica_notes(worker_id))
    }

    /// The robot `send-test NAME` means.
    pub async fn find_robot(&self, name: &str) -> Result<Option<NamedRobot>> {
        on_backend!(self, s => s.find_robot(name))
    }

    /// Reserve one send against a robot's limit if `has_budget` agrees (`Err(when)`: when one
    /// frees); `Ok(None)`: another replica holds the robot right now.
    pub async fn reserve_one(
        &self,
        robot_id: i32,
        has_budget: impl FnOnce(&RobotSnapshot, DateTime<Utc>) -> std::result::Result<(), DateTime<Utc>>,
    ) -> Result<std::result::Result<Option<i64>, DateTime<Utc>>> {
        on_backend!(self, s => s.reserve_one(robot_id, has_budget))
    }

    /// Record a `send-test` send: its log row, the slot's real time, the robot's counters.
    pub async fn record_test_send(
        &self,
        robot: &NamedRobot,
        slot_id: i64,
        body: &serde_json::Value,
        errcode: Option<i64>,
        error: Option<&str>,
    ) -> Result<()> {
        on_backend!(self, s => s.record_test_send(robot, slot_id, body, errcode, error))
    }

    /// Per destination: rows by status and the latest problem.
    pub async fn destination_counts(&self) -> Result<Vec<DestinationCounts>> {
        on_backend!(self, s => s.destination_counts())
    }

    /// Every robot as `status` shows it; one that cannot be read says why.
    pub async fn robot_reports(&self) -> Result<Vec<RobotReport>> {
        on_backend!(self, s => s.robot_reports())
    }

    /// Stored settings the worker or the reminders cannot use, one sentence each.
    pub async fn settings_problems(&self) -> Result<Vec<String>> {
        on_backend!(self, s => s.settings_problems())
    }

    /// What replicas skip because of their own configuration, one sentence each.
    pub async fn replica_notes(&self) -> Result<Vec<String>> {
        on_backend!(self, s => s.replica_notes())
    }

    /// The fee reminders of one local day (today in the deployment's zone by default).
    pub async fn reminder_plan(&self, date: Option<NaiveDate>) -> Result<DayPlan> {
        on_backend!(self, s => s.reminder_plan(date))
    }

    /// Enqueue the day's fee reminders now; what went where.
    pub async fn enqueue_reminders(&self, date: Option<NaiveDate>) -> Result<EnqueueReport> {
        on_backend!(self, s => s.enqueue_reminders(date))
    }

    /// Run today's reminders if the database's rule says they are due and no other runner
    /// has them (`None` otherwise); how many were enqueued.
    pub async fn run_daily_reminders(&self, runner: &str) -> Result<Option<i32>> {
        on_backend!(self, s => s.run_daily_reminders(runner))
    }

    /// Delete one batch (at most `limit`) of finished rows (sent, failed, cancelled, expired)
    /// whose `finished_at` is before `cutoff`, oldest first, with their log rows, in one short
    /// transaction; rows another transaction holds are left for the next batch.
    pub async fn prune_batch(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<Pruned> {
        on_backend!(self, s => s.prune_batch(cutoff, limit))
    }

    /// What pruning everything finished before `cutoff` would delete (`prune --dry-run`).
    pub async fn prune_count(&self, cutoff: DateTime<Utc>) -> Result<Pruned> {
        on_backend!(self, s => s.prune_count(cutoff))
    }

    /// The `failed` rows `filter` matches, oldest failure first (`retry --dry-run`).
    pub async fn failed_rows(&self, filter: &FailedFilter) -> Result<Vec<FailedRow>> {
        on_backend!(self, s => s.failed_rows(filter))
    }

    /// Requeue the `failed` rows `filter` matches the way a person does (attempts afresh),
    /// in one transaction; returns them as they were.
    pub async fn requeue_failed(&self, filter: &FailedFilter) -> Result<Vec<FailedRow>> {
        on_backend!(self, s => s.requeue_failed(filter))
    }

    /// The status of each of `ids` that exists (for saying why an id was not requeued).
    pub async fn statuses_of(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>> {
        on_backend!(self, s => s.statuses_of(ids))
    }

    /// The `prune_after_days` setting as stored (`None`: no such row).
    pub async fn prune_setting(&self) -> Result<Option<String>> {
        on_backend!(self, s => s.prune_setting())
    }

    /// Claim today's (UTC) daily prune for `runner`: `true` for exactly one caller a day,
    /// across all replicas.
    pub async fn claim_daily_prune(&self, runner: &str) -> Result<bool> {
        on_backend!(self, s => s.claim_daily_prune(runner))
    }

    /// Record how today's daily prune ended (`wecom_daily_runs`, job `prune`).
    pub async fn finish_daily_prune(
        &self,
        runner: &str,
        messages: u64,
        error: Option<&str>,
    ) -> Result<()> {
        on_backend!(self, s => s.finish_daily_prune(runner, messages, error))
    }
}

/// Signals that something may have changed (a row was written, a robot was edited). Some can
/// be lost (while reconnecting): the worker also wakes on its own timer.
pub enum Wakeups {
    /// PostgreSQL: one replica listens to the outbox channel, the others stand by and look
    /// every few seconds whether anything is pending ([`postgres::PgWakeups`]).
    Postgres(postgres::PgWakeups),
    /// MySQL has no LISTEN: a cheap indexed poll, every 100 ms while the outbox changes,
    /// backing off to every 2 s while it does not (`mysql::Poll`).
    Poll(mysql::Poll),
}

/// What a wake-up says may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Rows were written (or robots changed) for these destinations, and only these.
    Destinations(Vec<String>),
    /// Anything may have changed (the poll saw a difference, rows are pending while a
    /// replica stands by, or signals may have been lost while reconnecting): look at every
    /// robot.
    Anything,
}

/// After the first notification, how long to gather the ones that follow. Zero: what has
/// already arrived is taken with it (a burst wakes the worker once), but nothing waits for
/// more; a 2 ms wait cost 2–3 ms of p50 latency and saved no transactions (BENCHMARKS.md).
const DEBOUNCE: Duration = Duration::ZERO;

impl Wakeups {
    /// Wait for the next signal, with every signal that arrives within [`DEBOUNCE`] of it;
    /// an error means the source is gone and must be made again.
    pub async fn next(&mut self) -> Result<Wake> {
        match self {
            Wakeups::Postgres(wakeups) => {
                let postgres::Heard::Destination(first) = wakeups.next().await? else {
                    return Ok(Wake::Anything);
                };
                let mut destinations = vec![first];
                let until = tokio::time::Instant::now() + DEBOUNCE;
                while let Ok(next) = tokio::time::timeout_at(until, wakeups.next()).await {
                    match next? {
                        postgres::Heard::Destination(d) => destinations.push(d),
                        postgres::Heard::Everything => return Ok(Wake::Anything),
                    }
                }
                destinations.sort_unstable();
                destinations.dedup();
                Ok(Wake::Destinations(destinations))
            }
            Wakeups::Poll(poll) => {
                poll.next().await?;
                Ok(Wake::Anything)
            }
        }
    }
}
