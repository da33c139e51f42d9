//! `prune` and `retry` on PostgreSQL: finished rows deleted oldest first, a batch per short
//! transaction; failed rows listed and requeued through the guard trigger's own requeue rule.

use super::{PgStore, CHANNEL};
use crate::store::{FailedFilter, FailedRow, Pruned};
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

/// One batch: up to `$2` rows finished before `$1`, oldest first, and their log rows, in one
/// statement (so one transaction). Rows another transaction holds (a retry) are skipped.
const PRUNE_BATCH: &str = r#"
WITH doomed AS (
    SELECT id FROM wecom_outbox
    WHERE finished_at < $1 AND status IN ('sent', 'failed', 'cancelled', 'expired')
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), logs AS (
    DELETE FROM wecom_message_log l USING doomed d WHERE l.outbox_id = d.id RETURNING 1
), gone AS (
    DELETE FROM wecom_outbox o USING doomed d WHERE o.id = d.id RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS messages, (SELECT count(*) FROM logs) AS log_rows
"#;

/// What `PRUNE_BATCH` would delete in all, for `--dry-run`.
const PRUNE_COUNT: &str = r#"
WITH doomed AS (
    SELECT id FROM wecom_outbox
    WHERE finished_at < $1 AND status IN ('sent', 'failed', 'cancelled', 'expired')
)
SELECT (SELECT count(*) FROM doomed) AS messages,
       (SELECT count(*) FROM wecom_message_log l JOIN doomed d ON l.outbox_id = d.id) AS log_rows
"#;

/// Failed rows matching every selector given ($1 ids, empty = any; $2 destination; $3 since;
/// $4 before), oldest failure first.
const FAILED: &str = r#"
SELECT id, webhook_name AS destination, attempts, last_error, finished_at AS failed_at
FROM wecom_outbox
WHERE status = 'failed'
  AND (cardinality($1::uuid[]) = 0 OR id = ANY($1))
  AND ($2::text IS NULL OR webhook_name = $2)
  AND ($3::timestamptz IS NULL OR finished_at >= $3)
  AND ($4::timestamptz IS NULL OR finished_at < $4)
ORDER BY finished_at, id
"#;

/// The same rows, requeued: `SET status = 'pending'` as a person does it, so the guard
/// trigger (migration 0005) applies its requeue rule (attempts afresh, lease cleared).
const REQUEUE: &str = r#"
WITH chosen AS (
    SELECT id, webhook_name AS destination, attempts, last_error, finished_at AS failed_at
    FROM wecom_outbox
    WHERE status = 'failed'
      AND (cardinality($1::uuid[]) = 0 OR id = ANY($1))
      AND ($2::text IS NULL OR webhook_name = $2)
      AND ($3::timestamptz IS NULL OR finished_at >= $3)
      AND ($4::timestamptz IS NULL OR finished_at < $4)
    FOR UPDATE
), done AS (
    UPDATE wecom_outbox o SET status = 'pending'
    FROM chosen c
    WHERE o.id = c.id
    RETURNING o.id
)
SELECT c.* FROM chosen c JOIN done USING (id)
ORDER BY c.failed_at, c.id
"#;

/// Each given id that exists, with its status.
const STATUSES: &str = "SELECT id, status FROM wecom_outbox WHERE id = ANY($1)";

/// Today's prune, claimed once across replicas (the day is UTC's).
const CLAIM_DAILY_PRUNE: &str = r#"
INSERT INTO wecom_daily_runs (job, local_date, status, runner, started_at)
VALUES ('prune', (now() AT TIME ZONE 'UTC')::date, 'done', $1, now())
ON CONFLICT (job, local_date) DO NOTHING
RETURNING local_date
"#;

const FINISH_DAILY_PRUNE: &str = r#"
UPDATE wecom_daily_runs
SET status = CASE WHEN $3::text IS NULL THEN 'done' ELSE 'failed' END,
    finished_at = clock_timestamp(), enqueued = $2, error = $3
WHERE job = 'prune' AND local_date = (now() AT TIME ZONE 'UTC')::date AND runner = $1
"#;

const PRUNE_SETTING: &str = "SELECT value FROM wecom_settings WHERE name = 'prune_after_days'";

fn pruned(row: &sqlx::postgres::PgRow) -> sqlx::Result<Pruned> {
    let count = |c: &str| row.try_get::<i64, _>(c).map(|n| n.max(0) as u64);
    Ok(Pruned {
        messages: count("messages")?,
        log_rows: count("log_rows")?,
    })
}

fn failed_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<FailedRow> {
    Ok(FailedRow {
        id: row.try_get("id")?,
        destination: row.try_get("destination")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        failed_at: row.try_get("failed_at")?,
    })
}

fn bind_filter<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    f: &'q FailedFilter,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&f.ids)
        .bind(f.destination.as_deref())
        .bind(f.since)
        .bind(f.before)
}

