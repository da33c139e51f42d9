//! The worker loop: wake, find robots with work, claim, send, record, sleep until the next
//! thing can happen. Replicas share nothing but the database.

pub mod prune;
mod recorder;
mod robot;

use crate::metrics::Metrics;
use crate::rules::retry::RetryPolicy;
use crate::store::{Store, StoreError, Wakeups};
use crate::wecom::allowed_hosts::AllowedHosts;
use crate::wecom::client::WeComClient;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use robot::Served;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a replica behaves; `run`'s flags fill it.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names the replica in logs and in `locked_by`.
    pub worker_id: String,
    pub retry: RetryPolicy,
    /// How long a claimed row is ours before another replica may rescue it.
    pub lease: Duration,
    /// At most this many rows per claim (and so per burst of one robot).
    pub batch_size: u32,
    /// Robots served at once by this replica.
    pub concurrency: usize,
    /// On SIGTERM, how long in-flight sends may take before the rest is abandoned to leases.
    pub shutdown_grace: Duration,
    /// The longest sleep without a reason (NOTIFYs can be lost while reconnecting).
    pub max_idle: Duration,
    pub allowed_hosts: AllowedHosts,
    /// Where this replica counts its sends (off unless `run --metrics-addr`).
    pub metrics: Metrics,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: default_worker_id(),
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(120),
            batch_size: 20,
            concurrency: 64,
            shutdown_grace: Duration::from_secs(15),
            max_idle: Duration::from_secs(30),
            allowed_hosts: AllowedHosts::default(),
            metrics: Metrics::off(),
        }
    }
}

/// `host-pid`: unique enough to tell replicas apart in `locked_by`.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// What every robot task shares.
pub(crate) struct Worker {
    pub(crate) store: Store,
    pub(crate) client: WeComClient,
    pub(crate) config: WorkerConfig,
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: sends still in flight are given up
    /// (their rows' leases expire) and everything else claimed is released.
    pub(crate) abandon: CancellationToken,
    /// Writes sent messages in group commits.
    pub(crate) recorder: recorder::Recorder,
}

/// Run one replica until `shutdown` is cancelled; then finish or release what it claimed.
pub async fn run(
    store: Store,
    client: WeComClient,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let abandon = CancellationToken::new();
    let recorder = recorder::Recorder::start(store.clone());
    if let Err(e) = store.forget_replica_notes(&config.worker_id).await {
        tracing::debug!(error = %e, "could not clear this replica's old notes");
    }
    let worker = Arc::new(Worker {
        recorder,
        store,
        client,
        config,
        shutdown,
        abandon,
    });
    tracing::info!(worker_id = %worker.config.worker_id, "worker started");
    // Its own task, batch by batch: pruning never delays a claim or a send.
    let pruning = tokio::spawn(prune::daily(
        worker.store.clone(),
        worker.config.worker_id.clone(),
        worker.shutdown.clone(),
    ));
    let mut state = LoopState::default();
    while !worker.shutdown.is_cancelled() {
        let wake_at = worker.tick(&mut state).await;
        worker.wait(&mut state, wake_at).await;
    }
    worker.drain(&mut state.tasks).await;
    let _ = pruning.await;
    let _ = worker
        .store
        .forget_replica_notes(&worker.config.worker_id)
        .await;
    tracing::info!(worker_id = %worker.config.worker_id, "worker stopped");
    Ok(())
}

#[derive(Default)]
struct LoopState {
    tasks: JoinSet<(i32, Served)>,
    /// The robot each running task serves.
    busy: HashMap<tokio::task::Id, i32>,
    /// Robots this replica leaves alone for a while: it may not serve them, or claiming for
    /// them failed. One bad robot never spins the loop.
    held: HashMap<i32, Held>,
    wakeups: Option<Wakeups>,
    last_housekeeping: Option<Instant>,
    db_failures: usize,
    /// The once-a-day fee-reminder run (it queries the database at most every few seconds).
    daily: crate::reminders::daily::DailyScheduler,
}

