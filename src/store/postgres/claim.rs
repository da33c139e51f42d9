//! What may go now: which robots have work, and the claim itself. The claim is one short
//! transaction per robot; no lock outlives it, and none is held across an HTTP call.

use super::PgStore;
use crate::rules::decide::{Decision, RobotSettings, RobotSnapshot};
use crate::store::learned;
use crate::store::{ClaimResult, Claimed, ClaimedRobot, NamedRobot};
use crate::wecom::robot_url::RobotUrl;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// Robots that may have something to send now: active, configured (not a Phase-1
/// placeholder) and due for a look, as many of each destination as it has claimable rows,
/// most overdue first: the n-th due robot of a destination is offered only if the
/// destination has an n-th claimable row. A destination with one row never has all its
/// robots try for it; a backlog has every robot of its pool start at once.
const DUE_ROBOTS: &str = r#"
WITH due AS (
    SELECT s.robot_id, s.next_check_at, w.destination,
           row_number() OVER (PARTITION BY w.destination ORDER BY s.next_check_at) AS nth
    FROM wecom_robot_state s
    JOIN wecom_webhooks w ON w.id = s.robot_id
    WHERE s.next_check_at <= clock_timestamp()
      AND NOT (s.robot_id = ANY($2))
      AND coalesce(w.is_active, true)
      AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
      AND EXISTS (
            SELECT 1 FROM wecom_outbox o
            WHERE o.webhook_name = w.destination
              AND o.status = 'pending'
              AND o.not_before <= clock_timestamp())
)
SELECT due.robot_id
FROM due
WHERE due.nth = 1
   OR EXISTS (
        SELECT 1 FROM wecom_outbox o
        WHERE o.webhook_name = due.destination
          AND o.status = 'pending'
          AND o.not_before <= clock_timestamp()
        -- In the claim index's order: it stops at the n-th row (a plan that gathers every
        -- pending row first took 0.5 s with 1 000 000 pending).
        ORDER BY o.priority DESC, o.seq
        OFFSET due.nth - 1)
ORDER BY due.next_check_at
LIMIT $1
"#;

/// The earliest moment something may become possible: a robot with claimable work comes
/// due, or a delayed row's `not_before` passes. (Lease ends and expiries are housekeeping's:
/// it says when it next has something to do.) Robots this replica is serving right now
/// (`$1`) are left out: their task will report.
const NEXT_WAKE: &str = r#"
SELECT least(
    (SELECT min(s.next_check_at)
       FROM wecom_robot_state s
       JOIN wecom_webhooks w ON w.id = s.robot_id
      WHERE coalesce(w.is_active, true)
        AND NOT (s.robot_id = ANY($1))
        AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
        AND EXISTS (SELECT 1 FROM wecom_outbox o
                     WHERE o.webhook_name = w.destination
                       AND o.status = 'pending'
                       AND o.not_before <= clock_timestamp())),
    (SELECT min(not_before) FROM wecom_outbox
      WHERE status = 'pending' AND not_before > clock_timestamp())
)
"#;

/// Lock the robot's state row (or skip it: another replica is deciding) and read what the
/// rules need. The database's clock is the one clock every replica shares.
const LOCK_ROBOT: &str = r#"
SELECT w.id, w.webhook_name, w.destination AS destination,
       w.webhook_url, w.rate_limit,
       extract(epoch FROM w.rate_window)::float8 AS rate_window_secs,
       w.send_window_start, w.send_window_end, w.send_days, w.timezone,
       coalesce((SELECT value FROM wecom_settings WHERE name = 'default_timezone'), 'UTC')
           AS default_timezone,
       s.paused_until, s.consecutive_45009, s.learned_rate_limit, s.learned_at,
       clock_timestamp() AS now
FROM wecom_robot_state s
JOIN wecom_webhooks w ON w.id = s.robot_id
WHERE s.robot_id = $1
  AND coalesce(w.is_active, true)
  AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
FOR UPDATE OF s SKIP LOCKED
"#;

/// The most overdue due robot of destination `$1` (leaving out `$2`) that no other replica
/// is deciding for, locked like `LOCK_ROBOT` locks one robot. The robots are found by the
/// destination's index, never by a scan of every robot.
const LOCK_DUE_ROBOT_OF: &str = r#"
SELECT s.robot_id
FROM wecom_robot_state s
JOIN wecom_webhooks w ON w.id = s.robot_id
WHERE w.destination = $1
  AND NOT (s.robot_id = ANY($2))
  AND s.next_check_at <= clock_timestamp()
  AND coalesce(w.is_active, true)
  AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
