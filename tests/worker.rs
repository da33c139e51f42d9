//! The worker's rules end to end: a real PostgreSQL, real HTTP to the stand-in, in-process
//! replicas. Each test sets up one situation a parent or an operator would care about.

use chrono::{Duration as ChronoDuration, Utc};
use std::time::Duration;
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};

const SECOND: Duration = Duration::from_secs(1);

async fn setup(limit: usize, window: Duration) -> (Standin, TestDatabase) {
    let fake = standin(limit, window).await;
    let db = TestDatabase::migrated().await;
    (fake, db)
}

async fn one_robot(limit: usize, window: Duration) -> (Standin, TestDatabase) {
    let (fake, db) = setup(limit, window).await;
    db.add_robot(&fake, "parent_group", None, limit as u32, window)
        .await;
    (fake, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_window_holds_rows_and_opening_it_releases_them() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    let now = Utc::now();
    let (opens, closes) = (
        now + ChronoDuration::hours(2),
        now + ChronoDuration::hours(3),
    );
    db.exec(&format!(
        "UPDATE wecom_webhooks SET timezone = 'UTC', send_window_start = '{}', send_window_end = '{}'",
        opens.format("%H:%M:%S"),
        closes.format("%H:%M:%S")
    ))
    .await;
    db.enqueue("parent_group", "at 3 a.m.?", 3).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.received().len(),
        0,
        "nothing may be sent outside the window"
    );
    assert_eq!(db.status_count("pending").await, 3);
    let wait_secs = db
        .count("SELECT extract(epoch FROM next_check_at - now())::bigint FROM wecom_robot_state")
        .await;
    assert!(
        (7100..=7200).contains(&wait_secs),
        "the robot sleeps until its window opens: {wait_secs} s"
    );

    let (opens, closes) = (
        now - ChronoDuration::minutes(1),
        now + ChronoDuration::hours(1),
    );
    db.exec(&format!(
        "UPDATE wecom_webhooks SET send_window_start = '{}', send_window_end = '{}'",
        opens.format("%H:%M:%S"),
        closes.format("%H:%M:%S")
    ))
    .await;
    db.wait_for_status("sent", 3, 5 * SECOND).await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_days_exclude_today() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    let today = db
        .count("SELECT extract(isodow FROM now() AT TIME ZONE 'UTC')::bigint")
        .await;
    let tomorrow = today % 7 + 1;
    db.exec(&format!(
        "UPDATE wecom_webhooks SET timezone = 'UTC', send_days = ARRAY[{tomorrow}]"
    ))
    .await;
    db.enqueue("parent_group", "not today", 1).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    tokio::time::sleep(SECOND).await;
    assert_eq!(fake.received().len(), 0);
    db.exec(&format!(
        "UPDATE wecom_webhooks SET send_days = ARRAY[{today}, {tomorrow}]"
    ))
    .await;
    db.wait_for_status("sent", 1, 5 * SECOND).await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_45009_requeues_without_using_an_attempt_and_pauses_the_robot() {
    let window = SECOND;
    let (fake, db) = one_robot(20, window).await;
    fake.set_behaviour("key-parent_group", Behaviour::FailTimes(2, 45009));
    db.enqueue("parent_group", "rate limited", 1).await;
    db.exec("UPDATE wecom_outbox SET max_attempts = 1").await;
    let replica = Replica::start(&db, fast_config("w1", &fake));

    db.wait_for_status("sent", 1, 10 * SECOND).await;
    replica.stop().await;
    assert_eq!(
        db.count("SELECT attempts::bigint FROM wecom_outbox").await,
        1,
        "45009s used no attempt"
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 1);
    assert_eq!(
        db.count("SELECT consecutive_45009::bigint FROM wecom_robot_state")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT last_errcode::bigint FROM wecom_robot_state")
            .await,
        45009
    );
    let arrivals = fake.stats();
    assert_eq!(arrivals.rejected_45009, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_45009_back_off_longer_each_time() {
    let window = Duration::from_millis(500);
    let (fake, db) = one_robot(20, window).await;
    fake.set_behaviour("key-parent_group", Behaviour::Errcode(45009));
    db.enqueue("parent_group", "blocked", 1).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    // Pauses of 0.5, 1, 2 s: three 45009s take at least 1.5 s, a fourth not before 3.5 s.
    db.wait_for(
        "SELECT consecutive_45009::bigint FROM wecom_robot_state",
        3,
        5 * SECOND,
    )
    .await;
    let pause_ms = db
        .count("SELECT (extract(epoch FROM paused_until - last_error_at) * 1000)::bigint FROM wecom_robot_state")
        .await;
    assert!(
        (1900..=2100).contains(&pause_ms),
        "third pause is 4 windows: {pause_ms} ms"
    );
    replica.stop().await;
    assert_eq!(db.status_count("pending").await, 1);
    assert_eq!(
        db.count("SELECT attempts::bigint FROM wecom_outbox").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_back_off_then_fail_with_one_log_row() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    fake.set_behaviour("key-parent_group", Behaviour::Errcode(-1));
    db.enqueue("parent_group", "system busy", 1).await;
    db.exec("UPDATE wecom_outbox SET max_attempts = 4").await;
    let started = std::time::Instant::now();
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("failed", 1, 10 * SECOND).await;
    let elapsed = started.elapsed();
    replica.stop().await;

    assert_eq!(fake.stats().other_errors, 4, "four attempts reached WeCom");
    // Backoff 50 + 100 + 200 ms at least (jitter only adds).
    assert!(
        elapsed >= Duration::from_millis(350),
        "retries waited: {elapsed:?}"
    );
    assert_eq!(
        db.count("SELECT attempts::bigint FROM wecom_outbox").await,
        4
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log WHERE send_status = 'failed' AND errcode = -1"
        )
        .await,
        1
    );
    let error: String = sqlx::query_scalar("SELECT error_message FROM wecom_message_log")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(
        error.contains("errcode -1") && error.contains("gave up after 4 attempts"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retried_until_it_goes_through() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    fake.set_behaviour("key-parent_group", Behaviour::HttpStatus(502));
    db.enqueue("parent_group", "eventually", 1).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for(
        "SELECT count(*) FROM wecom_outbox WHERE attempts >= 2",
        1,
        5 * SECOND,
    )
    .await;
    fake.set_behaviour("key-parent_group", Behaviour::Normal);
    db.wait_for_status("sent", 1, 10 * SECOND).await;
    replica.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent'")
            .await,
        1
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_retried() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    fake.set_behaviour("key-parent_group", Behaviour::Drop);
    db.enqueue("parent_group", "after a drop", 1).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for(
        "SELECT count(*) FROM wecom_outbox WHERE attempts >= 1 AND status = 'pending'",
        1,
        5 * SECOND,
    )
    .await;
    fake.set_behaviour("key-parent_group", Behaviour::Normal);
    db.wait_for_status("sent", 1, 10 * SECOND).await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_wecom_refuses_fails_at_once() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    fake.set_behaviour("key-parent_group", Behaviour::Errcode(40058));
    db.enqueue("parent_group", "refused", 1).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("failed", 1, 5 * SECOND).await;
    replica.stop().await;
    assert_eq!(
        db.count("SELECT attempts::bigint FROM wecom_outbox").await,
        1,
        "no retry"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE errcode = 40058")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_gone_is_disabled_and_the_pool_delivers_its_rows() {
    let (fake, db) = setup(100, Duration::from_secs(60)).await;
    db.add_robot(
        &fake,
        "gone",
        Some("parent_group"),
        100,
        Duration::from_secs(60),
    )
    .await;
    db.add_robot(
        &fake,
        "alive",
        Some("parent_group"),
        100,
        Duration::from_secs(60),
    )
    .await;
    fake.set_behaviour("key-gone", Behaviour::Errcode(93000));
    db.enqueue("parent_group", "pool", 30).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("sent", 30, 10 * SECOND).await;
    replica.stop().await;

    let reason: Option<String> = sqlx::query_scalar(
        "SELECT disabled_reason FROM wecom_webhooks WHERE webhook_name = 'gone' AND NOT is_active",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(reason.unwrap().contains("93000"));
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE attempts <> 1")
            .await,
        0,
        "no attempt lost"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'failed'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_gone_robot_keeps_its_rows_pending() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    fake.set_behaviour("key-parent_group", Behaviour::Errcode(93004));
    db.enqueue("parent_group", "kept", 5).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for(
        "SELECT count(*) FROM wecom_webhooks WHERE NOT is_active",
        1,
        5 * SECOND,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.status_count("pending").await, 5);
    assert_eq!(db.count("SELECT sum(attempts) FROM wecom_outbox").await, 0);

    // A DBA gives the robot a new URL: it is back in service and the rows go out.
    db.exec(&format!(
        "UPDATE wecom_webhooks SET webhook_url = '{}'",
        fake.url_for("key-new-robot")
    ))
    .await;
    db.wait_for_status("sent", 5, 5 * SECOND).await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_outside_the_allowed_hosts_is_skipped_by_the_replica_and_stays_active() {
    let (fake, db) = setup(20, Duration::from_secs(60)).await;
    let elsewhere = fake.url_for("key-x").replace("127.0.0.1", "localhost");
    db.exec(&format!("INSERT INTO wecom_webhooks (webhook_name, webhook_url) VALUES ('parent_group', '{elsewhere}')"))
        .await;
    db.enqueue("parent_group", "nowhere", 2).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for(
        "SELECT count(*) FROM wecom_replica_notes WHERE worker_id = 'w1'",
        1,
        5 * SECOND,
    )
    .await;
    let note: String = sqlx::query_scalar("SELECT note FROM wecom_replica_notes")
        .fetch_one(db.pool())
        .await
        .unwrap();
    replica.stop().await;
    assert_eq!(fake.stats().accepted + fake.stats().other_errors, 0);
    assert_eq!(db.status_count("pending").await, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_webhooks WHERE is_active AND disabled_reason IS NULL")
            .await,
        1,
        "a replica's own configuration never disables a robot for the others"
    );
    assert!(
        note.contains("WECOM_ALLOWED_HOSTS") && !note.contains("key-x"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_rescued_by_another_replica() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    db.enqueue("parent_group", "orphan", 1).await;
    db.exec(
        "UPDATE wecom_outbox SET status = 'sending', attempts = 1, locked_by = 'dead-replica',
                locked_until = now() - interval '1 second'",
    )
    .await;
    let replica = Replica::start(&db, fast_config("w2", &fake));
    db.wait_for_status("sent", 1, 5 * SECOND).await;
    replica.stop().await;
    assert_eq!(
        db.count("SELECT attempts::bigint FROM wecom_outbox").await,
        2
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_on_the_last_attempt_fails_with_its_log_row() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    db.enqueue("parent_group", "orphan", 1).await;
    db.exec(
        "UPDATE wecom_outbox SET status = 'sending', attempts = 5, max_attempts = 5,
                locked_by = 'dead-replica', locked_until = now() - interval '1 second'",
    )
    .await;
    let replica = Replica::start(&db, fast_config("w2", &fake));
    db.wait_for_status("failed", 1, 5 * SECOND).await;
    replica.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'failed'")
            .await,
        1
    );
    assert_eq!(fake.received().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_expires_at_a_row_is_expired_never_sent() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, expires_at)
         VALUES ('parent_group', 'stale reminder', now() - interval '1 second'),
                ('parent_group', 'fresh reminder', now() + interval '1 hour')",
    )
    .await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("sent", 1, 5 * SECOND).await;
    db.wait_for_status("expired", 1, 5 * SECOND).await;
    replica.stop().await;
    let texts: Vec<String> = fake
        .received()
        .iter()
        .map(|m| m.body["text"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, vec!["fresh reminder"]);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log").await,
        1,
        "expired rows are not logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_before_holds_a_row_until_its_time() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, not_before)
         VALUES ('parent_group', 'later', now() + interval '1500 milliseconds')",
    )
    .await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.received().len(), 0);
    db.wait_for_status("sent", 1, 5 * SECOND).await;
    let late_ms = db
        .count("SELECT (extract(epoch FROM sent_at - not_before) * 1000)::bigint FROM wecom_outbox")
        .await;
    replica.stop().await;
    assert!(
        (0..500).contains(&late_ms),
        "sent soon after not_before, without polling hard: {late_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_goes_first_then_oldest() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, priority) VALUES ('parent_group', 'old normal', 0);
         INSERT INTO wecom_outbox (webhook_name, content, priority) VALUES ('parent_group', 'new normal', 0);
         INSERT INTO wecom_outbox (webhook_name, content, priority) VALUES ('parent_group', 'urgent', 5);",
    )
    .await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("sent", 3, 5 * SECOND).await;
    replica.stop().await;
    let order: Vec<String> = fake
        .received()
        .iter()
        .map(|m| m.body["text"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, vec!["urgent", "old normal", "new normal"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_rows_are_never_sent() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    db.enqueue("parent_group", "cancel me", 2).await;
    db.exec("UPDATE wecom_outbox SET status = 'cancelled' WHERE content = 'cancel me 1'")
        .await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("sent", 1, 5 * SECOND).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    replica.stop().await;
    assert_eq!(fake.received().len(), 1);
    assert_eq!(db.status_count("cancelled").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_wakes_an_idle_worker_at_once() {
    let (fake, db) = one_robot(20, Duration::from_secs(60)).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.enqueue("parent_group", "wake up", 1).await;
    db.wait_for_status("sent", 1, 5 * SECOND).await;
    let latency_ms = db
        .count("SELECT (extract(epoch FROM sent_at - created_at) * 1000)::bigint FROM wecom_outbox")
        .await;
    replica.stop().await;
    // max_idle is 2 s in tests: a NOTIFY-driven wake-up is far below it.
    assert!(
        latency_ms < 1000,
        "woken by NOTIFY, not by a timer: {latency_ms} ms"
    );
}
