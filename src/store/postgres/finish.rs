//! What happened: each send's outcome recorded in one transaction (status, log row, robot
//! counters), plus the housekeeping that keeps rows moving (expiry, lease rescue, release).

use super::PgStore;
use crate::store::{Claimed, ClaimedRobot, Finish, SentRecord};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// The hot path: sent messages (of one or more robots) recorded in one statement. Each row
/// becomes `sent` and gets its log row, its robot's Phase-1 counters move, and its slot takes
/// WeCom's answer time. A row whose lease was lost changes nothing but its slot.
/// $1 outbox ids, $2 worker, $3 robot names, $4 robot ids, $5 slot ids (parallel arrays).
const RECORD_SENT: &str = r#"
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $3::text[], $4::int[], $5::bigint[])
        AS t (outbox_id, robot_name, robot_id, slot_id)
),
done AS (
    UPDATE wecom_outbox o
    SET status = 'sent', sent_at = now(), last_errcode = 0, last_error = NULL,
        locked_by = NULL, locked_until = NULL, robot_name = i.robot_name
    FROM input i
    WHERE o.id = i.outbox_id AND o.status = 'sending' AND o.locked_by = $2
    RETURNING o.*, i.robot_id
),
logged AS (
    INSERT INTO wecom_message_log
        (webhook_name, message_type, message_content, enrollment_id, send_status,
         send_timestamp, outbox_id, robot_name, errcode, attempts)
    SELECT left(webhook_name, 100), left(message_type, 50), payload::text, enrollment_id,
           'sent', now(), id, robot_name, 0, attempts
    FROM done
    ON CONFLICT (outbox_id) DO NOTHING
),
counted AS (
    UPDATE wecom_webhooks w
    SET last_used_at = now(), total_messages_sent = coalesce(w.total_messages_sent, 0) + c.n
    FROM (SELECT robot_id, count(*) AS n FROM done GROUP BY robot_id) c
    WHERE w.id = c.robot_id
),
settled AS (
    UPDATE wecom_rate_slots s SET at = greatest(s.at, clock_timestamp())
    FROM input i
    WHERE s.id = i.slot_id
),
healthy AS (
    UPDATE wecom_robot_state st SET consecutive_45009 = 0
    WHERE st.robot_id IN (SELECT robot_id FROM done) AND st.consecutive_45009 <> 0
)
SELECT id FROM done
"#;

/// Several robots in one batch: take their rows' locks in id order first, so two replicas
/// recording overlapping robots cannot deadlock on the counters.
const LOCK_ROBOTS: &str = "SELECT id FROM wecom_webhooks WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Only the lease holder may finish a row; a row whose lease was lost is someone else's now.
const MARK_FAILED: &str = r#"
UPDATE wecom_outbox
SET status = 'failed', last_errcode = $3, last_error = $4,
    locked_by = NULL, locked_until = NULL, robot_name = $5
WHERE id = $1 AND status = 'sending' AND locked_by = $2
"#;

/// Back to `pending` at `not_before`; `$5` attempts are given back (1 when it was not the
/// message's fault).
const BACK_TO_PENDING: &str = r#"
UPDATE wecom_outbox
SET status = 'pending', not_before = greatest(not_before, $3), last_errcode = $4,
    last_error = $6, attempts = greatest(attempts - $5, 0),
    locked_by = NULL, locked_until = NULL
WHERE id = $1 AND status = 'sending' AND locked_by = $2
"#;

/// The Phase-1 log row: one per outbox row that reached `sent` or `failed`.
const WRITE_LOG: &str = r#"
INSERT INTO wecom_message_log
    (webhook_name, message_type, message_content, enrollment_id, send_status,
     send_timestamp, error_message, outbox_id, robot_name, errcode, attempts)
SELECT left(o.webhook_name, 100), left(o.message_type, 50), o.payload::text, o.enrollment_id,
       o.status, CASE WHEN o.status = 'sent' THEN now() END, o.last_error, o.id,
       $2, o.last_errcode, o.attempts
FROM wecom_outbox o
WHERE o.id = $1
ON CONFLICT (outbox_id) DO NOTHING
"#;

/// Phase-1 dashboards read these two columns.
const COUNT_ROBOT_SEND: &str = r#"
UPDATE wecom_webhooks
SET last_used_at = now(), total_messages_sent = coalesce(total_messages_sent, 0) + 1
WHERE id = $1
"#;

/// The send counts from when WeCom answered, which is no earlier than when it arrived.
const SETTLE_SLOT: &str =
    "UPDATE wecom_rate_slots SET at = greatest(at, clock_timestamp()) WHERE id = $1";

const ROBOT_ERROR: &str = r#"
UPDATE wecom_robot_state
SET last_errcode = $2, last_error = $3, last_error_at = now()
WHERE robot_id = $1
"#;

