//! What the demo prints: progress while the pool drains, a few messages as a parent reads
//! them in WeChat, and the summary that shows the limits held.

use super::school::{key_of, Db, POOL, POOL_ROBOTS, QUIET_ROBOT, RATE_LIMIT};
use crate::standin::{Received, Standin};
use serde_json::Value;
use std::fmt::Write;
use std::time::Duration;

/// Rows of the pool's destination by state, polled while it drains.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub sent: i64,
    pub waiting: i64,
    pub failed: i64,
}

impl Progress {
    /// Read the counts for the pool's destination.
    pub async fn read(db: Db<'_>) -> sqlx::Result<Progress> {
        let (sent, waiting, failed): (i64, i64, i64) = match db {
            Db::Pg(pool) => {
                sqlx::query_as(
                    "SELECT count(*) FILTER (WHERE status = 'sent'),
                            count(*) FILTER (WHERE status IN ('pending', 'sending')),
                            count(*) FILTER (WHERE status IN ('failed', 'expired', 'cancelled'))
                     FROM wecom_outbox WHERE webhook_name = $1",
                )
                .bind(POOL)
                .fetch_one(pool)
                .await?
            }
            Db::My(pool) => {
                sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(status = 'sent'), 0) AS SIGNED),
                            CAST(COALESCE(SUM(status IN ('pending', 'sending')), 0) AS SIGNED),
                            CAST(COALESCE(SUM(status IN ('failed', 'expired', 'cancelled')), 0) AS SIGNED)
                     FROM wecom_outbox WHERE webhook_name = ?",
                )
                .bind(POOL)
                .fetch_one(pool)
                .await?
            }
        };
        Ok(Progress {
            sent,
            waiting,
            failed,
        })
    }

    /// Nothing left to do for the pool.
    pub fn done(&self) -> bool {
        self.waiting == 0
    }

    /// `[  3.0 s] sent  60 / 136, waiting  76   (45009s: 0)`
    pub fn line(&self, elapsed: Duration, rejected_45009: u64) -> String {
        let total = self.sent + self.waiting + self.failed;
        format!(
            "  [{:>5.1} s] sent {:>4} / {total}, waiting {:>4}   (45009s so far: {rejected_45009})",
            elapsed.as_secs_f64(),
            self.sent,
            self.waiting
        )
    }
}

/// Up to `n` messages the parents' group received, as a parent reads them in WeChat: the
/// first normal reminder, the first urgent one, and the first message of another kind.
pub fn parent_view(standin: &Standin, n: usize) -> String {
    let keys: Vec<String> = POOL_ROBOTS.iter().map(|r| key_of(r)).collect();
    let received: Vec<Received> = standin
        .received()
        .into_iter()
        .filter(|r| keys.contains(&r.key))
        .collect();
    let text = |r: &Received| r.body.to_string().to_lowercase();
    let wants: [fn(&str) -> bool; 3] = [
        |t| t.contains("renew") && !t.contains("urgent"),
        |t| t.contains("renew") && t.contains("urgent"),
        |t| !t.contains("renew"),
    ];
    let picked: Vec<&Received> = wants
        .iter()
        .filter_map(|want| received.iter().find(|r| want(&text(r))))
        .collect();
    let mut out = String::new();
    for r in picked.into_iter().take(n) {
        let _ = writeln!(out, "  ┌──── {} ────", r.at_utc.format("%H:%M:%S UTC"));
        for line in as_read(&r.body).lines() {
            let _ = writeln!(out, "  │ {line}");
        }
        let _ = writeln!(out, "  └────");
    }
    out
}

/// A message body as WeChat shows it: text as is; news as its title, description and link.
fn as_read(body: &Value) -> String {
    match body["msgtype"].as_str() {
        Some("news") => {
            let mut out = String::new();
            for a in body["news"]["articles"].as_array().into_iter().flatten() {
                let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
                let _ = writeln!(out, "[card] {}", text("title"));
                let _ = writeln!(out, "{}", text("description"));
                let _ = writeln!(out, "(tap to open {})", text("url"));
            }
            out
        }
        Some(t) => body[t]["content"].as_str().unwrap_or_default().to_owned(),
        None => body.to_string(),
    }
}

/// Everything the summary states.
#[derive(Debug)]
pub struct Summary {
    pub progress: Progress,
    pub per_robot: Vec<(String, i64)>,
    pub rejected_45009: u64,
    pub held: i64,
    pub quiet_window: String,
    pub taken: Duration,
    pub window: Duration,
}

impl Summary {
    /// Read the log, the held rows and the quiet robot's window.
    pub async fn read(
        db: Db<'_>,
        standin: &Standin,
        taken: Duration,
        window: Duration,
    ) -> sqlx::Result<Summary> {
        let (per_robot, held, quiet_window) = match db {
            Db::Pg(pool) => details_pg(pool).await?,
            Db::My(pool) => details_mysql(pool).await?,
        };
        Ok(Summary {
            progress: Progress::read(db).await?,
            per_robot,
            rejected_45009: standin.stats().rejected_45009,
            held,
            quiet_window,
            taken,
            window,
        })
    }