/// Housekeeping (expiry, lease rescue) runs at most this often.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(250);
/// A tick that started nothing sleeps at least this long, so no state can spin the loop.
const MIN_IDLE: Duration = Duration::from_millis(20);

impl Worker {
    /// One pass: housekeeping, start tasks for due robots; returns when to look again.
    async fn tick(self: &Arc<Self>, state: &mut LoopState) -> Instant {
        match self.try_tick(state).await {
            Ok(wake_at) => {
                state.db_failures = 0;
                wake_at
            }
            Err(e) => {
                state.db_failures += 1;
                let delay = db_backoff(state.db_failures);
                tracing::warn!(error = %e, retry_in = ?delay, "database unavailable; nothing is lost, retrying");
                state.wakeups = None;
                Instant::now() + delay
            }
        }
    }

    async fn try_tick(self: &Arc<Self>, state: &mut LoopState) -> Result<Instant, StoreError> {
        if state.wakeups.is_none() {
            state.wakeups = Some(self.store.wakeups().await?);
        }
        if state
            .last_housekeeping
            .is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY)
        {
            let (expired, rescued) = self.store.housekeeping().await?;
            self.config.metrics.housekeeping(expired, rescued);
            if expired + rescued as u64 > 0 {
                tracing::info!(expired, rescued, "housekeeping");
            }
            state.last_housekeeping = Some(Instant::now());
        }
        let busy: Vec<i32> = state.busy.values().copied().collect();
        let free = self.config.concurrency.saturating_sub(busy.len());
        let now = Instant::now();
        let excluded: Vec<i32> = busy
            .iter()
            .copied()
            .chain(
                state
                    .held
                    .iter()
                    .filter(|(_, h)| h.until > now)
                    .map(|(id, _)| *id),
            )
            .collect();
        let mut started = 0;
        if free > 0 {
            for robot_id in self.store.due_robots(free as i64, &excluded).await? {
                let task = state.tasks.spawn(robot::serve(self.clone(), robot_id));
                state.busy.insert(task.id(), robot_id);
                started += 1;
            }
        }
        let daily = state.daily.poll(&self.store, &self.config.worker_id).await;
        let now = Instant::now();
        let wake = match self.store.next_wake(&excluded).await? {
            Some(at) => now + (at - Utc::now()).to_std().unwrap_or_default(),
            None => now + self.config.max_idle,
        };
        let wake = daily.map_or(wake, |at| wake.min(at));
        let wake = state
            .held
            .values()
            .map(|h| h.until)
            .filter(|until| *until > now)
            .fold(wake, Instant::min);
        let floor = if started == 0 { now + MIN_IDLE } else { now };
        Ok(wake.clamp(floor, now + self.config.max_idle))
    }

    /// Sleep until `wake_at`, a NOTIFY, a finished robot task, or shutdown.
    async fn wait(&self, state: &mut LoopState, wake_at: Instant) {
        let wakeups = state.wakeups.as_mut();
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
            Some(done) = state.tasks.join_next_with_id(), if !state.tasks.is_empty() => {
                self.forget(state, done).await;
                while let Some(done) = state.tasks.try_join_next_with_id() {
                    self.forget(state, done).await;
                }
            }
            notified = recv(wakeups) => {
                if notified.is_err() {
                    state.wakeups = None;
                }
            }
        }
    }

    /// Let in-flight sends finish (bounded by the grace period); claimed rows not yet sent
    /// are released by their tasks.
    async fn drain(&self, tasks: &mut JoinSet<(i32, Served)>) {
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "shutting down: finishing in-flight sends");
        }
        if tokio::time::timeout(self.config.shutdown_grace, join_all(tasks))
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            "shutdown grace period over: giving up sends still in flight (their leases expire and another replica retries them); releasing the rest"
        );
        self.abandon.cancel();
        if tokio::time::timeout(RELEASE_GRACE, join_all(tasks))
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
}

