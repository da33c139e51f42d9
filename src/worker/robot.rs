//! Serving one robot: claim what the rules allow, send it in order, record each outcome.
//! The claim's transaction is over before the first HTTP request starts.

use super::{db_backoff, Worker};
use crate::rules::decide::{decide, Decision, RobotSnapshot};
use crate::rules::outcome::{classify, Outcome, Reply};
use crate::rules::retry::pause_after_rate_limited;
use crate::store::{ClaimResult, Claimed, ClaimedRobot, Finish, SentRecord};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Claim a batch for `robot_id` and send it; returns the robot's id for the loop's book-keeping.
#[tracing::instrument(name = "robot", skip(worker))]
pub(super) async fn serve(worker: Arc<Worker>, robot_id: i32) -> i32 {
    let plan =
        |snapshot: &RobotSnapshot, url: &str, now: DateTime<Utc>| worker.plan(snapshot, url, now);
    let claimed = worker
        .store
        .claim(
            robot_id,
            &worker.config.worker_id,
            worker.config.lease,
            plan,
        )
        .await;
    match claimed {
        Ok(ClaimResult::Claimed(robot, rows)) if !rows.is_empty() => {
            tracing::debug!(robot = %robot.name, rows = rows.len(), "claimed");
            worker.send_batch(&robot, rows).await;
        }
        Ok(ClaimResult::Disabled(reason)) => {
            tracing::warn!(robot_id, %reason, "robot disabled");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(robot_id, error = %e, "claim failed; will retry"),
    }
    robot_id
}

impl Worker {
    /// The rules' decision, with the allowed-hosts check first: a robot whose URL points
    /// elsewhere is never called.
    fn plan(&self, snapshot: &RobotSnapshot, url: &str, now: DateTime<Utc>) -> Decision {
        if let Err(reason) = self.config.allowed_hosts.check(url) {
            return Decision::Disable { reason };
        }
        decide(snapshot, now, self.config.batch_size)
    }

    /// Send the rows in order. After 45009, a gone robot, or shutdown, the rest go back.
    async fn send_batch(&self, robot: &ClaimedRobot, rows: Vec<Claimed>) {
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            if self.shutdown.is_cancelled() {
                let rest: Vec<Claimed> = std::iter::once(row).chain(rows).collect();
                self.release(&rest).await;
                return;
            }
            let reply = tokio::select! {
                reply = self.client.send(&robot.url, &row.payload) => reply,
                _ = self.abandon.cancelled() => {
                    // The lease of `row` decides its fate; the rest go back now.
                    self.release(&rows.collect::<Vec<_>>()).await;
                    return;
                }
            };
            let outcome = classify(&reply);
            let finish = self.finish_for(robot, &row, &reply, outcome);
            log_outcome(robot, &row, &reply, &finish);
            self.record(robot, &row, &finish).await;
            if matches!(outcome, Outcome::RateLimited | Outcome::RobotGone) {
                self.release(&rows.collect::<Vec<_>>()).await;
                return;
            }
        }
    }

    /// What the store should record for this reply.
    fn finish_for(
        &self,
        robot: &ClaimedRobot,
        row: &Claimed,
        reply: &Reply,
        outcome: Outcome,
    ) -> Finish {
        let error = reply.describe();
        let errcode = reply.errcode();
        let now = Utc::now();
        match outcome {
            Outcome::Sent => Finish::Sent,
            Outcome::Rejected => Finish::Failed { errcode, error },
            Outcome::Transient if self.config.retry.gives_up(row.attempts, row.max_attempts) => {
                let error = format!("{error} (gave up after {} attempts)", row.attempts);
                Finish::Failed { errcode, error }
            }
            Outcome::Transient => {
                let delay = self.config.retry.delay(row.attempts.max(1) as u32);
                let not_before = now + chrono::Duration::from_std(delay).unwrap_or_default();
                Finish::RetryAt {
                    not_before,
                    errcode,
                    error,
                }
            }
            Outcome::RateLimited => {
                let pause = pause_after_rate_limited(
                    robot.rate_window,
                    robot.consecutive_45009.max(0) as u32 + 1,
                );
                let pause_until = now + chrono::Duration::from_std(pause).unwrap_or_default();
                Finish::RateLimited { pause_until, error }
            }
            Outcome::RobotGone => Finish::RobotGone {
                errcode,
                reason: format!(
                    "WeCom answered {error}: the robot was removed, disabled or left its group"
                ),
            },
        }
    }

    /// Write the outcome, retrying while the database is away; a lease that runs out first
    /// means another replica will retry the row.
    async fn record(&self, robot: &ClaimedRobot, row: &Claimed, finish: &Finish) {
        let deadline = tokio::time::Instant::now() + self.config.lease;
        let mut failures = 0;
        loop {
            match self.write(robot, row, finish).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(outbox_id = %row.id, "lease lost before the outcome was recorded");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let delay = db_backoff(failures);
                    if tokio::time::Instant::now() + delay > deadline {
                        tracing::error!(outbox_id = %row.id, error = %e, "could not record the outcome before the lease ended");
                        return;
                    }
                    tracing::warn!(outbox_id = %row.id, error = %e, retry_in = ?delay, "recording the outcome failed; retrying");
                    tokio::time::sleep(delay).await;
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
        let worker = &self.config.worker_id;
        self.store
            .finish(worker, robot, row, finish)
            .await
            .map_err(|e| e.to_string())
    }

    /// Give rows back to the pool, retrying briefly; their lease is the fallback.
    async fn release(&self, rows: &[Claimed]) {
        if rows.is_empty() {
            return;
        }
        for attempt in 1..=5 {
            match self.store.release(&self.config.worker_id, rows).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, rows = rows.len(), "releasing rows failed; retrying");
                    tokio::time::sleep(db_backoff(attempt)).await;
                }
            }
        }
    }
}

fn log_outcome(robot: &ClaimedRobot, row: &Claimed, reply: &Reply, finish: &Finish) {
    let (robot, destination, id, attempt) = (&robot.name, &robot.destination, row.id, row.attempts);
    match finish {
        Finish::Sent => tracing::info!(%robot, %destination, outbox_id = %id, attempt, "sent"),
        Finish::RetryAt { not_before, .. } => {
            tracing::warn!(%robot, %destination, outbox_id = %id, attempt, reply = %reply.describe(), retry_at = %not_before, "send failed; will retry")
        }
        Finish::Failed { error, .. } => {
            tracing::warn!(%robot, %destination, outbox_id = %id, attempt, %error, "failed")
        }
        Finish::RateLimited { pause_until, .. } => {
            tracing::warn!(%robot, %destination, outbox_id = %id, paused_until = %pause_until, "WeCom said 45009: robot paused, message requeued")
        }
        Finish::RobotGone { reason, .. } => {
            tracing::error!(%robot, %destination, outbox_id = %id, %reason, "robot disabled; its messages wait for the rest of the pool")
        }
    }
}
