//! Serving one robot: claim what the rules allow, send it in order, record each outcome.
//! The claim's transaction is over before the first HTTP request starts.

use super::{db_backoff, Worker};
use crate::rules::decide::{decide, Decision, RobotSnapshot};
use crate::rules::outcome::{classify, Outcome, Reply};
use crate::rules::retry::pause_after_rate_limited;
use crate::store::{ClaimResult, Claimed, ClaimedRobot, Finish, SentRecord};
use crate::wecom::robot_url::RobotUrl;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How serving a robot went, for the loop's book-keeping.
#[derive(Debug)]
pub(super) enum Served {
    /// Claimed and sent, or nothing to do.
    Done,
    /// This replica may not serve the robot (its own configuration); look again later.
    Skipped(String),
    /// The claim failed (the database is away, or the robot's row cannot be read); back off.
    Trouble(String),
    /// A destination had no due robot free to decide for (another replica, or one of this
    /// replica's own tasks, is at it).
    NoRobot,
}

/// A task's word to the loop, as soon as it has claimed: which robot it serves, and whether
/// the robot took all it could (its destination's next robot may take more, now).
#[derive(Debug)]
pub(super) struct Taken {
    pub(super) task: tokio::task::Id,
    pub(super) robot_id: i32,
    pub(super) spread: Option<String>,
}

/// What a task is asked to look at: one robot (it came due), or a destination (rows were
/// written for it): its most overdue due robot that no one else is deciding for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Robot(i32),
    Destination(String),
}

/// What a task tells the loop when it ends.
#[derive(Debug)]
pub(super) struct Report {
    /// The robot it decided for, if it got one.
    pub(super) robot_id: Option<i32>,
    pub(super) served: Served,
    /// Looks this task knows are needed later (rows left, retries, pauses), and when: the
    /// loop needs no scan of every robot to find them.
    pub(super) again: Vec<(DateTime<Utc>, Target)>,
}

impl Report {
    fn of(robot_id: Option<i32>, served: Served) -> Report {
        Report {
            robot_id,
            served,
            again: Vec::new(),
        }
    }
}

/// Claim a batch for `target` (leaving out the robots in `excluded`) and send it.
#[tracing::instrument(name = "robot", skip(worker, excluded))]
pub(super) async fn serve(worker: Arc<Worker>, target: Target, excluded: Vec<i32>) -> Report {
    let plan = |snapshot: &RobotSnapshot, url: &RobotUrl, now: DateTime<Utc>| {
        worker.plan(snapshot, url, now)
    };
    let (id, lease) = (&worker.config.worker_id, worker.config.lease);
    // The lease is counted from before the claim, so this replica's idea of when it ends is
    // never later than the database's.
    let lease_end = Instant::now() + lease;
    let claimed = match &target {
        Target::Robot(robot_id) => worker
            .store
            .claim(*robot_id, id, lease, plan)
            .await
            .map(|r| Some((*robot_id, r))),
        Target::Destination(d) => {
            worker
                .store
                .claim_for_destination(d, &excluded, id, lease, plan)
                .await
        }
    };
    let (robot_id, claimed) = match claimed {
        Ok(Some((robot_id, result))) => (robot_id, result),
        Ok(None) => return Report::of(None, Served::NoRobot),
        Err(e) => {
            let robot_id = match target {
                Target::Robot(robot_id) => Some(robot_id),
                Target::Destination(_) => None,
            };
            return Report::of(robot_id, Served::Trouble(e.to_string()));
        }
    };
    let mut report = Report::of(Some(robot_id), Served::Done);
    // A destination's other robots may serve what this one cannot.
    let others = match &target {
        Target::Destination(d) => Some((Utc::now(), Target::Destination(d.clone()))),
        Target::Robot(_) => None,
    };
    match claimed {
        ClaimResult::Claimed(robot, rows) if !rows.is_empty() => {
            tracing::debug!(robot = %robot.name, rows = rows.len(), "claimed");
            if let Some(at) = robot.more_at {
                report.again.push((at, Target::Robot(robot.id)));
            }
            let _ = worker.taken.send(Taken {
                task: tokio::task::id(),
                robot_id: robot.id,
                // Only a robot that must now wait needs its pool's others: one free again at
                // once goes on by itself (its look `again`).
                spread: robot
                    .more_at
                    .filter(|at| *at > Utc::now())
                    .map(|_| robot.destination.clone()),
            });
            worker
                .send_batch(&robot, rows, lease_end, &mut report.again)
                .await;
        }
        ClaimResult::Unusable(reason) => {
            tracing::warn!(robot_id, %reason, "robot skipped until its configuration is fixed");
            report.again.extend(others);
        }
        ClaimResult::Skipped(reason) => {
            report.served = Served::Skipped(reason);
            report.again.extend(others);
        }
        ClaimResult::Waiting(until) => {
            report.again.push((until, Target::Robot(robot_id)));
            report.again.extend(others);
        }
        ClaimResult::Claimed(..) | ClaimResult::Busy => {}
    }
    report
}