const ROBOT_PAUSED: &str = r#"
UPDATE wecom_robot_state
SET paused_until = $2, next_check_at = greatest(next_check_at, $2),
    consecutive_45009 = consecutive_45009 + 1,
    last_errcode = 45009, last_error = $3, last_error_at = now()
WHERE robot_id = $1
"#;

const DISABLE_ROBOT: &str = r#"
UPDATE wecom_webhooks SET is_active = false, disabled_reason = $2 WHERE id = $1
"#;

/// Rows whose lease ended without an answer (their replica died): pending again, or
/// `failed` (with its log row) if that was their last attempt.
const RESCUE_LEASES: &str = r#"
WITH lost AS (
    UPDATE wecom_outbox
    SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
        last_error = 'lease expired: worker ' || coalesce(locked_by, '?')
                     || ' stopped answering mid-send (WeCom may have received it)',
        locked_by = NULL, locked_until = NULL
    WHERE status = 'sending' AND locked_until < clock_timestamp()
    RETURNING id, status
)
INSERT INTO wecom_message_log
    (webhook_name, message_type, message_content, enrollment_id, send_status,
     error_message, outbox_id, robot_name, errcode, attempts)
SELECT left(o.webhook_name, 100), left(o.message_type, 50), o.payload::text, o.enrollment_id,
       'failed', o.last_error, o.id, o.robot_name, o.last_errcode, o.attempts
FROM lost JOIN wecom_outbox o USING (id)
WHERE lost.status = 'failed'
ON CONFLICT (outbox_id) DO NOTHING
"#;

const COUNT_RESCUED: &str = "SELECT count(*) FROM wecom_outbox WHERE status = 'sending' AND locked_until < clock_timestamp()";

/// Past `expires_at`, a row is never sent.
const EXPIRE: &str = r#"
UPDATE wecom_outbox
SET status = 'expired', last_error = 'expired at ' || expires_at::text || ' before it could be sent'
WHERE status = 'pending' AND expires_at <= clock_timestamp()
"#;

/// Claimed rows this worker will not send (shutdown): pending again, attempt and slot returned.
const RELEASE: &str = r#"
UPDATE wecom_outbox
SET status = 'pending', attempts = greatest(attempts - 1, 0),
    locked_by = NULL, locked_until = NULL
WHERE id = ANY($1) AND status = 'sending' AND locked_by = $2
"#;

const FREE_SLOTS: &str = "DELETE FROM wecom_rate_slots WHERE id = ANY($1)";

