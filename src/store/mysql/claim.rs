//! What may go now, on MySQL: which robots have work, and the claim itself. As on PostgreSQL
//! the claim is one short transaction per robot (lock the robot's state row or skip it, let
//! the rules decide, lock and lease the rows, reserve their slots); no lock is held across an
//! HTTP call.

use super::{marks, micros, retrying, uuid_of, MySqlStore};
use crate::rules::decide::{Decision, RobotSettings, RobotSnapshot};
use crate::rules::rate_limit::Learned;
use crate::store::{learned, NamedRobot};
use crate::store::{ClaimResult, Claimed, ClaimedRobot};
use crate::wecom::robot_url::RobotUrl;
use chrono::{DateTime, Utc};
use sqlx::mysql::MySqlRow;
use sqlx::{FromRow, MySql, Row, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// Robots that may have something to send now, most overdue first: one per destination,
/// its most overdue (a robot that takes all it can brings in the next one). `{excluded}` is
/// `AND s.robot_id NOT IN (?, …)` or nothing. Window functions: MySQL 8.0 and MariaDB 10.2+.
const DUE_ROBOTS: &str = r#"
SELECT robot_id
FROM (
    SELECT s.robot_id, s.next_check_at,
           ROW_NUMBER() OVER (PARTITION BY w.destination ORDER BY s.next_check_at) AS nth
    FROM wecom_robot_state s
    JOIN wecom_webhooks w ON w.id = s.robot_id
    WHERE s.next_check_at <= UTC_TIMESTAMP(6)
      {excluded}
      AND COALESCE(w.is_active, TRUE)
      AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
      AND EXISTS (
            SELECT 1 FROM wecom_outbox o
            WHERE o.status = 'pending'
              AND o.webhook_name = w.destination
              AND o.not_before <= UTC_TIMESTAMP(6))
) due
WHERE nth = 1
ORDER BY next_check_at
LIMIT ?
"#;

/// The due robots of one destination, most overdue first, for a claim attempt on each in
/// turn. Found by the destination's index. `{excluded}` as in `DUE_ROBOTS`.
const DUE_OF_DESTINATION: &str = r#"
SELECT s.robot_id
FROM wecom_webhooks w
JOIN wecom_robot_state s ON s.robot_id = w.id
WHERE w.destination = ?
  {excluded}
  AND s.next_check_at <= UTC_TIMESTAMP(6)
  AND COALESCE(w.is_active, TRUE)
  AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
ORDER BY s.next_check_at
"#;

/// The candidates for the next wake-up (lease ends and expiries are housekeeping's), one
/// column each (MySQL's LEAST is NULL if any
/// argument is; the earliest is taken in Rust).
const NEXT_WAKE: &str = r#"
SELECT
    (SELECT MIN(s.next_check_at)
       FROM wecom_robot_state s
       JOIN wecom_webhooks w ON w.id = s.robot_id
      WHERE COALESCE(w.is_active, TRUE)
        {excluded}
        AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
        AND EXISTS (SELECT 1 FROM wecom_outbox o
                     WHERE o.status = 'pending'
                       AND o.webhook_name = w.destination
                       AND o.not_before <= UTC_TIMESTAMP(6))) AS robot_due,
    (SELECT MIN(not_before) FROM wecom_outbox
      WHERE status = 'pending' AND not_before > UTC_TIMESTAMP(6)) AS row_due
"#;

/// Lock the robot's state row, or skip it: another replica is deciding for this robot.
/// (Only the state row: MariaDB has no `FOR UPDATE OF`, and the robot's own row is read
/// without a lock below.)
const LOCK_STATE: &str = r#"
SELECT robot_id FROM wecom_robot_state WHERE robot_id = ? FOR UPDATE SKIP LOCKED
"#;

/// What the rules need of the robot, and the database's clock (the one every replica shares).
const READ_ROBOT: &str = r#"
SELECT w.id, w.webhook_name, w.destination, w.webhook_url,
       w.rate_limit, w.rate_window, w.send_window_start, w.send_window_end,
       CAST(w.send_days AS CHAR) AS send_days, CAST(w.timezone AS CHAR) AS timezone,
       COALESCE((SELECT value FROM wecom_settings WHERE name = 'default_timezone'), 'UTC')
           AS default_timezone,
       s.paused_until, s.consecutive_45009, s.learned_rate_limit, s.learned_at,
       UTC_TIMESTAMP(6) AS now
FROM wecom_robot_state s
JOIN wecom_webhooks w ON w.id = s.robot_id
WHERE s.robot_id = ?
  AND COALESCE(w.is_active, TRUE)
  AND w.webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT'
"#;

/// The robot's sends that can still count against its limit. (Older ones are deleted by
/// housekeeping, not here: a DELETE of a range would take gap locks, and two claims
/// reserving slots behind each other's gap locks deadlock.)
const RECENT_SENDS: &str = "SELECT at FROM wecom_rate_slots WHERE robot_id = ? AND at > ?";

/// THE CLAIM, part one: the destination's best pending rows as this transaction's snapshot
/// has them, higher priority first, then in the order they were written; a few more than
/// wanted, as other replicas of the pool may hold some. Read without locks: a locking read
/// here would lock every row it sorts (MariaDB sorts these rows instead of reading an index
/// in this order), keeping other replicas from rows this claim does not take.
const CANDIDATES: &str = r#"
SELECT id
FROM wecom_outbox
WHERE status = 'pending'
  AND webhook_name = ?
  AND not_before <= ?
  AND (expires_at IS NULL OR expires_at > ?)
ORDER BY priority DESC, seq
LIMIT ?
"#;

/// Part one and a half: lock exactly the candidates wanted, by primary key, skipping rows
/// another replica holds and rows that are no longer pending (checked on their newest
/// version). By primary key only: a locking read locks every row it looks at, and through
/// the status index that would be every pending row. `{ids}` is the list of `?`.
const LOCK_CANDIDATES: &str = r#"
SELECT id
FROM wecom_outbox FORCE INDEX (PRIMARY)
WHERE id IN ({ids}) AND status = 'pending'
FOR UPDATE SKIP LOCKED
"#;

/// Part two: the picked rows leased to this claim's token. `{ids}` is the list of `?`.
const LEASE_ROWS: &str = r#"
UPDATE wecom_outbox FORCE INDEX (PRIMARY)
SET status = 'sending',
    attempts = attempts + 1,
    locked_by = ?,
    locked_until = ?,
    lease_token = ?,
    robot_name = ?
WHERE id IN ({ids})
"#;

/// Part three: what the sender needs of the leased rows, in send order.
const LEASED_ROWS: &str = r#"
SELECT id, CAST(payload AS CHAR) AS payload, attempts, max_attempts
FROM wecom_outbox
WHERE id IN ({ids})
ORDER BY priority DESC, seq
"#;

/// One reservation per claimed row. `{values}` is `(?, ?)` per row.
const RESERVE_SLOTS: &str = "INSERT INTO wecom_rate_slots (robot_id, at) VALUES {values}";

/// The ids the INSERT above gave (the robot's state row is locked: no one else reserves for
/// it meanwhile).
const RESERVED_SLOTS: &str =
    "SELECT id FROM wecom_rate_slots WHERE robot_id = ? AND id >= ? ORDER BY id LIMIT ?";

const SET_NEXT_CHECK: &str = "UPDATE wecom_robot_state SET next_check_at = ? WHERE robot_id = ?";

/// A robot whose configuration cannot work: say why, look again later. Not disabled: the
/// DBA's fix alone puts it back in service.
const ROBOT_UNUSABLE: &str = r#"
UPDATE wecom_robot_state
SET next_check_at = ?, last_error = ?, last_error_at = UTC_TIMESTAMP(6)
WHERE robot_id = ?
"#;

/// A robot the worker could not even claim for: say why and leave it alone a while.
const ROBOT_TROUBLE: &str = r#"
UPDATE wecom_robot_state
SET next_check_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND,
    last_error = ?, last_error_at = UTC_TIMESTAMP(6)
WHERE robot_id = ?
"#;

/// This replica skips a robot because of its own configuration; `status` shows it.
const NOTE_SKIP: &str = r#"
INSERT INTO wecom_replica_notes (worker_id, robot_id, note, noted_at)
VALUES (?, ?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE note = VALUES(note), noted_at = VALUES(noted_at)
"#;

/// A replica's own notes, and any left by replicas that died long ago (`status` shows only
/// the last ten minutes anyway).
const FORGET_NOTES: &str = r#"
DELETE FROM wecom_replica_notes
WHERE worker_id = ? OR noted_at < UTC_TIMESTAMP(6) - INTERVAL 1 DAY
"#;

/// A robot looked up by name for `send-test`: the robot itself, or the first configured,
/// active robot of a pool of that name.
const FIND_ROBOT: &str = r#"
SELECT id, webhook_name, destination, webhook_url,
       COALESCE(is_active, TRUE) AS is_active, disabled_reason
FROM wecom_webhooks
WHERE webhook_name = ? OR pool_name = ?
ORDER BY (webhook_name = ?) DESC,
         (webhook_url <> 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT') DESC,
         COALESCE(is_active, TRUE) DESC,
         webhook_name
LIMIT 1
"#;

struct LockedRobot {
    id: i32,
    webhook_name: String,
    destination: String,
    webhook_url: RobotUrl,
    settings: RobotSettings,
    default_timezone: String,
    paused_until: Option<DateTime<Utc>>,
    consecutive_45009: i32,
    learned: Option<Learned>,
    now: DateTime<Utc>,
}

impl<'r> FromRow<'r, MySqlRow> for LockedRobot {
    fn from_row(row: &'r MySqlRow) -> sqlx::Result<Self> {
        Ok(LockedRobot {
            id: row.try_get("id")?,
            webhook_name: row.try_get("webhook_name")?,
            destination: row.try_get("destination")?,
            webhook_url: row.try_get("webhook_url")?,
            settings: RobotSettings::from_row(row)?,
            default_timezone: row.try_get("default_timezone")?,
            paused_until: row.try_get("paused_until")?,
            consecutive_45009: row.try_get("consecutive_45009")?,
            learned: learned(
                row.try_get("learned_rate_limit")?,
                row.try_get("learned_at")?,
            ),
            now: row.try_get("now")?,
        })
    }
}

impl LockedRobot {
    fn snapshot(&self, recent_sends: Vec<DateTime<Utc>>) -> RobotSnapshot {
        RobotSnapshot {
            settings: self.settings.clone(),
            default_timezone: self.default_timezone.clone(),
            paused_until: self.paused_until,
            learned: self.learned,
            recent_sends,
        }
    }

    /// Sends older than this can no longer count against the limit.
    fn horizon(&self) -> DateTime<Utc> {
        let back = 2.0 * self.settings.rate_window.as_secs_f64() + 1.0;
        self.now - chrono::Duration::milliseconds((back * 1000.0) as i64)
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

/// `AND <column> NOT IN (?, …)` for the robots left out, or nothing.
fn excluding(sql: &str, column: &str, excluded: &[i32]) -> String {
    let clause = match excluded.len() {
        0 => String::new(),
        n => format!("AND {column} NOT IN ({})", marks(n)),
    };
    sql.replace("{excluded}", &clause)
}

impl MySqlStore {
    /// Up to `limit` robots worth a claim attempt now, most overdue first, leaving out
    /// `excluded`.
    pub async fn due_robots(&self, limit: i64, excluded: &[i32]) -> sqlx::Result<Vec<i32>> {
        let sql = excluding(DUE_ROBOTS, "s.robot_id", excluded);
        let mut query = sqlx::query_scalar(&sql);
        for id in excluded {
            query = query.bind(id);
        }
        query.bind(limit).fetch_all(&self.pool).await
    }

    /// When the worker should look again if nothing signals first (`None`: nothing pending).
    pub async fn next_wake(&self, excluded: &[i32]) -> sqlx::Result<Option<DateTime<Utc>>> {
        let sql = excluding(NEXT_WAKE, "s.robot_id", excluded);
        let mut query = sqlx::query(&sql);
        for id in excluded {
            query = query.bind(id);
        }
        let row = query.fetch_one(&self.pool).await?;
        let mut earliest: Option<DateTime<Utc>> = None;
        for column in ["robot_due", "row_due"] {
            let at: Option<DateTime<Utc>> = row.try_get(column)?;
            earliest = match (earliest, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(earliest)
    }

    /// Say why a robot could not be served and leave it alone for `back_off` (every replica).
    pub async fn note_robot_trouble(
        &self,
        robot_id: i32,
        reason: &str,
        back_off: Duration,
    ) -> sqlx::Result<()> {
        sqlx::query(ROBOT_TROUBLE)
            .bind(micros(back_off))
            .bind(reason)
            .bind(robot_id)
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

    /// Forget what replica `worker_id` said it skips.
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
        plan: impl Fn(&RobotSnapshot, &RobotUrl, DateTime<Utc>) -> Decision,
    ) -> sqlx::Result<ClaimResult> {
        retrying(|| self.claim_once(robot_id, worker_id, lease, &plan)).await
    }

    async fn claim_once(
        &self,
        robot_id: i32,
        worker_id: &str,
        lease: Duration,
        plan: &impl Fn(&RobotSnapshot, &RobotUrl, DateTime<Utc>) -> Decision,
    ) -> sqlx::Result<ClaimResult> {
        let mut tx = self.pool.begin().await?;
        let Some((robot, recent)) = lock_robot(&mut tx, robot_id).await? else {
            return Ok(ClaimResult::Busy);
        };
        let result = match plan(&robot.snapshot(recent), &robot.webhook_url, robot.now) {
            // Nothing shared changes: the transaction ends without a write.
            Decision::Skip { reason } => return Ok(ClaimResult::Skipped(reason)),
            Decision::Unusable { reason, recheck_at } => {
                sqlx::query(ROBOT_UNUSABLE)
                    .bind(recheck_at)
                    .bind(&reason)
                    .bind(robot_id)
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

    /// Claim for the most overdue due robot of `destination` no one else is deciding for
    /// (leaving out `excluded`): each due robot in turn until one is not busy. `None`: none.
    /// (The robots are read before any claim transaction begins, so the claim's snapshot
    /// still starts after the robot's lock, as the rate limit needs.)
    pub async fn claim_for_destination(
        &self,
        destination: &str,
        excluded: &[i32],
        worker_id: &str,
        lease: Duration,
        plan: impl Fn(&RobotSnapshot, &RobotUrl, DateTime<Utc>) -> Decision,
    ) -> sqlx::Result<Option<(i32, ClaimResult)>> {
        let sql = excluding(DUE_OF_DESTINATION, "s.robot_id", excluded);
        let mut query = sqlx::query_scalar(&sql).bind(destination);
        for id in excluded {
            query = query.bind(id);
        }
        let due: Vec<i32> = query.fetch_all(&self.pool).await?;
        for robot_id in due {
            match self.claim(robot_id, worker_id, lease, &plan).await? {
                ClaimResult::Busy => continue,
                result => return Ok(Some((robot_id, result))),
            }
        }
        Ok(None)
    }

    /// The robot `send-test NAME` means.
    pub async fn find_robot(&self, name: &str) -> sqlx::Result<Option<NamedRobot>> {
        let row = sqlx::query(FIND_ROBOT)
            .bind(name)
            .bind(name)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(NamedRobot {
                id: row.try_get("id")?,
                webhook_name: row.try_get("webhook_name")?,
                destination: row.try_get("destination")?,
                webhook_url: row.try_get("webhook_url")?,
                is_active: row.try_get("is_active")?,
                disabled_reason: row.try_get("disabled_reason")?,
            })
        })
        .transpose()
    }

    /// Reserve one send against the robot's limit, if `has_budget` agrees; `Err(when)` says
    /// when one frees. `Ok(None)` means another replica holds the robot right now.
    pub async fn reserve_one(
        &self,
        robot_id: i32,
        has_budget: impl FnOnce(&RobotSnapshot, DateTime<Utc>) -> Result<(), DateTime<Utc>>,
    ) -> sqlx::Result<Result<Option<i64>, DateTime<Utc>>> {
        // Not retried: `has_budget` is called once. A deadlock here is an error the user sees
        // (send-test), and running the command again is the cure.
        let mut tx = self.pool.begin().await?;
        let Some((robot, recent)) = lock_robot(&mut tx, robot_id).await? else {
            return Ok(Ok(None));
        };
        if let Err(when) = has_budget(&robot.snapshot(recent), robot.now) {
            return Ok(Err(when));
        }
        let slots = reserve_slots(&mut tx, &robot, 1).await?;
        tx.commit().await?;
        Ok(Ok(slots.first().copied()))
    }
}

/// Lock the robot's state row (or `None`: another replica has it, or the robot is not
/// active) and read the robot with its recent sends.
async fn lock_robot(
    tx: &mut Transaction<'_, MySql>,
    robot_id: i32,
) -> sqlx::Result<Option<(LockedRobot, Vec<DateTime<Utc>>)>> {
    let locked = sqlx::query(LOCK_STATE)
        .bind(robot_id)
        .fetch_optional(&mut **tx)
        .await?;
    if locked.is_none() {
        return Ok(None);
    }
    let Some(robot) = sqlx::query_as::<_, LockedRobot>(READ_ROBOT)
        .bind(robot_id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let horizon = robot.horizon();
    let recent = sqlx::query_scalar(RECENT_SENDS)
        .bind(robot_id)
        .bind(horizon)
        .fetch_all(&mut **tx)
        .await?;
    Ok(Some((robot, recent)))
}

async fn set_next_check(
    tx: &mut Transaction<'_, MySql>,
    robot_id: i32,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(SET_NEXT_CHECK)
        .bind(at)
        .bind(robot_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Lock, lease and read up to `take` rows of the robot's destination, with a slot each.
async fn claim_rows(
    tx: &mut Transaction<'_, MySql>,
    robot: &LockedRobot,
    take: u32,
    worker_id: &str,
    lease: Duration,
) -> sqlx::Result<Vec<Claimed>> {
    let picked = pick_rows(tx, robot, take as usize).await?;
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let lease_token = Uuid::new_v4();
    let locked_until = robot.now + chrono::Duration::microseconds(micros(lease));
    let ids = marks(picked.len());
    let lease_rows = LEASE_ROWS.replace("{ids}", &ids);
    let mut update = sqlx::query(&lease_rows)
        .bind(worker_id)
        .bind(locked_until)
        .bind(lease_token.to_string())
        .bind(&robot.webhook_name);
    for id in &picked {
        update = update.bind(id);
    }
    update.execute(&mut **tx).await?;
    let read = LEASED_ROWS.replace("{ids}", &ids);
    let mut query = sqlx::query(&read);
    for id in &picked {
        query = query.bind(id);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let slots = reserve_slots(tx, robot, rows.len()).await?;
    rows.iter()
        .zip(slots)
        .map(|(row, slot_id)| leased(row, lease_token, slot_id))
        .collect()
}

/// Lock up to `take` of the destination's best pending rows, in send order.
async fn pick_rows(
    tx: &mut Transaction<'_, MySql>,
    robot: &LockedRobot,
    take: usize,
) -> sqlx::Result<Vec<String>> {
    let candidates: Vec<String> = sqlx::query_scalar(CANDIDATES)
        .bind(&robot.destination)
        .bind(robot.now)
        .bind(robot.now)
        .bind((2 * take + 10) as i64)
        .fetch_all(&mut **tx)
        .await?;
    let mut picked = Vec::with_capacity(take);
    let mut rest = candidates.as_slice();
    while picked.len() < take && !rest.is_empty() {
        let (next, after) = rest.split_at((take - picked.len()).min(rest.len()));
        rest = after;
        let sql = LOCK_CANDIDATES.replace("{ids}", &marks(next.len()));
        let mut lock = sqlx::query_scalar::<_, String>(&sql);
        for id in next {
            lock = lock.bind(id);
        }
        let locked = lock.fetch_all(&mut **tx).await?;
        picked.extend(next.iter().filter(|id| locked.contains(id)).cloned());
    }
    Ok(picked)
}

/// One leased row as the sender gets it.
fn leased(row: &MySqlRow, lease: Uuid, slot_id: i64) -> sqlx::Result<Claimed> {
    let payload: Option<String> = row.try_get("payload")?;
    let payload = serde_json::from_str(payload.as_deref().unwrap_or("null"))
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Claimed {
        id: uuid_of(&row.try_get::<String, _>("id")?)?,
        lease,
        payload,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        slot_id,
    })
}

/// `n` reservations at the database's `now`, counted against the robot's limit from now on.
async fn reserve_slots(
    tx: &mut Transaction<'_, MySql>,
    robot: &LockedRobot,
    n: usize,
) -> sqlx::Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let values = vec!["(?, ?)"; n].join(", ");
    let sql = RESERVE_SLOTS.replace("{values}", &values);
    let mut insert = sqlx::query(&sql);
    for _ in 0..n {
        insert = insert.bind(robot.id).bind(robot.now);
    }
    let first = insert.execute(&mut **tx).await?.last_insert_id();
    sqlx::query_scalar(RESERVED_SLOTS)
        .bind(robot.id)
        .bind(first)
        .bind(n as i64)
        .fetch_all(&mut **tx)
        .await
}
