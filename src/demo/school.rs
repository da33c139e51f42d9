//! The demo's data: the example school, its robots (a pool of three serving the parents'
//! group, and a tutors' robot in its quiet hours), and the messages the day produces.

use crate::standin::Standin;
use sqlx::PgPool;
use std::time::Duration;

/// The destination the reminders go to: the pool's name, as in the seed's Option 1.
pub const POOL: &str = "parent_group";
/// The robots of the pool.
pub const POOL_ROBOTS: [&str; 3] = ["parent_group_1", "parent_group_2", "parent_group_3"];
/// An internal robot whose send window is closed while the demo runs.
pub const QUIET_ROBOT: &str = "tutor_group";
/// WeCom's real limit per robot per window.
pub const RATE_LIMIT: u32 = 20;

/// Point the pool and the quiet robot at the stand-in, with `window` as their rate window.
pub async fn add_robots(pool: &PgPool, standin: &Standin, window: Duration) -> sqlx::Result<()> {
    for (i, name) in POOL_ROBOTS.iter().enumerate() {
        let about = format!("Demo: parents' customer group, robot {} of 3", i + 1);
        upsert_robot(
            pool,
            name,
            &standin.url_for(&key_of(name)),
            Some(POOL),
            window,
            &about,
        )
        .await?;
    }
    let url = standin.url_for(&key_of(QUIET_ROBOT));
    let about = "Demo: tutors' group, in its quiet hours now";
    upsert_robot(pool, QUIET_ROBOT, &url, None, window, about).await?;
    // Its window opens 2 hours from now (local, whole hours) and lasts one hour.
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
    Ok(())
}

/// The stand-in key of a demo robot (never printed).
pub fn key_of(robot: &str) -> String {
    format!("demo-key-{robot}")
}

async fn upsert_robot(
    pool: &PgPool,
    name: &str,
    url: &str,
    pool_name: Option<&str>,
    window: Duration,
    about: &str,
) -> sqlx::Result<()> {
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
    Ok(())
}

/// Run the school's reminder function, as the daily schedule would; returns how many it
/// enqueued.
pub async fn enqueue_reminders(pool: &PgPool) -> sqlx::Result<i32> {
    sqlx::query_scalar("SELECT wecom_enqueue_fee_reminders()")
        .fetch_one(pool)
        .await
}

/// Plain text rows written the way AppSheet's "Add a new row" action would (no JSON), to
/// give the pool more than one window of work.
pub async fn enqueue_appsheet_rows(pool: &PgPool, n: u32) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type)
         SELECT $1, format(E'📅 Lesson confirmed / 上课确认 #%s\nSee you on %s at %s:00. Reply in the group if you need to reschedule.',
                           i, (ARRAY['Mon','Tue','Wed','Thu','Fri','Sat'])[1 + i % 6], 15 + i % 4),
                'lesson_confirmation'
         FROM generate_series(1, $2) AS i",
    )
    .bind(POOL)
    .bind(n as i32)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A few messages for the tutors' robot, which stay pending while its window is closed.
pub async fn enqueue_for_tutors(pool: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type)
         SELECT $1, format('📋 Tomorrow''s sessions, list %s of 3: see the timetable', i), 'tutor_schedule'
         FROM generate_series(1, 3) AS i",
    )
    .bind(QUIET_ROBOT)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
