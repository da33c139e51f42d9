//! `prune` and `retry` on MySQL / MariaDB: finished rows deleted oldest first, a batch per
//! short transaction; failed rows listed and requeued through `wecom_requeue_message`
//! (migration 0010), the procedure people use.

use super::{marks, retrying, uuid_of, MySqlStore};
use crate::store::{FailedFilter, FailedRow, Pruned};
use chrono::{DateTime, Utc};
use sqlx::mysql::MySqlRow;
use sqlx::Row;
use uuid::Uuid;

/// Up to `?` rows finished before `?`, oldest first; rows another transaction holds are skipped.
const PRUNE_PICK: &str = r#"
SELECT id FROM wecom_outbox
WHERE finished_at < ? AND status IN ('sent', 'failed', 'cancelled', 'expired')
ORDER BY finished_at
LIMIT ?
FOR UPDATE SKIP LOCKED
"#;

/// What a prune before `?` would delete in all, for `--dry-run`.
const PRUNE_COUNT: &str = r#"
SELECT (SELECT COUNT(*) FROM wecom_outbox
         WHERE finished_at < ? AND status IN ('sent', 'failed', 'cancelled', 'expired')) AS messages,
       (SELECT COUNT(*) FROM wecom_message_log l
          JOIN wecom_outbox o ON o.id = l.outbox_id
         WHERE o.finished_at < ? AND o.status IN ('sent', 'failed', 'cancelled', 'expired')) AS log_rows
"#;

const PRUNE_SETTING: &str = "SELECT value FROM wecom_settings WHERE name = 'prune_after_days'";

/// Today's prune, claimed once across replicas (the day is UTC's).
const CLAIM_DAILY_PRUNE: &str = r#"
INSERT IGNORE INTO wecom_daily_runs (job, local_date, status, runner, started_at)
VALUES ('prune', UTC_DATE(), 'done', ?, UTC_TIMESTAMP(6))
"#;

const FINISH_DAILY_PRUNE: &str = r#"
UPDATE wecom_daily_runs
SET status = IF(? IS NULL, 'done', 'failed'), finished_at = UTC_TIMESTAMP(6), enqueued = ?, error = ?
WHERE job = 'prune' AND local_date = UTC_DATE() AND runner = ?
"#;

/// The failed rows `f` means, as SQL and its string arguments in order (ids, destination).
fn failed_query(f: &FailedFilter, lock: bool) -> String {
    let mut sql = String::from(
        "SELECT id, CAST(webhook_name AS CHAR) AS destination, attempts, \
         CAST(last_error AS CHAR) AS last_error, finished_at AS failed_at \
         FROM wecom_outbox WHERE status = 'failed'",
    );
    if !f.ids.is_empty() {
        sql.push_str(&format!(" AND id IN ({})", marks(f.ids.len())));
    }
    if f.destination.is_some() {
        sql.push_str(" AND webhook_name = ?");
    }
    if f.since.is_some() {
        sql.push_str(" AND finished_at >= ?");
    }
    if f.before.is_some() {
        sql.push_str(" AND finished_at < ?");
    }
    sql.push_str(" ORDER BY finished_at, id");
    if lock {
        sql.push_str(" FOR UPDATE");
    }
    sql
}

fn failed_row(row: &MySqlRow) -> sqlx::Result<FailedRow> {
    Ok(FailedRow {
        id: uuid_of(&row.try_get::<String, _>("id")?)?,
        destination: row.try_get("destination")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        failed_at: row.try_get("failed_at")?,
    })
}

impl MySqlStore {
    /// Delete one batch of rows finished before `cutoff` and their log rows, in one short
    /// transaction (run again on a deadlock).
    pub async fn prune_batch(&self, cutoff: DateTime<Utc>, limit: i64) -> sqlx::Result<Pruned> {
        retrying(|| self.prune_batch_once(cutoff, limit)).await
    }