impl PgStore {
    /// Record how one send ended. Returns `false` if the lease had been lost meanwhile
    /// (nothing is written then: the row belongs to whoever holds it now).
    #[tracing::instrument(skip_all, fields(outbox_id = %row.id, robot = %robot.name))]
    pub async fn finish(
        &self,
        worker_id: &str,
        robot: &ClaimedRobot,
        row: &Claimed,
        outcome: &Finish,
    ) -> sqlx::Result<bool> {
        if *outcome == Finish::Sent {
            let sent = SentRecord::of(robot, row);
            return Ok(self.record_sent(worker_id, &[sent]).await? == [row.id]);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(SETTLE_SLOT)
            .bind(row.slot_id)
            .execute(&mut *tx)
            .await?;
        let owned = match outcome {
            Finish::Sent => unreachable!("recorded above in one statement"),
            Finish::Failed { errcode, error } => {
                let owned = sqlx::query(MARK_FAILED)
                    .bind(row.id)
                    .bind(worker_id)
                    .bind(errcode.map(|c| c as i32))
                    .bind(error)
                    .bind(&robot.name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if owned {
                    write_log(&mut tx, row.id, &robot.name).await?;
                    robot_error(&mut tx, robot.id, *errcode, error).await?;
                }
                owned
            }
            Finish::RetryAt {
                not_before,
                errcode,
                error,
            } => {
                robot_error(&mut tx, robot.id, *errcode, error).await?;
                back_to_pending(&mut tx, worker_id, row.id, *not_before, *errcode, error, 0).await?
            }
            Finish::RateLimited { pause_until, error } => {
                sqlx::query(ROBOT_PAUSED)
                    .bind(robot.id)
                    .bind(pause_until)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                back_to_pending(
                    &mut tx,
                    worker_id,
                    row.id,
                    chrono::Utc::now(),
                    Some(45009),
                    error,
                    1,
                )
                .await?
            }
            Finish::RobotGone { errcode, reason } => {
                sqlx::query(DISABLE_ROBOT)
                    .bind(robot.id)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                robot_error(&mut tx, robot.id, *errcode, reason).await?;
                back_to_pending(
                    &mut tx,
                    worker_id,
                    row.id,
                    chrono::Utc::now(),
                    *errcode,
                    reason,
                    1,
                )
                .await?
            }
        };
        tx.commit().await?;
        Ok(owned)
    }

    /// Record messages WeCom accepted, many at once (one commit for all: the worker's hot
    /// path). Returns the ids recorded; an id missing from it had lost its lease.
    #[tracing::instrument(skip_all, fields(rows = sent.len()))]
    pub async fn record_sent(
        &self,
        worker_id: &str,
        sent: &[SentRecord],
    ) -> sqlx::Result<Vec<Uuid>> {
        let ids: Vec<Uuid> = sent.iter().map(|s| s.outbox_id).collect();
        let names: Vec<&str> = sent.iter().map(|s| s.robot_name.as_str()).collect();
        let robot_ids: Vec<i32> = sent.iter().map(|s| s.robot_id).collect();
        let slots: Vec<i64> = sent.iter().map(|s| s.slot_id).collect();
        let record = sqlx::query_scalar(RECORD_SENT)
            .bind(&ids)
            .bind(worker_id)
            .bind(&names)
            .bind(&robot_ids)
            .bind(&slots);
        let mut distinct = robot_ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() <= 1 {
            return record.fetch_all(&self.pool).await;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK_ROBOTS)
            .bind(&distinct)
            .execute(&mut *tx)
            .await?;
        let done = record.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Give back rows this worker claimed but will not send (shutdown), with their slots.
    #[tracing::instrument(skip_all, fields(rows = rows.len()))]
    pub async fn release(&self, worker_id: &str, rows: &[Claimed]) -> sqlx::Result<()> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let slots: Vec<i64> = rows.iter().map(|r| r.slot_id).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(RELEASE)
            .bind(&ids)
            .bind(worker_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(FREE_SLOTS)
            .bind(&slots)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Expire overdue rows and rescue expired leases; returns (expired, rescued).
    #[tracing::instrument(skip(self))]
    pub async fn housekeeping(&self) -> sqlx::Result<(u64, i64)> {
        let expired = sqlx::query(EXPIRE)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let mut tx = self.pool.begin().await?;
        let rescued: i64 = sqlx::query_scalar(COUNT_RESCUED)
            .fetch_one(&mut *tx)
            .await?;
        if rescued > 0 {
            sqlx::query(RESCUE_LEASES).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok((expired, rescued))
    }
}

async fn write_log(tx: &mut Transaction<'_, Postgres>, id: Uuid, robot: &str) -> sqlx::Result<()> {
    sqlx::query(WRITE_LOG)
        .bind(id)
        .bind(robot)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn robot_error(
    tx: &mut Transaction<'_, Postgres>,
    robot_id: i32,
    errcode: Option<i64>,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(ROBOT_ERROR)
        .bind(robot_id)
        .bind(errcode.map(|c| c as i32))
        .bind(error)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn back_to_pending(
    tx: &mut Transaction<'_, Postgres>,
    worker_id: &str,
    id: Uuid,
    not_before: chrono::DateTime<chrono::Utc>,
    errcode: Option<i64>,
    error: &str,
    give_back_attempts: i32,
) -> sqlx::Result<bool> {
    let done = sqlx::query(BACK_TO_PENDING)
        .bind(id)
        .bind(worker_id)
        .bind(not_before)
        .bind(errcode.map(|c| c as i32))
        .bind(give_back_attempts)
        .bind(error)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A `send-test` message: logged like any other send, without an outbox row.
const LOG_TEST: &str = r#"
INSERT INTO wecom_message_log
    (webhook_name, message_type, message_content, send_status, send_timestamp,
     error_message, robot_name, errcode, attempts)
VALUES (left($1, 100), 'send_test', $2, $3, CASE WHEN $3 = 'sent' THEN now() END, $4, $5, $6, 1)
"#;

impl PgStore {
    /// Record a `send-test` send: the log row, the slot's real time, and the robot's counters.
    pub async fn record_test_send(
        &self,
        robot: &super::claim::NamedRobot,
        slot_id: i64,
        body: &serde_json::Value,
        errcode: Option<i64>,
        error: Option<&str>,
    ) -> sqlx::Result<()> {
        let status = if errcode == Some(0) { "sent" } else { "failed" };
        let mut tx = self.pool.begin().await?;
        sqlx::query(SETTLE_SLOT)
            .bind(slot_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(LOG_TEST)
            .bind(&robot.destination)
            .bind(body.to_string())
            .bind(status)
            .bind(error)
            .bind(&robot.webhook_name)
            .bind(errcode.map(|c| c as i32))
            .execute(&mut *tx)
            .await?;
        if status == "sent" {
            sqlx::query(COUNT_ROBOT_SEND)
                .bind(robot.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}