impl Worker {
    /// The rules' decision, with this replica's allowed-hosts check first: a robot whose URL
    /// points elsewhere is never called by this replica, and nothing shared changes for it.
    fn plan(&self, snapshot: &RobotSnapshot, url: &RobotUrl, now: DateTime<Utc>) -> Decision {
        if let Err(reason) = self.config.allowed_hosts.check(url.expose_secret()) {
            return Decision::Skip { reason: reason.0 };
        }
        decide(snapshot, now, self.config.batch_size)
    }

    /// Send the rows in order while the lease lasts. After 45009, a gone robot, a record that
    /// could not be written, a lease running out, or shutdown, the rest go back. What must
    /// be looked at again, and when, goes to `again`.
    async fn send_batch(
        &self,
        robot: &ClaimedRobot,
        rows: Vec<Claimed>,
        lease_end: Instant,
        again: &mut Vec<(DateTime<Utc>, Target)>,
    ) {
        let destination = || Target::Destination(robot.destination.clone());
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            if self.shutdown.is_cancelled() {
                self.release(&with_rest(row, rows.by_ref())).await;
                return;
            }
            let Some(limit) = send_limit(lease_end, self.config.lease, self.client.timeout())
            else {
                let rest = with_rest(row, rows.by_ref());
                tracing::info!(robot = %robot.name, rows = rest.len(), "lease running out: giving the rest of the batch back");
                self.release(&rest).await;
                again.push((Utc::now(), destination()));
                return;
            };
            let started = Instant::now();
            let reply = tokio::select! {
                reply = self.client.send_within(&robot.url, &row.payload, limit) => reply,
                _ = self.abandon.cancelled() => {
                    // The lease of `row` decides its fate; the rest go back now.
                    self.release(&rows.collect::<Vec<_>>()).await;
                    return;
                }
            };
            let outcome = classify(&reply);
            let finish = self.finish_for(robot, &row, rows.as_slice(), &reply, outcome);
            log_outcome(robot, &row, &reply, &finish);
            self.config
                .metrics
                .send_finished(robot, &finish, started.elapsed());
            let recorded = self.record(robot, &row, &finish, lease_end).await;
            again.extend(look_again(robot, &finish));
            if !recorded || matches!(outcome, Outcome::RateLimited | Outcome::RobotGone) {
                self.release(&rows.collect::<Vec<_>>()).await;
                again.push((Utc::now(), destination()));
                return;
            }
        }
    }

    /// What the store should record for this reply; `unsent` are the batch's rows after it.
    fn finish_for(
        &self,
        robot: &ClaimedRobot,
        row: &Claimed,
        unsent: &[Claimed],
        reply: &Reply,
        outcome: Outcome,
    ) -> Finish {
        let error = reply.describe();
        let errcode = reply.errcode();
        match outcome {
            Outcome::Sent => Finish::Sent,
            Outcome::Rejected => Finish::Failed { errcode, error },
            Outcome::Transient if self.config.retry.gives_up(row.attempts, row.max_attempts) => {
                let error = format!("{error} (gave up after {} attempts)", row.attempts);
                Finish::Failed { errcode, error }
            }
            Outcome::Transient => {
                let retry_in = self.config.retry.delay(row.attempts.max(1) as u32);
                Finish::RetryAfter {
                    retry_in,
                    errcode,
                    error,
                }
            }
            Outcome::RateLimited => {
                let pause = pause_after_rate_limited(
                    robot.rate_window,
                    robot.consecutive_45009.max(0) as u32 + 1,
                );
                let unsent_slots = unsent.iter().map(|r| r.slot_id).collect();
                Finish::RateLimited {
                    pause,
                    error,
                    unsent_slots,
                }
            }
            Outcome::RobotGone => Finish::RobotGone {
                errcode,
                reason: format!(
                    "WeCom answered {error}: the robot was removed, disabled or left its group"
                ),
            },
        }
    }

    /// Write the outcome, retrying while the database is away. `false` if it could not be
    /// written (the lease was lost, or the database stayed away past the lease): the batch
    /// stops, since its other rows may be another replica's by now.
    ///
    /// A sent message keeps trying past its lease: as long as no other replica has rescued
    /// the row, recording it late still prevents a second send.
    async fn record(
        &self,
        robot: &ClaimedRobot,
        row: &Claimed,
        finish: &Finish,
        lease_end: Instant,
    ) -> bool {
        let deadline = match finish {
            Finish::Sent => lease_end + self.config.lease,
            _ => lease_end,
        };
        let mut failures = 0;
        loop {
            match self.write(robot, row, finish).await {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::warn!(outbox_id = %row.id, "lease lost before the outcome was recorded");
                    return false;
                }
                Err(e) => {
                    failures += 1;
                    let delay = db_backoff(failures);
                    if Instant::now() + delay > deadline || self.abandon.is_cancelled() {
                        tracing::error!(outbox_id = %row.id, error = %e, "could not record the outcome before the lease ended");
                        return false;
                    }
                    tracing::warn!(outbox_id = %row.id, error = %e, retry_in = ?delay, "recording the outcome failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.abandon.cancelled() => {}
                    }
                }
            }
        }
    }

    /// One attempt at writing the outcome; a sent message goes through the group commit.
    async fn write(
        &self,
        robot: &ClaimedRobot,
        row: &Claimed,
        finish: &Finish,
    ) -> Result<bool, String> {
        if *finish == Finish::Sent {
            return self.recorder.record(SentRecord::of(robot, row)).await;
        }
        self.store
            .finish(robot, row, finish)
            .await
            .map_err(|e| e.to_string())
    }

    /// Give rows back to the pool, retrying briefly; their lease is the fallback.
    async fn release(&self, rows: &[Claimed]) {
        if rows.is_empty() {
            return;
        }
        for attempt in 1..=5 {
            match self.store.release(rows).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, rows = rows.len(), "releasing rows failed; retrying");
                    tokio::time::sleep(db_backoff(attempt)).await;
                }
            }
        }
    }
}