    async fn prune_batch_once(&self, cutoff: DateTime<Utc>, limit: i64) -> sqlx::Result<Pruned> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(PRUNE_PICK)
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            return Ok(Pruned::default());
        }
        let logs = format!(
            "DELETE FROM wecom_message_log WHERE outbox_id IN ({})",
            marks(ids.len())
        );
        let rows = format!(
            "DELETE FROM wecom_outbox WHERE id IN ({})",
            marks(ids.len())
        );
        let mut q = sqlx::query(&logs);
        for id in &ids {
            q = q.bind(id);
        }
        let log_rows = q.execute(&mut *tx).await?.rows_affected();
        let mut q = sqlx::query(&rows);
        for id in &ids {
            q = q.bind(id);
        }
        let messages = q.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(Pruned { messages, log_rows })
    }

    /// What pruning before `cutoff` would delete.
    pub async fn prune_count(&self, cutoff: DateTime<Utc>) -> sqlx::Result<Pruned> {
        let row = sqlx::query(PRUNE_COUNT)
            .bind(cutoff)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
        let count = |c: &str| row.try_get::<i64, _>(c).map(|n| n.max(0) as u64);
        Ok(Pruned {
            messages: count("messages")?,
            log_rows: count("log_rows")?,
        })
    }

    async fn select_failed<'e, E>(
        &self,
        executor: E,
        f: &FailedFilter,
        lock: bool,
    ) -> sqlx::Result<Vec<FailedRow>>
    where
        E: sqlx::Executor<'e, Database = sqlx::MySql>,
    {
        let sql = failed_query(f, lock);
        let mut q = sqlx::query(&sql);
        for id in &f.ids {
            q = q.bind(id.to_string());
        }
        if let Some(d) = &f.destination {
            q = q.bind(d);
        }
        if let Some(t) = f.since {
            q = q.bind(t);
        }
        if let Some(t) = f.before {
            q = q.bind(t);
        }
        q.fetch_all(executor)
            .await?
            .iter()
            .map(failed_row)
            .collect()
    }

    /// Failed rows the filter matches.
    pub async fn failed_rows(&self, filter: &FailedFilter) -> sqlx::Result<Vec<FailedRow>> {
        self.select_failed(&self.pool, filter, false).await
    }

    /// Requeue the failed rows the filter matches, in one transaction, each through
    /// `wecom_requeue_message` (the guard's requeue rule: attempts afresh).
    pub async fn requeue_failed(&self, filter: &FailedFilter) -> sqlx::Result<Vec<FailedRow>> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let rows = self.select_failed(&mut *tx, filter, true).await?;
            for row in &rows {
                sqlx::query("CALL wecom_requeue_message(?)")
                    .bind(row.id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(rows)
        })
        .await
    }

    /// The status of each of `ids` that exists.
    pub async fn statuses_of(&self, ids: &[Uuid]) -> sqlx::Result<Vec<(Uuid, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, CAST(status AS CHAR) FROM wecom_outbox WHERE id IN ({})",
            marks(ids.len())
        );
        let mut q = sqlx::query_as::<_, (String, String)>(&sql);
        for id in ids {
            q = q.bind(id.to_string());
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(id, status)| Ok((uuid_of(&id)?, status)))
            .collect()
    }

    /// `prune_after_days` as stored (`None`: no such row).
    pub async fn prune_setting(&self) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(PRUNE_SETTING)
            .fetch_optional(&self.pool)
            .await
    }

    /// Claim today's (UTC) prune for `runner`; `false` when some replica already has.
    pub async fn claim_daily_prune(&self, runner: &str) -> sqlx::Result<bool> {
        let done = sqlx::query(CLAIM_DAILY_PRUNE)
            .bind(runner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Record how today's prune ended.
    pub async fn finish_daily_prune(
        &self,
        runner: &str,
        messages: u64,
        error: Option<&str>,
    ) -> sqlx::Result<()> {
        sqlx::query(FINISH_DAILY_PRUNE)
            .bind(error)
            .bind(i32::try_from(messages).unwrap_or(i32::MAX))
            .bind(error)
            .bind(runner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