impl PgStore {
    /// Delete one batch of rows finished before `cutoff` (and their log rows).
    pub async fn prune_batch(&self, cutoff: DateTime<Utc>, limit: i64) -> sqlx::Result<Pruned> {
        let row = sqlx::query(PRUNE_BATCH)
            .bind(cutoff)
            .bind(limit)
            .fetch_one(&self.pool)
            .await?;
        pruned(&row)
    }

    /// What pruning before `cutoff` would delete.
    pub async fn prune_count(&self, cutoff: DateTime<Utc>) -> sqlx::Result<Pruned> {
        let row = sqlx::query(PRUNE_COUNT)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
        pruned(&row)
    }

    /// Failed rows the filter matches.
    pub async fn failed_rows(&self, filter: &FailedFilter) -> sqlx::Result<Vec<FailedRow>> {
        let rows = bind_filter(sqlx::query(FAILED), filter)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(failed_row).collect()
    }

    /// Requeue the failed rows the filter matches, in one transaction as a person would
    /// (the guard's rule); the worker is told at once.
    pub async fn requeue_failed(&self, filter: &FailedFilter) -> sqlx::Result<Vec<FailedRow>> {
        let mut tx = self.pool.begin().await?;
        // Not the worker for this transaction: the guard trigger runs and applies its requeue.
        sqlx::query("SELECT set_config('wecom.actor', 'retry', true)")
            .execute(&mut *tx)
            .await?;
        let rows = bind_filter(sqlx::query(REQUEUE), filter)
            .fetch_all(&mut *tx)
            .await?;
        let rows: Vec<FailedRow> = rows.iter().map(failed_row).collect::<sqlx::Result<_>>()?;
        let mut destinations: Vec<&str> = rows.iter().map(|r| r.destination.as_str()).collect();
        destinations.sort_unstable();
        destinations.dedup();
        for d in destinations {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(d)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows)
    }

    /// The status of each of `ids` that exists.
    pub async fn statuses_of(&self, ids: &[Uuid]) -> sqlx::Result<Vec<(Uuid, String)>> {
        sqlx::query_as(STATUSES)
            .bind(ids)
            .fetch_all(&self.pool)
            .await
    }

    /// `prune_after_days` as stored (`None`: no such row).
    pub async fn prune_setting(&self) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(PRUNE_SETTING)
            .fetch_optional(&self.pool)
            .await
    }

    /// Claim today's (UTC) prune for `runner`; `false` when some replica already has.
    pub async fn claim_daily_prune(&self, runner: &str) -> sqlx::Result<bool> {
        let claimed: Option<chrono::NaiveDate> = sqlx::query_scalar(CLAIM_DAILY_PRUNE)
            .bind(runner)
            .fetch_optional(&self.pool)
            .await?;
        Ok(claimed.is_some())
    }

    /// Record how today's prune ended.
    pub async fn finish_daily_prune(
        &self,
        runner: &str,
        messages: u64,
        error: Option<&str>,
    ) -> sqlx::Result<()> {
        sqlx::query(FINISH_DAILY_PRUNE)
            .bind(runner)
            .bind(i32::try_from(messages).unwrap_or(i32::MAX))
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