/// When a row this outcome sends back to `pending` can go again: a retry's delay, or (45009)
/// at once by the pool's other robots and after the pause by this one.
fn look_again(robot: &ClaimedRobot, finish: &Finish) -> Vec<(DateTime<Utc>, Target)> {
    let after = |d: Duration| Utc::now() + chrono::Duration::from_std(d).unwrap_or_default();
    let destination = || Target::Destination(robot.destination.clone());
    match finish {
        Finish::RetryAfter { retry_in, .. } => vec![(after(*retry_in), destination())],
        Finish::RateLimited { pause, .. } => vec![
            (Utc::now(), destination()),
            (after(*pause), Target::Robot(robot.id)),
        ],
        _ => Vec::new(),
    }
}

fn log_outcome(robot: &ClaimedRobot, row: &Claimed, reply: &Reply, finish: &Finish) {
    let (robot, destination, id, attempt) = (&robot.name, &robot.destination, row.id, row.attempts);
    match finish {
        Finish::Sent => tracing::info!(%robot, %destination, outbox_id = %id, attempt, "sent"),
        Finish::RetryAfter { retry_in, .. } => {
            tracing::warn!(%robot, %destination, outbox_id = %id, attempt, reply = %reply.describe(), ?retry_in, "send failed; will retry")
        }
        Finish::Failed { error, .. } => {
            tracing::warn!(%robot, %destination, outbox_id = %id, attempt, %error, "failed")
        }
        Finish::RateLimited { pause, .. } => {
            tracing::warn!(%robot, %destination, outbox_id = %id, ?pause, "WeCom said 45009: robot paused, message requeued")
        }
        Finish::RobotGone { reason, .. } => {
            tracing::error!(%robot, %destination, outbox_id = %id, %reason, "robot disabled; its messages wait for the rest of the pool")
        }
    }
}

/// How long the next request may take so that its outcome can still be recorded within the
/// lease, or `None` when too little of the lease is left to give it a fair chance (its full
/// timeout, or half the lease when the lease is shorter than two timeouts): a request cut
/// short by the lease would be retried although WeCom may have received it.
fn send_limit(lease_end: Instant, lease: Duration, timeout: Duration) -> Option<Duration> {
    let margin = (lease / 4).min(Duration::from_secs(5));
    let left = lease_end
        .saturating_duration_since(Instant::now())
        .saturating_sub(margin);
    let fair = timeout.min(lease / 2);
    (left >= fair && !left.is_zero()).then_some(left)
}

/// `row` and every row after it.
fn with_rest(row: Claimed, rest: impl Iterator<Item = Claimed>) -> Vec<Claimed> {
    std::iter::once(row).chain(rest).collect()
}
