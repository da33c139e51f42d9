//! Daily fee-renewal reminders: what the day calls for (`Store::reminder_plan`), enqueuing it
//! by hand (`Store::enqueue_reminders`), and the once-a-day run the worker drives (`daily`;
//! its rule is the database's `wecom_daily_reminders_due`).
//!
//! The reminders themselves are SQL (migration 0004): `wecom_fee_reminders_due` reads the
//! school's view `active_enrollments_needing_renewal`, renders the templates in
//! `wecom_templates` under the settings in `wecom_settings`, and `wecom_enqueue_fee_reminders`
//! inserts the result. SQL owns them because DBAs, pg_cron and triggers run them without this
//! binary; this module only calls those functions and shows their result to people.

pub mod daily;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
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
