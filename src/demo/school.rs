//! The demo's data: the example school, its robots (a pool of three serving the parents'
//! group, and a tutors' robot in its quiet hours), and the messages the day produces.
//! Each query is written for both backends, side by side: the PostgreSQL text first, then the
//! MySQL / MariaDB one.

use crate::standin::Standin;
use crate::store::Store;
use chrono::{NaiveTime, Timelike, Utc};
use sqlx::{MySqlPool, PgPool};
use std::time::Duration;

/// The destination the reminders go to: the pool's name, as in the seed's Option 1.
pub const POOL: &str = "parent_group";
/// The robots of the pool.
pub const POOL_ROBOTS: [&str; 3] = ["parent_group_1", "parent_group_2", "parent_group_3"];
/// An internal robot whose send window is closed while the demo runs.
pub const QUIET_ROBOT: &str = "tutor_group";
/// WeCom's real limit per robot per window.
pub const RATE_LIMIT: u32 = 20;
/// The zone the quiet robot's window is written in (the demo school's, and the
/// `default_timezone` a fresh MySQL database starts with).
const QUIET_ZONE: chrono_tz::Tz = chrono_tz::Asia::Hong_Kong;

/// The demo's database, whichever backend `DATABASE_URL` chose: every demo query matches on
/// it, so the two dialects stay next to each other.
#[derive(Debug, Clone, Copy)]
pub enum Db<'a> {
    /// PostgreSQL (the throwaway cluster, or a `postgres://` server).
    Pg(&'a PgPool),
    /// MySQL 8.0 / MariaDB (a `mysql://` or `mariadb://` server).
    My(&'a MySqlPool),
}

impl<'a> Db<'a> {
    /// The pool behind `store`.
    pub fn of(store: &'a Store) -> Db<'a> {
        match (store.postgres_pool(), store.mysql_pool()) {
            (Some(pg), _) => Db::Pg(pg),
            (None, Some(my)) => Db::My(my),
            (None, None) => unreachable!("a store is PostgreSQL or MySQL"),
        }
    }
}

/// Point the pool and the quiet robot at the stand-in, with `window` as their rate window.
pub async fn add_robots(db: Db<'_>, standin: &Standin, window: Duration) -> sqlx::Result<()> {
    for (i, name) in POOL_ROBOTS.iter().enumerate() {
        let about = format!("Demo: parents' customer group, robot {} of 3", i + 1);
        let url = standin.url_for(&key_of(name));
        upsert_robot(db, name, &url, Some(POOL), window, &about).await?;
    }
    let url = standin.url_for(&key_of(QUIET_ROBOT));
    let about = "Demo: tutors' group, in its quiet hours now";
    upsert_robot(db, QUIET_ROBOT, &url, None, window, about).await?;
    close_window(db).await
}

/// The quiet robot's window opens 2 hours from now (local, whole hours) and lasts one hour.
/// On MySQL the local hour is computed here: the server's time zone tables may be empty.
async fn close_window(db: Db<'_>) -> sqlx::Result<()> {
    match db {
        Db::Pg(pool) => {
            sqlx::query(
                "UPDATE wecom_webhooks
                    SET timezone = 'Asia/Hong_Kong',
                        send_window_start = (date_trunc('hour', now() AT TIME ZONE 'Asia/Hong_Kong') + interval '2 hours')::time,
                        send_window_end   = (date_trunc('hour', now() AT TIME ZONE 'Asia/Hong_Kong') + interval '3 hours')::time
                  WHERE webhook_name = $1",
            )
            .bind(QUIET_ROBOT)
            .execute(pool)
            .await?;
        }
        Db::My(pool) => {
            // The zone is left NULL (default_timezone, Asia/Hong_Kong): the MySQL claim cannot
            // read a robot's own utf8mb4_bin `timezone` yet (sqlx sees VARBINARY).
            let hour = Utc::now().with_timezone(&QUIET_ZONE).hour();
            let at = |h: u32| NaiveTime::from_hms_opt(h % 24, 0, 0).expect("an hour of the day");
            sqlx::query(
                "UPDATE wecom_webhooks
                    SET send_window_start = ?, send_window_end = ?
                  WHERE webhook_name = ?",
            )
            .bind(at(hour + 2))
            .bind(at(hour + 3))
            .bind(QUIET_ROBOT)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// The stand-in key of a demo robot (never printed).
pub fn key_of(robot: &str) -> String {
    format!("demo-key-{robot}")
}

async fn upsert_robot(
    db: Db<'_>,
    name: &str,
    url: &str,
    pool_name: Option<&str>,
    window: Duration,
    about: &str,
) -> sqlx::Result<()> {
    match db {
        Db::Pg(pool) => {
            sqlx::query(
                "INSERT INTO wecom_webhooks
                        (webhook_name, webhook_url, pool_name, rate_limit, rate_window, is_external,
                         target_description, created_by)
                 VALUES ($1, $2, $3, $4, make_interval(secs => $5), $3 IS NOT NULL, $6, 'wecom-outbox demo')
                 ON CONFLICT (webhook_name) DO UPDATE
                    SET webhook_url = EXCLUDED.webhook_url, pool_name = EXCLUDED.pool_name,
                        rate_limit = EXCLUDED.rate_limit, rate_window = EXCLUDED.rate_window,
                        is_external = EXCLUDED.is_external, is_active = true, disabled_reason = NULL,
                        send_window_start = NULL, send_window_end = NULL, send_days = NULL",
            )
            .bind(name)
            .bind(url)
            .bind(pool_name)
            .bind(RATE_LIMIT as i32)
            .bind(window.as_secs_f64())
            .bind(about)
            .execute(pool)
            .await?;
        }
        Db::My(pool) => {
            // rate_window is whole seconds on MySQL: a shorter window is rounded up.
            let secs = window.as_secs_f64().ceil().max(1.0) as i32;
            sqlx::query(
                "INSERT INTO wecom_webhooks
                        (webhook_name, webhook_url, pool_name, rate_limit, rate_window, is_external,
                         target_description, created_by)
                 VALUES (?, ?, ?, ?, ?, ?, ?, 'wecom-outbox demo')
                 ON DUPLICATE KEY UPDATE
                        webhook_url = VALUES(webhook_url), pool_name = VALUES(pool_name),
                        rate_limit = VALUES(rate_limit), rate_window = VALUES(rate_window),
                        is_external = VALUES(is_external), is_active = TRUE, disabled_reason = NULL,
                        send_window_start = NULL, send_window_end = NULL, send_days = NULL",
            )
            .bind(name)
            .bind(url)
            .bind(pool_name)
            .bind(RATE_LIMIT as i32)
            .bind(secs)
            .bind(pool_name.is_some())
            .bind(about)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// The statement that enqueues the day's reminders, as a DBA would type it on this backend.
pub fn enqueue_reminders_sql(db: Db<'_>) -> &'static str {
    match db {
        Db::Pg(_) => "SELECT wecom_enqueue_fee_reminders()",
        Db::My(_) => "CALL wecom_enqueue_fee_reminders(NULL)",
    }
}

/// The text of lesson confirmation `i`, as AppSheet would write it.
fn lesson_confirmation(i: u32) -> String {
    const DAYS: [&str; 6] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    format!(
        "📅 Lesson confirmed / 上课确认 #{i}\nSee you on {} at {}:00. Reply in the group if you need to reschedule.",
        DAYS[(i % 6) as usize],
        15 + i % 4
    )
}

/// The text of the tutors' list `i`.
fn tutor_schedule(i: u32) -> String {
    format!("📋 Tomorrow's sessions, list {i} of 3: see the timetable")
}

/// Plain text rows written the way AppSheet's "Add a new row" action would (no JSON), to
/// give the pool more than one window of work.
pub async fn enqueue_appsheet_rows(db: Db<'_>, n: u32) -> sqlx::Result<u64> {
    let texts: Vec<String> = (1..=n).map(lesson_confirmation).collect();
    insert_text_rows(db, POOL, &texts, "lesson_confirmation").await
}

/// A few messages for the tutors' robot, which stay pending while its window is closed.
pub async fn enqueue_for_tutors(db: Db<'_>) -> sqlx::Result<u64> {
    let texts: Vec<String> = (1..=3).map(tutor_schedule).collect();
    insert_text_rows(db, QUIET_ROBOT, &texts, "tutor_schedule").await
}

/// One INSERT of plain-text rows for `destination` (nothing for no rows).
async fn insert_text_rows(
    db: Db<'_>,
    destination: &str,
    texts: &[String],
    message_type: &str,
) -> sqlx::Result<u64> {
    if texts.is_empty() {
        return Ok(0);
    }
    let sql = "INSERT INTO wecom_outbox (webhook_name, content, message_type) ";
    let done = match db {
        Db::Pg(pool) => {
            let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(sql);
            insert.push_values(texts, |mut row, text| {
                row.push_bind(destination)
                    .push_bind(text)
                    .push_bind(message_type);
            });
            insert.build().execute(pool).await?.rows_affected()
        }
        Db::My(pool) => {
            let mut insert = sqlx::QueryBuilder::<sqlx::MySql>::new(sql);
            insert.push_values(texts, |mut row, text| {
                row.push_bind(destination)
                    .push_bind(text)
                    .push_bind(message_type);
            });
            insert.build().execute(pool).await?.rows_affected()
        }
    };
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lesson_confirmations_read_as_the_postgresql_demo_wrote_them() {
        assert_eq!(
            lesson_confirmation(7),
            "📅 Lesson confirmed / 上课确认 #7\nSee you on Tue at 18:00. Reply in the group if you need to reschedule."
        );
    }
}
