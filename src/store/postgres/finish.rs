//! What happened: each send's outcome recorded in one transaction (status, log row, robot
//! counters), plus the housekeeping that keeps rows moving (expiry, lease rescue, release).

use super::PgStore;
use crate::rules::rate_limit::RateLimit;
use crate::store::{Claimed, ClaimedRobot, Finish, HousekeepingRun, SentRecord};
use sqlx::{Postgres, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// The hot path: sent messages (of one or more robots) recorded in one statement. Each row
/// becomes `sent` and gets its log row, its robot's Phase-1 counters move, and its slot takes
/// WeCom's answer time. A row whose lease was lost changes nothing but its slot.
/// If the school's log refuses any row (a foreign key, a column it added), the statement
/// fails as a whole and each row is recorded on its own by `RECORD_ONE_SENT` instead.
/// $1 outbox ids, $2 lease tokens, $3 robot names, $4 robot ids, $5 slot ids (parallel arrays).
const RECORD_SENT: &str = r#"
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::bigint[])
        AS t (outbox_id, lease, robot_name, robot_id, slot_id)
),
done AS (
    UPDATE wecom_outbox o
    SET status = 'sent', sent_at = now(), last_errcode = 0, last_error = NULL,
        locked_by = NULL, locked_until = NULL, lease_token = NULL, robot_name = i.robot_name
    FROM input i
    -- `(…) IS TRUE`, not a bare `status = 'sending'`: the bare form lets the planner walk
    -- the partial index of every sending row (its statistics, taken when little was being
    -- sent, say few are), once per commit; by primary key it is one probe per message.
    WHERE o.id = i.outbox_id AND o.lease_token = i.lease AND (o.status = 'sending') IS TRUE
    RETURNING o.*, i.robot_id
),
logged AS (
    INSERT INTO wecom_message_log
        (webhook_name, message_type, message_content, enrollment_id, send_status,
         send_timestamp, outbox_id, robot_name, errcode, attempts)
    SELECT webhook_name, message_type, payload::text, enrollment_id,
           'sent', sent_at, id, robot_name, 0, attempts
    FROM done
    ON CONFLICT (outbox_id) DO UPDATE
    SET send_status = 'sent', send_timestamp = EXCLUDED.send_timestamp, error_message = NULL,
        robot_name = EXCLUDED.robot_name, errcode = 0, attempts = EXCLUDED.attempts
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

/// One sent message, when the group statement could not record it: the status first, then
/// the log row with what the school's log accepts (`wecom_write_log`, migration 0005).
const MARK_ONE_SENT: &str = r#"
UPDATE wecom_outbox
SET status = 'sent', sent_at = now(), last_errcode = 0, last_error = NULL,
    locked_by = NULL, locked_until = NULL, lease_token = NULL, robot_name = $3
WHERE id = $1 AND status = 'sending' AND lease_token = $2
"#;

const ROBOT_HEALTHY: &str =
    "UPDATE wecom_robot_state SET consecutive_45009 = 0 WHERE robot_id = $1 AND consecutive_45009 <> 0";

/// Several robots in one batch: take their rows' locks in id order first, so two replicas
/// recording overlapping robots cannot deadlock on the counters.
const LOCK_ROBOTS: &str = "SELECT id FROM wecom_webhooks WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Only the claim holding the row may finish it; a row whose lease was lost is someone
/// else's now.
const MARK_FAILED: &str = r#"
UPDATE wecom_outbox
SET status = 'failed', last_errcode = $3, last_error = $4,
    locked_by = NULL, locked_until = NULL, lease_token = NULL, robot_name = $5
WHERE id = $1 AND status = 'sending' AND lease_token = $2
"#;

/// Back to `pending` in `$3` seconds (database clock); `$5` attempts are given back (1 when
/// it was not the message's fault).
const BACK_TO_PENDING: &str = r#"
UPDATE wecom_outbox
SET status = 'pending',
    not_before = greatest(not_before, clock_timestamp() + make_interval(secs => $3)),
    last_errcode = $4, last_error = $6, attempts = greatest(attempts - $5, 0),
    locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE id = $1 AND status = 'sending' AND lease_token = $2
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
SET paused_until = clock_timestamp() + make_interval(secs => $2),
    next_check_at = greatest(next_check_at, clock_timestamp() + make_interval(secs => $2)),
    consecutive_45009 = consecutive_45009 + 1,
    last_errcode = 45009, last_error = $3, last_error_at = now()
WHERE robot_id = $1
"#;

/// Sends the robot made in its last window (`$2` seconds) before a 45009, leaving out the
/// 45009's own slot and the batch's unsent ones (`$3`): what WeCom accepted.
const ACCEPTED_IN_WINDOW: &str = r#"
SELECT count(*)::int FROM wecom_rate_slots
WHERE robot_id = $1
  AND at > clock_timestamp() - make_interval(secs => $2)
  AND NOT (id = ANY($3))
"#;

/// WeCom's real limit for the robot, learned from a 45009 (see `rules::rate_limit`).
const LEARN_RATE: &str = r#"
UPDATE wecom_robot_state
SET learned_rate_limit = $2, learned_at = clock_timestamp()
WHERE robot_id = $1
"#;

const DISABLE_ROBOT: &str = r#"
UPDATE wecom_webhooks SET is_active = false, disabled_reason = $2 WHERE id = $1
"#;

/// Rows whose lease ended without an answer (their replica died): pending again, or
/// `failed` if that was their last attempt (their log rows follow in `WRITE_LOGS`).
const RESCUE_LEASES: &str = r#"
UPDATE wecom_outbox
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
    last_error = 'lease expired: worker ' || coalesce(locked_by, '?')
                 || ' stopped answering mid-send (WeCom may have received it)',
    locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE status = 'sending' AND locked_until < clock_timestamp()
RETURNING id, status, webhook_name
"#;

/// Only one replica at a time does housekeeping: whoever holds this transaction lock.
const HOUSEKEEPER: &str = "SELECT pg_try_advisory_xact_lock($1)";

/// The advisory lock's key (advisory locks are per database): "wecom-hk" in ASCII. Public so
/// an operator (or a test) can see in `pg_locks` which replica has the turn.
pub const HOUSEKEEPING_LOCK: i64 = 0x7765_636f_6d2d_686b;

/// Wake the workers for destinations whose rows became pending again (the INSERT trigger's
/// channel and payload).
const WAKE_DESTINATIONS: &str =
    "SELECT pg_notify('wecom_outbox', d) FROM unnest($1::text[]) AS t (d)";

/// When housekeeping next has something to do: the earliest lease end or expiry.
const NEXT_HOUSEKEEPING: &str = r#"
SELECT least(
    (SELECT min(locked_until) FROM wecom_outbox WHERE status = 'sending'),
    (SELECT min(expires_at) FROM wecom_outbox
      WHERE status = 'pending' AND expires_at IS NOT NULL))
"#;

/// Log rows for outbox rows that just reached `failed` or `sent`, each written with what the
/// school's log accepts.
const WRITE_LOGS: &str = "SELECT wecom_write_log(id) FROM unnest($1::uuid[]) AS t (id)";

/// Past `expires_at`, a row is never sent.
const EXPIRE: &str = r#"
UPDATE wecom_outbox
SET status = 'expired', last_error = 'expired at ' || expires_at::text || ' before it could be sent'
WHERE status = 'pending' AND expires_at <= clock_timestamp()
"#;

/// Claimed rows this worker will not send (shutdown, lease running out): pending again,
/// attempt and slot returned. Only rows this claim still holds.
const RELEASE: &str = r#"
UPDATE wecom_outbox
SET status = 'pending', attempts = greatest(attempts - 1, 0),
    locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE id = ANY($1) AND (status = 'sending') IS TRUE AND lease_token = ANY($2)
"#;

const FREE_SLOTS: &str = "DELETE FROM wecom_rate_slots WHERE id = ANY($1)";

impl PgStore {
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(SETTLE_SLOT)
            .bind(row.slot_id)
            .execute(&mut *tx)
            .await?;
        let owned = match outcome {
            Finish::Sent => unreachable!("recorded above"),
            Finish::Failed { errcode, error } => {
                let owned = sqlx::query(MARK_FAILED)
                    .bind(row.id)
                    .bind(row.lease)
                    .bind(errcode.map(|c| c as i32))
                    .bind(error)
                    .bind(&robot.name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if owned {
                    write_logs(&mut tx, &[row.id]).await?;
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
                let back = BackToPending {
                    retry_in: *retry_in,
                    errcode: *errcode,
                    error,
                    give_back_attempts: 0,
                };
                back.write(&mut tx, row).await?
            }
            Finish::RateLimited {
                pause,
                error,
                unsent_slots,
            } => {
                sqlx::query(ROBOT_PAUSED)
                    .bind(robot.id)
                    .bind(pause.as_secs_f64())
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                learn_rate(&mut tx, robot, row, unsent_slots).await?;
                let back = BackToPending {
                    retry_in: Duration::ZERO,
                    errcode: Some(45009),
                    error,
                    give_back_attempts: 1,
                };
                back.write(&mut tx, row).await?
            }
            Finish::RobotGone { errcode, reason } => {
                sqlx::query(DISABLE_ROBOT)
                    .bind(robot.id)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                robot_error(&mut tx, robot.id, *errcode, reason).await?;
                let back = BackToPending {
                    retry_in: Duration::ZERO,
                    errcode: *errcode,
                    error: reason,
                    give_back_attempts: 1,
                };
                back.write(&mut tx, row).await?
            }
        };
        tx.commit().await?;
        Ok(owned)
    }

    /// Record messages WeCom accepted, many at once (one commit for all: the worker's hot
    /// path). Returns the ids recorded; an id missing from it had lost its lease.
    ///
    /// If the school's log refuses a row, the group fails as a whole and every message is
    /// recorded on its own, so one row's bookkeeping never holds up another's. Only an
    /// unreachable database is an error.
    #[tracing::instrument(skip_all, fields(rows = sent.len()))]
    pub async fn record_sent(&self, sent: &[SentRecord]) -> sqlx::Result<Vec<Uuid>> {
        match self.record_sent_together(sent).await {
            Err(sqlx::Error::Database(e)) => {
                tracing::debug!(error = %e, "group record refused; recording one by one");
                let mut done = Vec::with_capacity(sent.len());
                for record in sent {
                    if self.record_one_sent(record).await? {
                        done.push(record.outbox_id);
                    }
                }
                Ok(done)
            }
            other => other,
        }
    }

    async fn record_sent_together(&self, sent: &[SentRecord]) -> sqlx::Result<Vec<Uuid>> {
        let ids: Vec<Uuid> = sent.iter().map(|s| s.outbox_id).collect();
        let leases: Vec<Uuid> = sent.iter().map(|s| s.lease).collect();
        let names: Vec<&str> = sent.iter().map(|s| s.robot_name.as_str()).collect();
        let robot_ids: Vec<i32> = sent.iter().map(|s| s.robot_id).collect();
        let slots: Vec<i64> = sent.iter().map(|s| s.slot_id).collect();
        let record = sqlx::query_scalar(RECORD_SENT)
            .bind(&ids)
            .bind(&leases)
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

    /// One sent message on its own: `sent` whatever happens to its log row (which says in
    /// `error_message` what the school's log would not take). `false`: the lease was lost.
    #[tracing::instrument(skip_all, fields(outbox_id = %sent.outbox_id))]
    async fn record_one_sent(&self, sent: &SentRecord) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(SETTLE_SLOT)
            .bind(sent.slot_id)
            .execute(&mut *tx)
            .await?;
        let owned = sqlx::query(MARK_ONE_SENT)
            .bind(sent.outbox_id)
            .bind(sent.lease)
            .bind(&sent.robot_name)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if owned {
            let note = write_logs(&mut tx, &[sent.outbox_id]).await?;
            if let Some(note) = note.into_iter().flatten().next() {
                tracing::warn!(outbox_id = %sent.outbox_id, %note, "sent; the log row could not be written in full");
            }
            for statement in [COUNT_ROBOT_SEND, ROBOT_HEALTHY] {
                sqlx::query(statement)
                    .bind(sent.robot_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(owned)
    }

    /// Give back rows this claim holds but will not send (shutdown, lease running out), with
    /// their slots.
    #[tracing::instrument(skip_all, fields(rows = rows.len()))]
    pub async fn release(&self, rows: &[Claimed]) -> sqlx::Result<()> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let leases: Vec<Uuid> = rows.iter().map(|r| r.lease).collect();
        let slots: Vec<i64> = rows.iter().map(|r| r.slot_id).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(RELEASE)
            .bind(&ids)
            .bind(&leases)
            .execute(&mut *tx)
            .await?;
        sqlx::query(FREE_SLOTS)
            .bind(&slots)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Expire overdue rows and rescue expired leases, unless another replica is doing it
    /// right now (`None`). One transaction: the advisory lock that makes this replica the
    /// housekeeper for the moment is a transaction lock, so it can never outlive a replica
    /// that dies. Rescued rows wake the workers of their destination.
    #[tracing::instrument(skip(self))]
    pub async fn housekeeping(&self) -> sqlx::Result<Option<HousekeepingRun>> {
        let mut tx = self.pool.begin().await?;
        let leader: bool = sqlx::query_scalar(HOUSEKEEPER)
            .bind(HOUSEKEEPING_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !leader {
            tx.rollback().await?;
            return Ok(None);
        }
        let expired = sqlx::query(EXPIRE).execute(&mut *tx).await?.rows_affected();
        let rescued: Vec<(Uuid, String, String)> =
            sqlx::query_as(RESCUE_LEASES).fetch_all(&mut *tx).await?;
        let failed: Vec<Uuid> = rescued
            .iter()
            .filter(|(_, status, _)| status == "failed")
            .map(|(id, _, _)| *id)
            .collect();
        if !failed.is_empty() {
            write_logs(&mut tx, &failed).await?;
        }
        let mut again: Vec<&str> = rescued
            .iter()
            .filter(|(_, status, _)| status == "pending")
            .map(|(_, _, destination)| destination.as_str())
            .collect();
        again.sort_unstable();
        again.dedup();
        if !again.is_empty() {
            sqlx::query(WAKE_DESTINATIONS)
                .bind(&again)
                .execute(&mut *tx)
                .await?;
        }
        let next_due = sqlx::query_scalar(NEXT_HOUSEKEEPING)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(HousekeepingRun {
            expired,
            rescued: rescued.len() as i64,
            next_due,
        }))
    }
}

/// Write the log rows of `ids`; returns, per row, what could not be logged (None: all of it).
async fn write_logs(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[Uuid],
) -> sqlx::Result<Vec<Option<String>>> {
    sqlx::query_scalar(WRITE_LOGS)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await
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

/// A row going back to `pending`, to be tried again after `retry_in`.
struct BackToPending<'a> {
    retry_in: Duration,
    errcode: Option<i64>,
    error: &'a str,
    /// 1 when the failure was not the message's fault (45009, a gone robot).
    give_back_attempts: i32,
}

impl BackToPending<'_> {
    /// `false` if the claim no longer holds the row.
    async fn write(&self, tx: &mut Transaction<'_, Postgres>, row: &Claimed) -> sqlx::Result<bool> {
        let done = sqlx::query(BACK_TO_PENDING)
            .bind(row.id)
            .bind(row.lease)
            .bind(self.retry_in.as_secs_f64())
            .bind(self.errcode.map(|c| c as i32))
            .bind(self.give_back_attempts)
            .bind(self.error)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// A `send-test` message: logged like any other send, without an outbox row.
const LOG_TEST: &str = r#"
INSERT INTO wecom_message_log
    (webhook_name, message_type, message_content, send_status, send_timestamp,
     error_message, robot_name, errcode, attempts)
VALUES (left($1, 100), 'send_test', $2, $3::text, CASE WHEN $3::text = 'sent' THEN now() END, $4, $5, $6, 1)
"#;

impl PgStore {
    /// Record a `send-test` send: the log row, the slot's real time, and the robot's counters.
    pub async fn record_test_send(
        &self,
        robot: &crate::store::NamedRobot,
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

/// After a 45009: count what WeCom accepted in the robot's last window and, if that teaches
/// a limit ([`RateLimit::learn_from_45009`]), store it for every replica.
async fn learn_rate(
    tx: &mut Transaction<'_, Postgres>,
    robot: &ClaimedRobot,
    row: &Claimed,
    unsent_slots: &[i64],
) -> sqlx::Result<()> {
    let Ok(rate) = RateLimit::from_config(robot.rate_limit, robot.rate_window) else {
        return Ok(());
    };
    let not_accepted: Vec<i64> = unsent_slots.iter().copied().chain([row.slot_id]).collect();
    let accepted: i32 = sqlx::query_scalar(ACCEPTED_IN_WINDOW)
        .bind(robot.id)
        .bind(rate.window.saturating_add(rate.guard()).as_secs_f64())
        .bind(&not_accepted)
        .fetch_one(&mut **tx)
        .await?;
    if let Some(limit) = rate.learn_from_45009(accepted.max(0) as u32) {
        tracing::warn!(robot = %robot.name, configured = robot.rate_limit, learned = limit, "WeCom allows fewer sends than configured: holding to what it accepted");
        sqlx::query(LEARN_RATE)
            .bind(robot.id)
            .bind(limit as i32)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
