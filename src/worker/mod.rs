//! The worker loop: wake, find robots with work, claim, send, record, sleep until the next
//! thing can happen. Replicas share nothing but the database.

pub mod prune;
mod recorder;
mod robot;

use crate::metrics::Metrics;
use crate::rules::retry::RetryPolicy;
use crate::store::{Store, StoreError, Wake, Wakeups};
use crate::wecom::allowed_hosts::AllowedHosts;
use crate::wecom::client::WeComClient;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use robot::{Report, Served, Taken, Target};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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
    /// Tasks say here which robot they claimed for, as soon as they have: the loop leaves
    /// it out of other claims, and claims the destination's next robot beside it when this
    /// one took all it could (a pool's robots work side by side).
    taken: mpsc::UnboundedSender<Taken>,
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
    let (taken, mut taken_rx) = mpsc::unbounded_channel();
    if let Err(e) = store.forget_replica_notes(&config.worker_id).await {
        tracing::debug!(error = %e, "could not clear this replica's old notes");
    }
    let worker = Arc::new(Worker {
        recorder,
        taken,
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
        worker.wait(&mut state, &mut taken_rx, wake_at).await;
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
    tasks: JoinSet<Report>,
    /// What each running task looks at.
    busy: HashMap<tokio::task::Id, Target>,
    /// Robots this replica leaves alone for a while: it may not serve them, or claiming for
    /// them failed. One bad robot never spins the loop.
    held: HashMap<i32, Held>,
    wakeups: Option<Wakeups>,
    /// Destinations to claim for at the next tick: a NOTIFY named them, or a task asked.
    dirty: BTreeSet<String>,
    /// Destinations that had no free robot while this replica's own tasks ran (one of them
    /// may hold the robot): looked at again when a task ends.
    parked: BTreeSet<String>,
    /// The robot each running task claimed for (a destination's task learns it at its claim).
    serving: HashMap<tokio::task::Id, i32>,
    /// Destinations with more rows than the robot a task claimed takes: the next claim for
    /// them starts even while that task runs (see `Worker::taken`).
    spread: BTreeSet<String>,
    /// Tasks started that way: finding no free robot, they are done (not parked).
    spreading: HashSet<tokio::task::Id>,
    /// Looks promised for later by the tasks (rows left over, retries, pauses, holds).
    later: Vec<(Instant, Target)>,
    /// When to look at every robot again (`None`: at the next tick).
    scan_at: Option<Instant>,
    /// The last look at every robot stopped at the concurrency limit: look again when a
    /// task ends.
    scan_when_free: bool,
    /// When this replica next offers to do housekeeping (`None`: now).
    housekeeping_at: Option<Instant>,
    db_failures: usize,
    /// The once-a-day fee-reminder run (it queries the database at most every few seconds).
    daily: crate::reminders::daily::DailyScheduler,
}

impl LoopState {
    /// Robots a claim must leave out: those this replica's tasks serve, and those it holds.
    fn excluded(&self, now: Instant) -> Vec<i32> {
        let serving = self
            .busy
            .values()
            .filter_map(|t| match t {
                Target::Robot(id) => Some(*id),
                Target::Destination(_) => None,
            })
            .chain(self.serving.values().copied());
        let holding = self
            .held
            .iter()
            .filter(|(_, h)| h.until > now)
            .map(|(id, _)| *id);
        serving.chain(holding).collect()
    }

    /// A task claimed for a robot (and may want its destination's next robot claimed).
    /// Said by a task that has already ended, it is stale and dropped.
    fn note_taken(&mut self, taken: Taken) {
        if !self.busy.contains_key(&taken.task) {
            return;
        }
        self.serving.insert(taken.task, taken.robot_id);
        if let Some(destination) = taken.spread {
            self.spread.insert(destination.clone());
            self.dirty.insert(destination);
        }
    }

    fn serves_destination(&self, destination: &str) -> bool {
        self.busy
            .values()
            .any(|t| matches!(t, Target::Destination(d) if d == destination))
    }
}

/// Housekeeping (expiry, lease rescue) is offered at most this far apart (and a quarter of
/// the lease when that is shorter), and also exactly when the next lease or expiry is due.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// A tick that started nothing sleeps at least this long, so no state can spin the loop.
const MIN_IDLE: Duration = Duration::from_millis(20);
/// After a look at every robot that started work, the next one comes this much later (it is
/// the look that finds when delayed rows come due).
const SCAN_AFTER_WORK: Duration = Duration::from_secs(1);

/// The instant on this replica's clock for a time on the database's.
fn instant_of(at: DateTime<Utc>) -> Instant {
    Instant::now() + (at - Utc::now()).to_std().unwrap_or_default()
}

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

    /// Only what is known to need a look is looked at: destinations NOTIFY named, looks the
    /// tasks asked for. Every robot is looked at only now and then (`scan_at`), and the next
    /// wake-up is computed only when that look finds nothing to do.
    async fn try_tick(self: &Arc<Self>, state: &mut LoopState) -> Result<Instant, StoreError> {
        if state.wakeups.is_none() {
            state.wakeups = Some(self.store.wakeups().await?);
            // Signals sent while there was no listener are lost: look at everything.
            state.scan_at = None;
        }
        self.housekeeping(state).await?;
        let mut started = self.start_later(state);
        if state.scan_at.is_none_or(|at| at <= Instant::now()) {
            started += self.scan(state).await?;
        }
        started += self.start_dirty(state);
        let daily = state.daily.poll(&self.store, &self.config.worker_id).await;
        let now = Instant::now();
        let wake = state.scan_at.unwrap_or(now);
        let wake = daily.map_or(wake, |at| wake.min(at));
        let wake = state.housekeeping_at.map_or(wake, |at| wake.min(at));
        let wake = state
            .later
            .iter()
            .map(|(at, _)| *at)
            .fold(wake, Instant::min);
        let floor = if started == 0 { now + MIN_IDLE } else { now };
        Ok(wake.clamp(floor, now + self.config.max_idle))
    }

    /// Offer to do housekeeping when it is due; the replica that gets the turn learns when
    /// the next lease or expiry is due and offers again then.
    async fn housekeeping(&self, state: &mut LoopState) -> Result<(), StoreError> {
        if state.housekeeping_at.is_some_and(|at| at > Instant::now()) {
            return Ok(());
        }
        let every = (self.config.lease / 4).min(HOUSEKEEPING_EVERY);
        let mut next = Instant::now() + every;
        if let Some(run) = self.store.housekeeping_turn().await? {
            self.config.metrics.housekeeping(run.expired, run.rescued);
            if run.expired + run.rescued as u64 > 0 {
                tracing::info!(expired = run.expired, rescued = run.rescued, "housekeeping");
            }
            if let Some(due) = run.next_due {
                // A little after, so the database's clock has passed it too.
                next = next.min(instant_of(due) + MIN_IDLE);
            }
        }
        state.housekeeping_at = Some(next);
        Ok(())
    }

    fn free(&self, state: &LoopState) -> usize {
        self.config.concurrency.saturating_sub(state.tasks.len())
    }

    fn spawn(
        self: &Arc<Self>,
        state: &mut LoopState,
        target: Target,
        excluded: Vec<i32>,
    ) -> tokio::task::Id {
        let task = state
            .tasks
            .spawn(robot::serve(self.clone(), target.clone(), excluded));
        state.busy.insert(task.id(), target);
        task.id()
    }

    /// Start the looks promised for now: a robot's own, or its destination's.
    fn start_later(self: &Arc<Self>, state: &mut LoopState) -> usize {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut state.later)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        state.later = later;
        let mut started = 0;
        for (at, target) in due {
            match target {
                Target::Destination(d) => {
                    state.dirty.insert(d);
                }
                Target::Robot(id) if state.busy.values().any(|t| *t == Target::Robot(id)) => {}
                Target::Robot(id) if self.free(state) == 0 => {
                    state.later.push((at, Target::Robot(id)));
                }
                Target::Robot(id) => {
                    let excluded = state.excluded(now);
                    self.spawn(state, Target::Robot(id), excluded);
                    started += 1;
                }
            }
        }
        started
    }

    /// Claim for each destination a NOTIFY or a task named, as far as there is room.
    fn start_dirty(self: &Arc<Self>, state: &mut LoopState) -> usize {
        let excluded = state.excluded(Instant::now());
        let mut started = 0;
        while self.free(state) > 0 {
            let Some(destination) = state.dirty.pop_first() else {
                break;
            };
            let spread = state.spread.remove(&destination);
            if state.serves_destination(&destination) && !spread {
                state.parked.insert(destination);
                continue;
            }
            let task = self.spawn(state, Target::Destination(destination), excluded.clone());
            if spread {
                state.spreading.insert(task);
            }
            started += 1;
        }
        started
    }

    /// Look at every robot (the one query that does): start tasks for the due ones; when
    /// there are none, compute when something next may become possible.
    async fn scan(self: &Arc<Self>, state: &mut LoopState) -> Result<usize, StoreError> {
        let free = self.free(state);
        if free == 0 {
            state.scan_when_free = true;
            return Ok(0);
        }
        let now = Instant::now();
        let excluded = state.excluded(now);
        let due = self.store.due_robots(free as i64, &excluded).await?;
        state.scan_when_free = due.len() >= free;
        for robot_id in &due {
            self.spawn(state, Target::Robot(*robot_id), excluded.clone());
        }
        state.scan_at = Some(if due.is_empty() {
            let next = match self.store.next_wake(&excluded).await? {
                Some(at) => instant_of(at),
                None => now + self.config.max_idle,
            };
            next.clamp(now + MIN_IDLE, now + self.config.max_idle)
        } else {
            now + SCAN_AFTER_WORK.min(self.config.max_idle)
        });
        Ok(due.len())
    }

    /// Sleep until `wake_at`, a NOTIFY, a finished robot task, a task's word that it has
    /// claimed (`taken`), or shutdown.
    async fn wait(
        &self,
        state: &mut LoopState,
        taken: &mut mpsc::UnboundedReceiver<Taken>,
        wake_at: Instant,
    ) {
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
            Some(taken) = taken.recv() => state.note_taken(taken),
            notified = recv(wakeups) => match notified {
                Ok(Wake::Destinations(destinations)) => state.dirty.extend(destinations),
                Ok(Wake::Anything) => state.scan_at = None,
                Err(_) => state.wakeups = None,
            }
        }
    }

    /// Let in-flight sends finish (bounded by the grace period); claimed rows not yet sent
    /// are released by their tasks.
    async fn drain(&self, tasks: &mut JoinSet<Report>) {
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

async fn join_all(tasks: &mut JoinSet<Report>) {
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
    /// A finished (or panicked) task's robot can be served again, unless it has to wait; the
    /// looks it asked for are scheduled, and parked destinations get another look.
    async fn forget(
        &self,
        state: &mut LoopState,
        done: Result<(tokio::task::Id, Report), tokio::task::JoinError>,
    ) {
        let task = match &done {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let target = state.busy.remove(&task);
        state.serving.remove(&task);
        let spreading = state.spreading.remove(&task);
        let report = match done {
            Ok((_, report)) => report,
            Err(e) => {
                tracing::error!(error = %e, "a robot task failed; its rows are released when their lease ends");
                if let Some(Target::Robot(robot_id)) = target {
                    self.hold_troubled(state, robot_id, format!("the robot's task failed: {e}"))
                        .await;
                }
                return;
            }
        };
        state.dirty.append(&mut state.parked);
        if state.scan_when_free {
            state.scan_at = None;
        }
        let now = Utc::now();
        for (at, again) in report.again {
            match again {
                Target::Destination(d) if at <= now => {
                    state.dirty.insert(d);
                }
                again => state.later.push((instant_of(at), again)),
            }
        }
        match (report.served, report.robot_id) {
            (Served::Done, Some(robot_id)) => {
                state.held.remove(&robot_id);
            }
            (Served::Skipped(reason), Some(robot_id)) => {
                self.hold_skipped(state, robot_id, reason).await
            }
            (Served::Trouble(reason), Some(robot_id)) => {
                self.hold_troubled(state, robot_id, reason).await
            }
            (Served::NoRobot, _) if !state.tasks.is_empty() && !spreading => {
                if let Some(Target::Destination(d)) = target {
                    state.parked.insert(d);
                }
            }
            (Served::Trouble(reason), None) => {
                tracing::warn!(error = %reason, "claim failed; looking at every robot soon");
                state.scan_at = Some(Instant::now() + MIN_IDLE);
            }
            _ => {}
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
        let until = Instant::now() + SKIP_RECHECK;
        state.later.push((until, Target::Robot(robot_id)));
        state.held.insert(
            robot_id,
            Held {
                until,
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
        let until = Instant::now() + back_off;
        state.later.push((until, Target::Robot(robot_id)));
        state.held.insert(
            robot_id,
            Held {
                until,
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

async fn recv(wakeups: Option<&mut Wakeups>) -> Result<Wake, StoreError> {
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