ORDER BY s.next_check_at
LIMIT 1
FOR UPDATE OF s SKIP LOCKED
"#;

/// The robot's sends that can still count against its limit; older ones are deleted.
const RECENT_SENDS: &str = r#"
WITH forgotten AS (
    DELETE FROM wecom_rate_slots
    WHERE robot_id = $1 AND at <= $2::timestamptz - make_interval(secs => $3)
)
SELECT at FROM wecom_rate_slots
WHERE robot_id = $1 AND at > $2::timestamptz - make_interval(secs => $3)
"#;

/// THE CLAIM: the destination's best pending rows, skipping rows another replica holds,
/// leased to this claim's token until `$2 + $5 seconds`. Higher priority first, then in the
/// order they were written.
const CLAIM_ROWS: &str = r#"
WITH picked AS (
    SELECT id
    FROM wecom_outbox
    WHERE webhook_name = $1
      AND status = 'pending'
      AND not_before <= $2
      AND (expires_at IS NULL OR expires_at > $2)
    ORDER BY priority DESC, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE wecom_outbox o
SET status = 'sending',
    attempts = o.attempts + 1,
    locked_by = $4,
    locked_until = $2 + make_interval(secs => $5),
    lease_token = $7,
    robot_name = $6
FROM picked
WHERE o.id = picked.id
RETURNING o.id, o.payload, o.attempts, o.max_attempts, o.priority, o.seq
"#;

/// One reservation per claimed row, counted against the robot's limit from now on.
const RESERVE_SLOTS: &str = r#"
INSERT INTO wecom_rate_slots (robot_id, at)
SELECT $1, $2 FROM generate_series(1, $3)
RETURNING id
"#;

const SET_NEXT_CHECK: &str = "UPDATE wecom_robot_state SET next_check_at = $2 WHERE robot_id = $1";

/// A robot whose configuration cannot work: say why, look again at `$3`. Not disabled: the
/// DBA's fix alone (which wakes the workers) puts it back in service.
const ROBOT_UNUSABLE: &str = r#"
UPDATE wecom_robot_state
SET next_check_at = $3, last_error = $2, last_error_at = now()
WHERE robot_id = $1
"#;

/// A robot the worker could not even claim for (a row it cannot read): say why and leave it
/// alone for `$3` seconds, so one bad row never spins every replica.
const ROBOT_TROUBLE: &str = r#"
UPDATE wecom_robot_state
SET next_check_at = clock_timestamp() + make_interval(secs => $3),
    last_error = $2, last_error_at = now()
WHERE robot_id = $1
"#;

/// This replica skips a robot because of its own configuration; `status` shows it.
const NOTE_SKIP: &str = r#"
INSERT INTO wecom_replica_notes (worker_id, robot_id, note) VALUES ($1, $2, $3)
ON CONFLICT (worker_id, robot_id) DO UPDATE SET note = EXCLUDED.note, noted_at = now()
"#;

/// A replica's own notes, and any left by replicas that died long ago (`status` shows only
/// the last ten minutes anyway).
const FORGET_NOTES: &str = r#"
DELETE FROM wecom_replica_notes
WHERE worker_id = $1 OR noted_at < now() - interval '1 day'
"#;

#[derive(sqlx::FromRow)]
struct LockedRobot {
    id: i32,
    webhook_name: String,
    destination: String,
    webhook_url: RobotUrl,
    #[sqlx(flatten)]
    settings: RobotSettings,
    default_timezone: String,
    paused_until: Option<DateTime<Utc>>,
    consecutive_45009: i32,
    learned_rate_limit: Option<i32>,
    learned_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: Uuid,
    payload: serde_json::Value,
    attempts: i32,
    max_attempts: i32,
    priority: i16,
    seq: i64,
}

/// The rules' answer for a robot, given its snapshot, its URL and the database's `now`.
pub trait Planner: Fn(&RobotSnapshot, &RobotUrl, DateTime<Utc>) -> Decision {}
impl<F: Fn(&RobotSnapshot, &RobotUrl, DateTime<Utc>) -> Decision> Planner for F {}

impl LockedRobot {
    fn snapshot(&self, recent_sends: Vec<DateTime<Utc>>) -> RobotSnapshot {
        RobotSnapshot {
            settings: self.settings.clone(),
            default_timezone: self.default_timezone.clone(),
            paused_until: self.paused_until,
            learned: learned(self.learned_rate_limit, self.learned_at),
            recent_sends,
        }
    }

    /// How far back sends can still count against the limit.
    fn lookback_secs(&self) -> f64 {
        2.0 * self.settings.rate_window.as_secs_f64() + 1.0
    }

    fn claimed(&self) -> ClaimedRobot {
        ClaimedRobot {
            id: self.id,
            name: self.webhook_name.clone(),
            destination: self.destination.clone(),
            url: self.webhook_url.clone(),
            rate_limit: self.settings.rate_limit,
            rate_window: self.settings.rate_window,
            consecutive_45009: self.consecutive_45009,
            more_at: None,
        }
    }
}

impl PgStore {
    /// Up to `limit` robots worth a claim attempt now, most overdue first.
    /// Robots in `excluded` (served by this replica now, or held back by it) are left out.
    pub async fn due_robots(&self, limit: i64, excluded: &[i32]) -> sqlx::Result<Vec<i32>> {
        sqlx::query_scalar(DUE_ROBOTS)
            .bind(limit)
            .bind(excluded)
            .fetch_all(&self.pool)
            .await
    }

    /// When the worker should look again if no NOTIFY arrives first (`None`: nothing pending).
    pub async fn next_wake(&self, excluded: &[i32]) -> sqlx::Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar(NEXT_WAKE)
            .bind(excluded)
            .fetch_one(&self.pool)
            .await
    }

    /// Say why a robot could not be served and leave it alone for `back_off` (every replica).
    pub async fn note_robot_trouble(
        &self,
        robot_id: i32,
        reason: &str,
        back_off: Duration,
    ) -> sqlx::Result<()> {
        sqlx::query(ROBOT_TROUBLE)
            .bind(robot_id)
            .bind(reason)
            .bind(back_off.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record that replica `worker_id` skips a robot, and why (shown by `status`).
    pub async fn note_replica_skip(
        &self,
        worker_id: &str,
        robot_id: i32,
        note: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(NOTE_SKIP)
            .bind(worker_id)
            .bind(robot_id)
            .bind(note)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forget what replica `worker_id` said it skips (it starts, or stops, with a clean slate).
    pub async fn forget_replica_notes(&self, worker_id: &str) -> sqlx::Result<()> {
        sqlx::query(FORGET_NOTES)
            .bind(worker_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Decide for one robot with `plan`, and claim what it allows, in one transaction.
    #[tracing::instrument(skip(self, plan), fields(robot_id))]
    pub async fn claim(
        &self,
        robot_id: i32,
        worker_id: &str,
        lease: Duration,
        plan: impl Planner,
    ) -> sqlx::Result<ClaimResult> {
        let tx = self.pool.begin().await?;
        decide_and_claim(tx, robot_id, worker_id, lease, plan).await
    }

    /// Lock the most overdue due robot of `destination` no one else is deciding for, then
    /// decide and claim as [`PgStore::claim`] does, in the same transaction. `None`: no such
    /// robot (none is due, or every due one is being decided for elsewhere).
    #[tracing::instrument(skip(self, excluded, plan))]
    pub async fn claim_for_destination(
        &self,
        destination: &str,
        excluded: &[i32],
        worker_id: &str,
        lease: Duration,
        plan: impl Planner,
    ) -> sqlx::Result<Option<(i32, ClaimResult)>> {
        let mut tx = self.pool.begin().await?;
        let robot_id: Option<i32> = sqlx::query_scalar(LOCK_DUE_ROBOT_OF)
            .bind(destination)
            .bind(excluded)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(robot_id) = robot_id else {
            tx.rollback().await?;
            return Ok(None);
        };
        let result = decide_and_claim(tx, robot_id, worker_id, lease, plan).await?;
        Ok(Some((robot_id, result)))
    }
}

/// The claim's transaction from the robot's lock on: the rules decide with the robot's
/// snapshot, and what they allow is claimed; committed here (or ended without a write).
async fn decide_and_claim(
    mut tx: Transaction<'_, Postgres>,
    robot_id: i32,
    worker_id: &str,
    lease: Duration,
    plan: impl Planner,
) -> sqlx::Result<ClaimResult> {
    let Some(robot) = sqlx::query_as::<_, LockedRobot>(LOCK_ROBOT)
        .bind(robot_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(ClaimResult::Busy);
    };
    let horizon = robot.lookback_secs();
    let recent: Vec<DateTime<Utc>> = sqlx::query_scalar(RECENT_SENDS)
        .bind(robot_id)
        .bind(robot.now)
        .bind(horizon)
        .fetch_all(&mut *tx)
        .await?;
    let result = match plan(&robot.snapshot(recent), &robot.webhook_url, robot.now) {
        // Nothing shared changes: the transaction ends without a write.
        Decision::Skip { reason } => return Ok(ClaimResult::Skipped(reason)),
        Decision::Unusable { reason, recheck_at } => {
            sqlx::query(ROBOT_UNUSABLE)
                .bind(robot_id)
                .bind(&reason)
                .bind(recheck_at)
                .execute(&mut *tx)
                .await?;
            ClaimResult::Unusable(reason)
        }
        Decision::Wait { until } => {
            set_next_check(&mut tx, robot_id, until).await?;
            ClaimResult::Waiting(until)
        }
        Decision::Claim {
            take,
            then_next_check,
        } => {
            let rows = claim_rows(&mut tx, &robot, take, worker_id, lease).await?;
            let mut claimed = robot.claimed();
            let next = if rows.len() as u32 == take {
                claimed.more_at = Some(then_next_check);
                then_next_check
            } else {
                robot.now
            };
            set_next_check(&mut tx, robot_id, next).await?;
            ClaimResult::Claimed(claimed, rows)
        }
    };
    tx.commit().await?;
    Ok(result)
}

async fn set_next_check(
    tx: &mut Transaction<'_, Postgres>,
    robot_id: i32,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(SET_NEXT_CHECK)
        .bind(robot_id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn claim_rows(
    tx: &mut Transaction<'_, Postgres>,
    robot: &LockedRobot,
    take: u32,
    worker_id: &str,
    lease: Duration,
) -> sqlx::Result<Vec<Claimed>> {
    let lease_token = Uuid::new_v4();
    let mut rows: Vec<ClaimedRow> = sqlx::query_as(CLAIM_ROWS)
        .bind(&robot.destination)
        .bind(robot.now)
        .bind(i64::from(take))
        .bind(worker_id)
        .bind(lease.as_secs_f64())
        .bind(&robot.webhook_name)
        .bind(lease_token)
        .fetch_all(&mut **tx)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    rows.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
    let slots: Vec<i64> = sqlx::query_scalar(RESERVE_SLOTS)
        .bind(robot.id)
        .bind(robot.now)
        .bind(rows.len() as i32)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .into_iter()
        .zip(slots)
        .map(|(row, slot_id)| Claimed {
            id: row.id,
            lease: lease_token,
            payload: row.payload,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            slot_id,
        })
        .collect())
}

/// A robot looked up by name for `send-test`: the robot itself, or the first configured,
/// active robot of a pool of that name.
const FIND_ROBOT: &str = r#"
SELECT id, webhook_name, destination, webhook_url,
       coalesce(is_active, true) AS is_active, disabled_reason
FROM wecom_webhooks
WHERE webhook_name = $1 OR pool_name = $1
ORDER BY (webhook_name = $1) DESC,
         (webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT') DESC,
         coalesce(is_active, true) DESC,
         webhook_name
LIMIT 1
"#;

impl PgStore {
    /// The robot `send-test NAME` means.
    pub async fn find_robot(&self, name: &str) -> sqlx::Result<Option<NamedRobot>> {
        sqlx::query_as(FIND_ROBOT)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
    }

    /// Reserve one send against the robot's limit, if `has_budget` agrees; `Err(when)` says
    /// when one frees. `Ok(None)` means another replica holds the robot right now.
    pub async fn reserve_one(
        &self,
        robot_id: i32,
        has_budget: impl FnOnce(&RobotSnapshot, DateTime<Utc>) -> Result<(), DateTime<Utc>>,
    ) -> sqlx::Result<Result<Option<i64>, DateTime<Utc>>> {
        let mut tx = self.pool.begin().await?;
        let Some(robot) = sqlx::query_as::<_, LockedRobot>(LOCK_ROBOT)
            .bind(robot_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Ok(None));
        };
        let recent: Vec<DateTime<Utc>> = sqlx::query_scalar(RECENT_SENDS)
            .bind(robot_id)
            .bind(robot.now)
            .bind(robot.lookback_secs())
            .fetch_all(&mut *tx)
            .await?;
        if let Err(when) = has_budget(&robot.snapshot(recent), robot.now) {
            return Ok(Err(when));
        }
        let slot: i64 = sqlx::query_scalar(RESERVE_SLOTS)
            .bind(robot_id)
            .bind(robot.now)
            .bind(1)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(Some(slot)))
    }
}