async fn join_all(tasks: &mut JoinSet<(i32, Served)>) {
    while tasks.join_next().await.is_some() {}
}

/// After the grace period, how long tasks get to hand back their unsent rows.
const RELEASE_GRACE: Duration = Duration::from_secs(5);

/// A robot this replica leaves alone until `until`.
struct Held {
    until: Instant,
    /// Consecutive failed claims (0 for a robot skipped by this replica's configuration).
    failures: u32,
    reason: String,
}

/// How long a replica leaves a robot alone that its own configuration forbids before it
/// looks again (the robot's URL may have been fixed).
const SKIP_RECHECK: Duration = Duration::from_secs(60);

impl Worker {
    /// A finished (or panicked) task's robot can be served again, unless it has to wait.
    async fn forget(
        &self,
        state: &mut LoopState,
        done: Result<(tokio::task::Id, (i32, Served)), tokio::task::JoinError>,
    ) {
        let (id, robot_id, served) = match done {
            Ok((id, (robot_id, served))) => (id, robot_id, served),
            Err(e) => {
                tracing::error!(error = %e, "a robot task failed; its rows are released when their lease ends");
                if let Some(robot_id) = state.busy.remove(&e.id()) {
                    self.hold_troubled(state, robot_id, format!("the robot's task failed: {e}"))
                        .await;
                }
                return;
            }
        };
        state.busy.remove(&id);
        match served {
            Served::Done => {
                state.held.remove(&robot_id);
            }
            Served::Skipped(reason) => self.hold_skipped(state, robot_id, reason).await,
            Served::Trouble(reason) => self.hold_troubled(state, robot_id, reason).await,
        }
    }

    /// This replica may not serve `robot_id`: say so once, note it for `status`, look again
    /// in a minute. Nothing about the robot changes for other replicas.
    async fn hold_skipped(&self, state: &mut LoopState, robot_id: i32, reason: String) {
        let known = state
            .held
            .get(&robot_id)
            .is_some_and(|h| h.reason == reason);
        if !known {
            tracing::warn!(robot_id, %reason, "this replica skips the robot (its own configuration); other replicas may serve it");
        }
        let note = format!("skipped by this replica: {reason}");
        if let Err(e) = self
            .store
            .note_replica_skip(&self.config.worker_id, robot_id, &note)
            .await
        {
            tracing::debug!(error = %e, "could not note the skip for status");
        }
        state.held.insert(
            robot_id,
            Held {
                until: Instant::now() + SKIP_RECHECK,
                failures: 0,
                reason,
            },
        );
    }

    /// Claiming for `robot_id` failed: back off (doubling to a minute), say why in the
    /// robot's state so `status` shows it, and go on with the others.
    async fn hold_troubled(&self, state: &mut LoopState, robot_id: i32, reason: String) {
        let failures = state.held.get(&robot_id).map_or(0, |h| h.failures) + 1;
        let back_off = trouble_backoff(failures);
        tracing::warn!(robot_id, error = %reason, retry_in = ?back_off, "claim failed; this robot waits, the others go on");
        let why = format!("the worker could not claim for this robot: {reason}");
        if let Err(e) = self
            .store
            .note_robot_trouble(robot_id, &why, back_off)
            .await
        {
            tracing::debug!(error = %e, "could not note the trouble for status");
        }
        state.held.insert(
            robot_id,
            Held {
                until: Instant::now() + back_off,
                failures,
                reason,
            },
        );
    }
}

/// 1 s doubling to a minute.
fn trouble_backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

async fn recv(wakeups: Option<&mut Wakeups>) -> Result<(), StoreError> {
    match wakeups {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Delay before the `n`-th consecutive retry of a database operation: 100 ms doubling to 10 s.
pub(crate) fn db_backoff(n: usize) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
        .nth(n.saturating_sub(1))
        .unwrap_or(Duration::from_secs(10))
}