    /// The summary block.
    pub fn render(&self) -> String {
        let p = &self.progress;
        let total = p.sent + p.waiting + p.failed;
        let robots = self
            .per_robot
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let secs = self.window.as_secs_f64();
        let floor = physical_limit(total, POOL_ROBOTS.len() as i64, self.window);
        let real = physical_limit(total, POOL_ROBOTS.len() as i64, Duration::from_secs(60));
        let mut out = String::from("Summary\n");
        let mut line = |label: &str, text: String| {
            let _ = writeln!(out, "  {label:<21}{text}");
        };
        line(
            "sent:",
            format!("{} of {total} to {POOL} ({} failed)", p.sent, p.failed),
        );
        line("per robot:", robots);
        line(
            "45009s seen:",
            format!(
                "{} (the stand-in counts arrivals per robot exactly like WeCom)",
                self.rejected_45009
            ),
        );
        line(
            "held by quiet hours:",
            format!(
                "{} for {QUIET_ROBOT} (its window is {}; they go when it opens)",
                self.held, self.quiet_window
            ),
        );
        line(
            "time taken:",
            format!(
                "{:.1} s; physical limit for {total} messages with {} robots × {RATE_LIMIT} per {secs} s: {:.1} s",
                self.taken.as_secs_f64(),
                POOL_ROBOTS.len(),
                floor.as_secs_f64()
            ),
        );
        line(
            "",
            format!(
                "(with WeCom's real 60 s window the same day takes about {:.0} s; one robot alone, {:.0} s)",
                real.as_secs_f64(),
                physical_limit(total, 1, Duration::from_secs(60)).as_secs_f64()
            ),
        );
        out
    }
}

/// What the summary reads besides the progress: sent per robot, held rows, the quiet window.
type Details = (Vec<(String, i64)>, i64, String);

/// [`Details`] on PostgreSQL.
async fn details_pg(pool: &sqlx::PgPool) -> sqlx::Result<Details> {
    let per_robot = sqlx::query_as(
        "SELECT robot_name, count(*) FROM wecom_message_log
         WHERE webhook_name = $1 AND send_status = 'sent'
         GROUP BY robot_name ORDER BY robot_name",
    )
    .bind(POOL)
    .fetch_all(pool)
    .await?;
    let held = sqlx::query_scalar(
        "SELECT count(*) FROM wecom_outbox WHERE webhook_name = $1 AND status = 'pending'",
    )
    .bind(QUIET_ROBOT)
    .fetch_one(pool)
    .await?;
    let quiet_window = sqlx::query_scalar(
        "SELECT to_char(send_window_start, 'HH24:MI') || '-' || to_char(send_window_end, 'HH24:MI')
                || ' ' || timezone
         FROM wecom_webhooks WHERE webhook_name = $1",
    )
    .bind(QUIET_ROBOT)
    .fetch_one(pool)
    .await?;
    Ok((per_robot, held, quiet_window))
}

/// [`Details`] on MySQL / MariaDB.
async fn details_mysql(pool: &sqlx::MySqlPool) -> sqlx::Result<Details> {
    let per_robot = sqlx::query_as(
        "SELECT robot_name, COUNT(*) FROM wecom_message_log
         WHERE webhook_name = ? AND send_status = 'sent'
         GROUP BY robot_name ORDER BY robot_name",
    )
    .bind(POOL)
    .fetch_all(pool)
    .await?;
    let held = sqlx::query_scalar(
        "SELECT COUNT(*) FROM wecom_outbox WHERE webhook_name = ? AND status = 'pending'",
    )
    .bind(QUIET_ROBOT)
    .fetch_one(pool)
    .await?;
    let quiet_window = sqlx::query_scalar(
        "SELECT CONVERT(CONCAT(TIME_FORMAT(send_window_start, '%H:%i'), '-',
                               TIME_FORMAT(send_window_end, '%H:%i'), ' ',
                               COALESCE(timezone, wecom_setting('default_timezone', 'UTC')))
                        USING utf8mb4)
         FROM wecom_webhooks WHERE webhook_name = ?",
    )
    .bind(QUIET_ROBOT)
    .fetch_one(pool)
    .await?;
    Ok((per_robot, held, quiet_window))
}

/// The least time `k` messages take through `robots` robots of WeCom's limit per `window`:
/// the first batch goes at once, each further batch one window later.
pub fn physical_limit(k: i64, robots: i64, window: Duration) -> Duration {
    let per_window = robots * RATE_LIMIT as i64;
    if k <= 0 || per_window <= 0 {
        return Duration::ZERO;
    }
    let windows = (k + per_window - 1) / per_window - 1;
    window * windows as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn physical_limit_counts_whole_windows_after_the_first_batch() {
        let w = Duration::from_secs(3);
        assert_eq!(physical_limit(0, 3, w), Duration::ZERO);
        assert_eq!(physical_limit(60, 3, w), Duration::ZERO);
        assert_eq!(physical_limit(61, 3, w), w);
        assert_eq!(physical_limit(136, 3, w), w * 2);
        assert_eq!(physical_limit(21, 1, w), w);
    }

    #[test]
    fn news_reads_as_title_description_and_link() {
        let body = json!({"msgtype": "news", "news": {"articles": [
            {"title": "T", "description": "D1\nD2", "url": "https://x"}]}});
        assert_eq!(
            as_read(&body),
            "[card] T\nD1\nD2\n(tap to open https://x)\n"
        );
        let text = json!({"msgtype": "text", "text": {"content": "hello"}});
        assert_eq!(as_read(&text), "hello");
    }
}
