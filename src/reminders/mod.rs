//! Daily fee-renewal reminders: what the day calls for (`preview`), enqueuing it by hand
//! (`enqueue`), and the once-a-day run the worker drives (`daily`, with its rule in
//! `schedule`).
//!
//! The reminders themselves are SQL (migration 0004): `wecom_fee_reminders_due` reads the
//! school's view `active_enrollments_needing_renewal`, renders the templates in
//! `wecom_templates` under the settings in `wecom_settings`, and `wecom_enqueue_fee_reminders`
//! inserts the result. SQL owns them because DBAs, pg_cron and triggers run them without this
//! binary; this module only calls those functions and shows their result to people.

pub mod daily;
pub mod schedule;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;

/// One reminder the day calls for, rendered, as `wecom_fee_reminders_due` returns it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueReminder {
    /// The view's `enrollment_id` (or `id`), as text.
    pub enrollment_key: String,
    /// The same as a number when it is one (copied to the outbox and the log).
    pub enrollment_id: Option<i64>,
    /// The view's `student_name`, for people reading the plan.
    pub student_name: Option<String>,
    /// Days left, counted from the day being planned.
    pub days_until_renewal: i32,
    /// At most `reminder_urgent_days` left: the urgent template.
    pub urgent: bool,
    /// Where it goes; `None` when routing says not to send it.
    pub destination: Option<String>,
    /// The exact WeCom body.
    pub payload: Option<Value>,
    /// `fee_reminder:<enrollment>:<day>`: one reminder per enrollment per local day.
    pub dedupe_key: String,
    /// Now, or the run time of a future day being enqueued ahead.
    pub not_before: DateTime<Utc>,
    /// The end of that local day: a stale reminder is worse than none.
    pub expires_at: DateTime<Utc>,
    /// Already in the outbox for this day: enqueuing again adds nothing.
    pub already_enqueued: bool,
    /// Why it cannot be enqueued (no robot for the destination, a payload WeCom would refuse).
    pub problem: Option<String>,
}

impl DueReminder {
    /// It would be enqueued now: no problem, not already there.
    pub fn would_enqueue(&self) -> bool {
        self.problem.is_none() && !self.already_enqueued
    }
}

/// The reminders of one local day.
#[derive(Debug, Clone)]
pub struct DayPlan {
    /// The local day planned.
    pub date: NaiveDate,
    /// `wecom_settings.default_timezone`, the zone "today" is in.
    pub zone: String,
    /// Every reminder the day calls for, sendable or not.
    pub reminders: Vec<DueReminder>,
}

/// The day `date` (default: today in the configured zone) and the zone.
async fn resolve_day(
    conn: &mut sqlx::PgConnection,
    date: Option<NaiveDate>,
) -> sqlx::Result<(NaiveDate, String)> {
    sqlx::query_as(
        "SELECT coalesce($1, (now() AT TIME ZONE wecom_setting('default_timezone', 'Asia/Hong_Kong'))::date),
                wecom_setting('default_timezone', 'Asia/Hong_Kong')",
    )
    .bind(date)
    .fetch_one(conn)
    .await
}

async fn due(conn: &mut sqlx::PgConnection, date: NaiveDate) -> sqlx::Result<Vec<DueReminder>> {
    sqlx::query_as("SELECT * FROM wecom_fee_reminders_due($1)")
        .bind(date)
        .fetch_all(conn)
        .await
}

/// Every reminder `date` calls for, rendered, without enqueuing anything.
pub async fn preview(pool: &PgPool, date: Option<NaiveDate>) -> sqlx::Result<DayPlan> {
    let mut conn = pool.acquire().await?;
    let (date, zone) = resolve_day(&mut conn, date).await?;
    let reminders = due(&mut conn, date).await?;
    Ok(DayPlan {
        date,
        zone,
        reminders,
    })
}

/// What `enqueue` did.
#[derive(Debug, Clone)]
pub struct EnqueueReport {
    /// The day's plan as it was just before enqueuing.
    pub plan: DayPlan,
    /// How many rows were inserted (what `wecom_enqueue_fee_reminders` returned).
    pub enqueued: i64,
    /// Inserted rows per destination.
    pub per_destination: BTreeMap<String, i64>,
}

/// Enqueue `date`'s reminders (the same function the daily run calls) and say what happened.
pub async fn enqueue(pool: &PgPool, date: Option<NaiveDate>) -> sqlx::Result<EnqueueReport> {
    let mut tx = pool.begin().await?;
    let (date, zone) = resolve_day(&mut tx, date).await?;
    let reminders = due(&mut tx, date).await?;
    let enqueued: i32 = sqlx::query_scalar("SELECT wecom_enqueue_fee_reminders($1)")
        .bind(date)
        .fetch_one(&mut *tx)
        .await?;
    // Rows this transaction inserted carry its start time, now().
    let keys: Vec<&str> = reminders.iter().map(|r| r.dedupe_key.as_str()).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT webhook_name, count(*) FROM wecom_outbox
         WHERE dedupe_key = ANY($1) AND created_at = now()
         GROUP BY webhook_name ORDER BY webhook_name",
    )
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(EnqueueReport {
        plan: DayPlan {
            date,
            zone,
            reminders,
        },
        enqueued: enqueued.into(),
        per_destination: rows.into_iter().collect(),
    })
}

/// A WeCom body as a parent reads it in the group: the text, or a news card's title,
/// description and link. Other types (not produced by reminders) are shown as JSON.
pub fn as_parent_reads(payload: &Value) -> String {
    match payload["msgtype"].as_str() {
        Some("text") => payload["text"]["content"]
            .as_str()
            .unwrap_or_default()
            .into(),
        Some("news") => payload["news"]["articles"]
            .as_array()
            .map(|articles| {
                articles
                    .iter()
                    .map(article_as_read)
                    .collect::<Vec<_>>()
                    .join("\n\n")
            })
            .unwrap_or_default(),
        _ => payload.to_string(),
    }
}

fn article_as_read(article: &Value) -> String {
    let mut text = format!("[{}]", article["title"].as_str().unwrap_or_default());
    if let Some(description) = article["description"].as_str() {
        text.push('\n');
        text.push_str(description);
    }
    if let Some(url) = article["url"].as_str() {
        text.push_str("\n🔗 ");
        text.push_str(url);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_reads_as_its_content() {
        let p = json!({"msgtype": "text", "text": {"content": "学费续费提醒\nStudent: 陈小明"}});
        assert_eq!(as_parent_reads(&p), "学费续费提醒\nStudent: 陈小明");
    }

    #[test]
    fn news_reads_as_title_description_and_link() {
        let p = json!({"msgtype": "news", "news": {"articles": [
            {"title": "Fee Renewal - Emily", "description": "5 days left", "url": "https://pay.example/1"}
        ]}});
        assert_eq!(
            as_parent_reads(&p),
            "[Fee Renewal - Emily]\n5 days left\n🔗 https://pay.example/1"
        );
    }
}
