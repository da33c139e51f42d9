//! What happened, on MySQL: each send's outcome recorded in one transaction (status, log row,
//! robot counters), and the housekeeping that keeps rows moving (expiry, lease rescue,
//! release). Rows a statement will change are locked and read first (no RETURNING), and only
//! the claim holding a row's lease token may finish it.

use super::{marks, micros, retrying, uuid_of, MySqlStore};
use crate::rules::rate_limit::{RateLimit, MAX_WINDOW};
use crate::store::NamedRobot;
use crate::store::{Claimed, ClaimedRobot, Finish, HousekeepingRun, SentRecord};
use chrono::{DateTime, Utc};
use sqlx::{MySql, Row, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// The rows of a group this claim still holds, locked: `{pairs}` is `(?, ?)` per row
/// (id, lease token). Statements that lock or change rows by a list of ids go by the primary
/// key only (FORCE INDEX): through the status index InnoDB would lock every row it passed,
/// including other replicas' rows.
const HELD: &str = r#"
SELECT id FROM wecom_outbox FORCE INDEX (PRIMARY)
WHERE id IN ({ids}) AND status = 'sending' AND (id, lease_token) IN ({pairs})
FOR UPDATE
"#;

/// The robots' state rows first, in id order: the claim locks a robot's state row before its
/// robot row (the slots' foreign key), so taking them in the same order, and two batches in
/// the same order, nothing waits in a circle.
const LOCK_ROBOTS: &str =
    "SELECT robot_id FROM wecom_robot_state WHERE robot_id IN ({ids}) ORDER BY robot_id FOR UPDATE";

/// Sent, for rows whose lease was checked above; `robot_name` by a CASE over the ids.
const MARK_SENT: &str = r#"
UPDATE wecom_outbox FORCE INDEX (PRIMARY)
SET status = 'sent', sent_at = UTC_TIMESTAMP(6), last_errcode = 0, last_error = NULL,
    locked_by = NULL, locked_until = NULL, lease_token = NULL,
    robot_name = CASE id {names} END
WHERE id IN ({ids})
"#;

/// The group's log rows in one statement. If the school's log refuses any (a foreign key, a
/// column it added), the whole group is recorded row by row with `wecom_write_log` instead.
const LOG_SENT: &str = r#"
INSERT INTO wecom_message_log
    (webhook_name, message_type, message_content, enrollment_id, send_status,
     send_timestamp, outbox_id, robot_name, errcode, attempts)
SELECT webhook_name, message_type, CAST(payload AS CHAR), enrollment_id,
       'sent', sent_at, id, robot_name, 0, attempts
FROM wecom_outbox
WHERE id IN ({ids})
ON DUPLICATE KEY UPDATE
    send_status = 'sent', send_timestamp = VALUES(send_timestamp), error_message = NULL,
    robot_name = VALUES(robot_name), errcode = 0, attempts = VALUES(attempts)
"#;

/// One sent message, when the group could not be recorded.
const MARK_ONE_SENT: &str = r#"
UPDATE wecom_outbox
SET status = 'sent', sent_at = UTC_TIMESTAMP(6), last_errcode = 0, last_error = NULL,
    locked_by = NULL, locked_until = NULL, lease_token = NULL, robot_name = ?
WHERE id = ? AND status = 'sending' AND lease_token = ?
"#;

/// Phase-1 dashboards read these two columns (`last_used_at` is a TIMESTAMP; the session's
/// zone is UTC).
const COUNT_ROBOT_SENDS: &str = r#"
UPDATE wecom_webhooks
SET last_used_at = UTC_TIMESTAMP(), total_messages_sent = COALESCE(total_messages_sent, 0) + ?
WHERE id = ?
"#;

const ROBOT_HEALTHY: &str =
    "UPDATE wecom_robot_state SET consecutive_45009 = 0 WHERE robot_id = ? AND consecutive_45009 <> 0";

/// The send counts from when WeCom answered, which is no earlier than when it arrived.
const SETTLE_SLOTS: &str =
    "UPDATE wecom_rate_slots SET at = GREATEST(at, UTC_TIMESTAMP(6)) WHERE id IN ({ids})";

/// The row's log row, written with what the school's log accepts (migration 0004); what
/// was left out is then in `@wecom_log_note`.
const WRITE_LOG: &str = "CALL wecom_write_log(?)";
const LOG_NOTE: &str = "SELECT CAST(@wecom_log_note AS CHAR)";

const MARK_FAILED: &str = r#"
UPDATE wecom_outbox
SET status = 'failed', last_errcode = ?, last_error = ?,
    locked_by = NULL, locked_until = NULL, lease_token = NULL, robot_name = ?
WHERE id = ? AND status = 'sending' AND lease_token = ?
"#;

/// Back to `pending` after a delay on the database's clock; some attempts given back (1 when
/// it was not the message's fault).
const BACK_TO_PENDING: &str = r#"
UPDATE wecom_outbox
SET status = 'pending',
    not_before = GREATEST(not_before, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND),
    last_errcode = ?, last_error = ?, attempts = GREATEST(attempts - ?, 0),
    locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE id = ? AND status = 'sending' AND lease_token = ?
"#;

const ROBOT_ERROR: &str = r#"
UPDATE wecom_robot_state
SET last_errcode = ?, last_error = ?, last_error_at = UTC_TIMESTAMP(6)
WHERE robot_id = ?
"#;

const ROBOT_PAUSED: &str = r#"
UPDATE wecom_robot_state
SET paused_until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND,
    next_check_at = GREATEST(next_check_at, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND),
    consecutive_45009 = consecutive_45009 + 1,
    last_errcode = 45009, last_error = ?, last_error_at = UTC_TIMESTAMP(6)
WHERE robot_id = ?
"#;

/// Sends the robot made in its last window (`?` microseconds) before a 45009, leaving out the
/// 45009's own slot and the batch's unsent ones (`{ids}`): what WeCom accepted.
const ACCEPTED_IN_WINDOW: &str = r#"
SELECT COUNT(*) FROM wecom_rate_slots
WHERE robot_id = ?
  AND at > UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND
  AND id NOT IN ({ids})
"#;

/// WeCom's real limit for the robot, learned from a 45009 (see `rules::rate_limit`).
const LEARN_RATE: &str = r#"
UPDATE wecom_robot_state
SET learned_rate_limit = ?, learned_at = UTC_TIMESTAMP(6)
WHERE robot_id = ?
"#;

const DISABLE_ROBOT: &str =
    "UPDATE wecom_webhooks SET is_active = FALSE, disabled_reason = ? WHERE id = ?";

/// Rows whose lease ended without an answer (their replica died), as last committed.
const LOST_LEASES: &str = r#"
SELECT id FROM wecom_outbox
WHERE status = 'sending' AND locked_until < UTC_TIMESTAMP(6)
"#;

/// Those rows locked, if their lease has still ended, with whether that was their last
/// attempt.
const LOCK_LOST: &str = r#"
SELECT id, CAST(attempts >= max_attempts AS SIGNED) AS last
FROM wecom_outbox FORCE INDEX (PRIMARY)
WHERE id IN ({ids}) AND status = 'sending' AND locked_until < UTC_TIMESTAMP(6)
FOR UPDATE
"#;

/// Those rows pending again, or `failed` if that was their last attempt.
const RESCUE: &str = r#"
UPDATE wecom_outbox FORCE INDEX (PRIMARY)
SET status = IF(attempts >= max_attempts, 'failed', 'pending'),
    last_error = CONCAT('lease expired: worker ', COALESCE(locked_by, '?'),
                        ' stopped answering mid-send (WeCom may have received it)'),
    locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE id IN ({ids}) AND status = 'sending'
"#;

/// Pending rows past `expires_at`, as last committed.
/// One replica at a time does housekeeping: whoever gets this lock (named per database, as
/// MySQL's named locks are server-wide) without waiting. 1: got it.
const HOUSEKEEPER: &str = "SELECT GET_LOCK(CONCAT('wecom_outbox housekeeping ', DATABASE()), 0)";

/// Give the housekeeping lock back.
const STEP_DOWN: &str = "DO RELEASE_LOCK(CONCAT('wecom_outbox housekeeping ', DATABASE()))";

/// When housekeeping next has something to do, one column each (LEAST is NULL if any is).
const NEXT_HOUSEKEEPING: &str = r#"
SELECT (SELECT MIN(locked_until) FROM wecom_outbox WHERE status = 'sending') AS lease_ends,
       (SELECT MIN(expires_at) FROM wecom_outbox
         WHERE status = 'pending' AND expires_at IS NOT NULL) AS row_expires
"#;

const OVERDUE: &str = r#"
SELECT id FROM wecom_outbox
WHERE status = 'pending' AND expires_at <= UTC_TIMESTAMP(6)
"#;

/// Past `expires_at`, a row is never sent.
const EXPIRE: &str = r#"
UPDATE wecom_outbox FORCE INDEX (PRIMARY)
SET status = 'expired',
    last_error = CONCAT('expired at ', expires_at, ' UTC before it could be sent')
WHERE id IN ({ids}) AND status = 'pending' AND expires_at <= UTC_TIMESTAMP(6)
"#;

/// Claimed rows this worker will not send: pending again, attempt returned. `{pairs}` is
/// `(?, ?)` per row (id, lease token).
const RELEASE: &str = r#"
UPDATE wecom_outbox FORCE INDEX (PRIMARY)
SET status = 'pending', attempts = GREATEST(attempts - 1, 0),
    locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE id IN ({ids}) AND status = 'sending' AND (id, lease_token) IN ({pairs})
"#;

/// Slots older than the longest lookback any robot can have (two of the longest windows)
/// count against no limit any more.
const FORGET_SLOTS: &str =
    "DELETE FROM wecom_rate_slots WHERE at <= UTC_TIMESTAMP(6) - INTERVAL ? SECOND";

const FREE_SLOTS: &str = "DELETE FROM wecom_rate_slots WHERE id IN ({ids})";

/// A `send-test` message: logged like any other send, without an outbox row.
const LOG_TEST: &str = r#"
INSERT INTO wecom_message_log
    (webhook_name, message_type, message_content, send_status, send_timestamp,
     error_message, robot_name, errcode, attempts)
VALUES (LEFT(?, 100), 'send_test', ?, ?, IF(? = 'sent', UTC_TIMESTAMP(), NULL), ?, ?, ?, 1)
"#;

fn pairs(n: usize) -> String {
    vec!["(?, ?)"; n].join(", ")
}

impl MySqlStore {
    /// Record how one send ended. Returns `false` if the lease had been lost meanwhile
    /// (nothing is written then: the row belongs to whoever holds it now).
    #[tracing::instrument(skip_all, fields(outbox_id = %row.id, robot = %robot.name))]
    pub async fn finish(
        &self,
        robot: &ClaimedRobot,
        row: &Claimed,
        outcome: &Finish,
    ) -> sqlx::Result<bool> {
        if *outcome == Finish::Sent {
            let sent = SentRecord::of(robot, row);
            return Ok(self.record_sent(&[sent]).await? == [row.id]);
        }
        retrying(|| self.finish_once(robot, row, outcome)).await
    }

    async fn finish_once(
        &self,
        robot: &ClaimedRobot,
        row: &Claimed,
        outcome: &Finish,
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        settle_slots(&mut tx, &[row.slot_id]).await?;
        let owned = match outcome {
            Finish::Sent => unreachable!("recorded above"),
            Finish::Failed { errcode, error } => {
                let owned = sqlx::query(MARK_FAILED)
                    .bind(errcode.map(|c| c as i32))
                    .bind(error)
                    .bind(&robot.name)
                    .bind(row.id.to_string())
                    .bind(row.lease.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if owned {
                    write_log(&mut tx, row.id).await?;
                    robot_error(&mut tx, robot.id, *errcode, error).await?;
                }
                owned
            }
            Finish::RetryAfter {
                retry_in,
                errcode,
                error,
            } => {
                robot_error(&mut tx, robot.id, *errcode, error).await?;
                back_to_pending(&mut tx, row, *retry_in, *errcode, error, 0).await?
            }
            Finish::RateLimited {
                pause,
                error,
                unsent_slots,
            } => {
                sqlx::query(ROBOT_PAUSED)
                    .bind(micros(*pause))
                    .bind(micros(*pause))
                    .bind(error)
                    .bind(robot.id)
                    .execute(&mut *tx)
                    .await?;
                learn_rate(&mut tx, robot, row, unsent_slots).await?;
                back_to_pending(&mut tx, row, Duration::ZERO, Some(45009), error, 1).await?
            }
            Finish::RobotGone { errcode, reason } => {
                // The state row first (the claim's order: state, then robot; the robot's
                // AFTER UPDATE trigger writes the state row too).
                robot_error(&mut tx, robot.id, *errcode, reason).await?;
                sqlx::query(DISABLE_ROBOT)
                    .bind(reason)
                    .bind(robot.id)
                    .execute(&mut *tx)
                    .await?;
                back_to_pending(&mut tx, row, Duration::ZERO, *errcode, reason, 1).await?
            }
        };
        tx.commit().await?;
        Ok(owned)
    }

    /// Record messages WeCom accepted, many at once (one commit for all). Returns the ids
    /// recorded; an id missing from it had lost its lease.
    ///
    /// If the school's log refuses a row, the group is rolled back and every message is
    /// recorded on its own, so one row's bookkeeping never holds up another's.
    #[tracing::instrument(skip_all, fields(rows = sent.len()))]
    pub async fn record_sent(&self, sent: &[SentRecord]) -> sqlx::Result<Vec<Uuid>> {
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        match retrying(|| self.record_sent_together(sent)).await {
            Err(sqlx::Error::Database(e)) => {
                tracing::debug!(error = %e, "group record refused; recording one by one");
                let mut done = Vec::with_capacity(sent.len());
                for record in sent {
                    if retrying(|| self.record_one_sent(record)).await? {
                        done.push(record.outbox_id);
                    }
                }
                Ok(done)
            }
            other => other,
        }
    }

    async fn record_sent_together(&self, sent: &[SentRecord]) -> sqlx::Result<Vec<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let mut robots: Vec<i32> = sent.iter().map(|s| s.robot_id).collect();
        robots.sort_unstable();
        robots.dedup();
        lock_robots(&mut tx, &robots).await?;
        let held = held_rows(&mut tx, sent).await?;
        let done: Vec<&SentRecord> = sent
            .iter()
            .filter(|s| held.contains(&s.outbox_id))
            .collect();
        settle_slots(&mut tx, &sent.iter().map(|s| s.slot_id).collect::<Vec<_>>()).await?;
        if !done.is_empty() {
            mark_sent(&mut tx, &done).await?;
            let ids: Vec<String> = done.iter().map(|s| s.outbox_id.to_string()).collect();
            let sql = LOG_SENT.replace("{ids}", &marks(ids.len()));
            let mut log = sqlx::query(&sql);
            for id in &ids {
                log = log.bind(id);
            }
            log.execute(&mut *tx).await?;
            for robot_id in &robots {
                let n = done.iter().filter(|s| s.robot_id == *robot_id).count() as i64;
                if n > 0 {
                    count_robot_sends(&mut tx, *robot_id, n).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(done.iter().map(|s| s.outbox_id).collect())
    }

    /// One sent message on its own: `sent` whatever happens to its log row (which says in
    /// `error_message` what the school's log would not take). `false`: the lease was lost.
    #[tracing::instrument(skip_all, fields(outbox_id = %sent.outbox_id))]
    async fn record_one_sent(&self, sent: &SentRecord) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        lock_robots(&mut tx, &[sent.robot_id]).await?;
        settle_slots(&mut tx, &[sent.slot_id]).await?;
        let owned = sqlx::query(MARK_ONE_SENT)
            .bind(&sent.robot_name)
            .bind(sent.outbox_id.to_string())
            .bind(sent.lease.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if owned {
            if let Some(note) = write_log(&mut tx, sent.outbox_id).await? {
                tracing::warn!(outbox_id = %sent.outbox_id, %note, "sent; the log row could not be written in full");
            }
            count_robot_sends(&mut tx, sent.robot_id, 1).await?;
        }
        tx.commit().await?;
        Ok(owned)
    }

    /// Give back rows this claim holds but will not send, with their slots.
    #[tracing::instrument(skip_all, fields(rows = rows.len()))]
    pub async fn release(&self, rows: &[Claimed]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        retrying(|| self.release_once(rows)).await
    }

    async fn release_once(&self, rows: &[Claimed]) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        let sql = RELEASE
            .replace("{ids}", &marks(rows.len()))
            .replace("{pairs}", &pairs(rows.len()));
        let mut release = sqlx::query(&sql);
        for row in rows {
            release = release.bind(row.id.to_string());
        }
        for row in rows {
            release = release.bind(row.id.to_string()).bind(row.lease.to_string());
        }
        release.execute(&mut *tx).await?;
        let sql = FREE_SLOTS.replace("{ids}", &marks(rows.len()));
        let mut free = sqlx::query(&sql);
        for row in rows {
            free = free.bind(row.slot_id);
        }
        free.execute(&mut *tx).await?;
        tx.commit().await
    }

    /// Expire overdue rows, rescue expired leases and forget slots that count no more,
    /// unless another replica is doing it right now (`None`). Rows are found by a read
    /// without locks and then changed by primary key, each condition checked again: a
    /// locking range read over the status indexes would hold gaps the claims and the writers
    /// insert into. One replica at a time: whoever holds the named lock `HOUSEKEEPER` takes,
    /// a lock of its connection, so it dies with a replica that dies.
    #[tracing::instrument(skip(self))]
    pub async fn housekeeping(&self) -> sqlx::Result<Option<HousekeepingRun>> {
        let mut conn = self.pool.acquire().await?;
        let leader: Option<i64> = sqlx::query_scalar(HOUSEKEEPER)
            .fetch_one(&mut *conn)
            .await?;
        if leader != Some(1) {
            return Ok(None);
        }
        let run = self.housekeep().await;
        let released = sqlx::query(STEP_DOWN).execute(&mut *conn).await;
        if released.is_err() {
            // Never hand a connection that may still hold the lock back to the pool.
            conn.close_on_drop();
        }
        run.map(Some)
    }

    async fn housekeep(&self) -> sqlx::Result<HousekeepingRun> {
        retrying(|| async {
            sqlx::query(FORGET_SLOTS)
                .bind((2 * MAX_WINDOW.as_secs() + 1) as i64)
                .execute(&self.pool)
                .await
        })
        .await?;
        let expired = retrying(|| self.expire()).await?;
        let rescued = retrying(|| self.rescue()).await?;
        let row = sqlx::query(NEXT_HOUSEKEEPING).fetch_one(&self.pool).await?;
        let mut next_due: Option<DateTime<Utc>> = None;
        for column in ["lease_ends", "row_expires"] {
            let at: Option<DateTime<Utc>> = row.try_get(column)?;
            next_due = match (next_due, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(HousekeepingRun {
            expired,
            rescued,
            next_due,
        })
    }

    async fn expire(&self) -> sqlx::Result<u64> {
        let overdue: Vec<String> = sqlx::query_scalar(OVERDUE).fetch_all(&self.pool).await?;
        if overdue.is_empty() {
            return Ok(0);
        }
        let sql = EXPIRE.replace("{ids}", &marks(overdue.len()));
        let mut expire = sqlx::query(&sql);
        for id in &overdue {
            expire = expire.bind(id);
        }
        Ok(expire.execute(&self.pool).await?.rows_affected())
    }

    async fn rescue(&self) -> sqlx::Result<i64> {
        let lost: Vec<String> = sqlx::query_scalar(LOST_LEASES)
            .fetch_all(&self.pool)
            .await?;
        if lost.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let sql = LOCK_LOST.replace("{ids}", &marks(lost.len()));
        let mut lock = sqlx::query_as::<_, (String, i64)>(&sql);
        for id in &lost {
            lock = lock.bind(id);
        }
        let locked = lock.fetch_all(&mut *tx).await?;
        if !locked.is_empty() {
            let sql = RESCUE.replace("{ids}", &marks(locked.len()));
            let mut rescue = sqlx::query(&sql);
            for (id, _) in &locked {
                rescue = rescue.bind(id);
            }
            rescue.execute(&mut *tx).await?;
            for (id, _) in locked.iter().filter(|(_, last)| *last == 1) {
                write_log(&mut tx, uuid_of(id)?).await?;
            }
        }
        tx.commit().await?;
        Ok(locked.len() as i64)
    }

    /// Record a `send-test` send: the log row, the slot's real time, and the robot's counters.
    pub async fn record_test_send(
        &self,
        robot: &NamedRobot,
        slot_id: i64,
        body: &serde_json::Value,
        errcode: Option<i64>,
        error: Option<&str>,
    ) -> sqlx::Result<()> {
        let status = if errcode == Some(0) { "sent" } else { "failed" };
        let mut tx = self.pool.begin().await?;
        settle_slots(&mut tx, &[slot_id]).await?;
        sqlx::query(LOG_TEST)
            .bind(&robot.destination)
            .bind(body.to_string())
            .bind(status)
            .bind(status)
            .bind(error)
            .bind(&robot.webhook_name)
            .bind(errcode.map(|c| c as i32))
            .execute(&mut *tx)
            .await?;
        if status == "sent" {
            sqlx::query(COUNT_ROBOT_SENDS)
                .bind(1i64)
                .bind(robot.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

/// Which of `sent` this claim still holds (locked until the transaction ends).
async fn held_rows(
    tx: &mut Transaction<'_, MySql>,
    sent: &[SentRecord],
) -> sqlx::Result<Vec<Uuid>> {
    let sql = HELD
        .replace("{ids}", &marks(sent.len()))
        .replace("{pairs}", &pairs(sent.len()));
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for s in sent {
        query = query.bind(s.outbox_id.to_string());
    }
    for s in sent {
        query = query
            .bind(s.outbox_id.to_string())
            .bind(s.lease.to_string());
    }
    let ids = query.fetch_all(&mut **tx).await?;
    ids.iter().map(|id| uuid_of(id)).collect()
}

/// `sent` for rows already checked to be held, each with its robot's name.
async fn mark_sent(tx: &mut Transaction<'_, MySql>, done: &[&SentRecord]) -> sqlx::Result<()> {
    let names = vec!["WHEN ? THEN ?"; done.len()].join(" ");
    let sql = MARK_SENT
        .replace("{names}", &names)
        .replace("{ids}", &marks(done.len()));
    let mut update = sqlx::query(&sql);
    for s in done {
        update = update.bind(s.outbox_id.to_string()).bind(&s.robot_name);
    }
    for s in done {
        update = update.bind(s.outbox_id.to_string());
    }
    update.execute(&mut **tx).await?;
    Ok(())
}

async fn lock_robots(tx: &mut Transaction<'_, MySql>, robots: &[i32]) -> sqlx::Result<()> {
    let sql = LOCK_ROBOTS.replace("{ids}", &marks(robots.len()));
    let mut lock = sqlx::query(&sql);
    for id in robots {
        lock = lock.bind(id);
    }
    lock.execute(&mut **tx).await?;
    Ok(())
}

async fn count_robot_sends(
    tx: &mut Transaction<'_, MySql>,
    robot_id: i32,
    n: i64,
) -> sqlx::Result<()> {
    sqlx::query(ROBOT_HEALTHY)
        .bind(robot_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(COUNT_ROBOT_SENDS)
        .bind(n)
        .bind(robot_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn settle_slots(tx: &mut Transaction<'_, MySql>, slots: &[i64]) -> sqlx::Result<()> {
    if slots.is_empty() {
        return Ok(());
    }
    let sql = SETTLE_SLOTS.replace("{ids}", &marks(slots.len()));
    let mut query = sqlx::query(&sql);
    for slot in slots {
        query = query.bind(slot);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Write the row's log row; returns what could not be logged (None: all of it).
async fn write_log(tx: &mut Transaction<'_, MySql>, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query(WRITE_LOG)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query_scalar(LOG_NOTE).fetch_one(&mut **tx).await
}

async fn robot_error(
    tx: &mut Transaction<'_, MySql>,
    robot_id: i32,
    errcode: Option<i64>,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(ROBOT_ERROR)
        .bind(errcode.map(|c| c as i32))
        .bind(error)
        .bind(robot_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The row back to `pending` after `retry_in`; `false` if the claim no longer holds it.
async fn back_to_pending(
    tx: &mut Transaction<'_, MySql>,
    row: &Claimed,
    retry_in: Duration,
    errcode: Option<i64>,
    error: &str,
    give_back_attempts: i32,
) -> sqlx::Result<bool> {
    let done = sqlx::query(BACK_TO_PENDING)
        .bind(micros(retry_in))
        .bind(errcode.map(|c| c as i32))
        .bind(error)
        .bind(give_back_attempts)
        .bind(row.id.to_string())
        .bind(row.lease.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// After a 45009: count what WeCom accepted in the robot's last window and, if that teaches
/// a limit ([`RateLimit::learn_from_45009`]), store it for every replica.
async fn learn_rate(
    tx: &mut Transaction<'_, MySql>,
    robot: &ClaimedRobot,
    row: &Claimed,
    unsent_slots: &[i64],
) -> sqlx::Result<()> {
    let Ok(rate) = RateLimit::from_config(robot.rate_limit, robot.rate_window) else {
        return Ok(());
    };
    let not_accepted: Vec<i64> = unsent_slots.iter().copied().chain([row.slot_id]).collect();
    let sql = ACCEPTED_IN_WINDOW.replace("{ids}", &marks(not_accepted.len()));
    let mut count = sqlx::query_scalar(&sql)
        .bind(robot.id)
        .bind(micros(rate.window.saturating_add(rate.guard())));
    for id in &not_accepted {
        count = count.bind(id);
    }
    let accepted: i64 = count.fetch_one(&mut **tx).await?;
    if let Some(limit) = rate.learn_from_45009(accepted.clamp(0, i64::from(u32::MAX)) as u32) {
        tracing::warn!(robot = %robot.name, configured = robot.rate_limit, learned = limit, "WeCom allows fewer sends than configured: holding to what it accepted");
        sqlx::query(LEARN_RATE)
            .bind(limit as i32)
            .bind(robot.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
