//! One replica at a time listens (PostgreSQL): new rows still reach a replica at once, a
//! replica that stops hands listening on, the others still share a backlog, and a pool's
//! robots work side by side in one replica. Real PostgreSQL, real HTTP to the stand-in.

use std::time::Duration;
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::store::postgres::{LISTENER_LOCK, STANDBY_LOOK_EVERY};
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};
use wecom_outbox::worker::WorkerConfig;

const SECOND: Duration = Duration::from_secs(1);

/// The sessions holding the listening lock in the test's database.
const LISTENER_PIDS: &str = r#"
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((classid::int8 << 32) | objid::int8) = $1
"#;

async fn listener_pids(db: &TestDatabase) -> Vec<i32> {
    sqlx::query_scalar(LISTENER_PIDS)
        .bind(LISTENER_LOCK)
        .fetch_all(db.pool())
        .await
        .expect("pg_locks")
}

/// Wait until exactly one session listens and it is not `other_than`; its pid.
async fn one_listener(db: &TestDatabase, other_than: Option<i32>, within: Duration) -> i32 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let pids = listener_pids(db).await;
        if let [pid] = pids[..] {
            if Some(pid) != other_than {
                return pid;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected one listening session other than {other_than:?}, found {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Milliseconds from INSERT to sent of the newest sent row.
async fn newest_latency_ms(db: &TestDatabase) -> i64 {
    db.count(
        "SELECT (extract(epoch FROM sent_at - created_at) * 1000)::int8 FROM wecom_outbox
         WHERE status = 'sent' ORDER BY created_at DESC LIMIT 1",
    )
    .await
}

/// A replica whose own timer would not find new rows for a minute: what it does sooner, it
/// does because it listens or stands by.
fn patient(worker_id: &str, fake: &Standin) -> WorkerConfig {
    WorkerConfig {
        max_idle: Duration::from_secs(60),
        ..fast_config(worker_id, fake)
    }
}

/// One robot, w1 listening and w2 standing by (it has had its first look); w1's session pid.
async fn w1_listening_w2_standing_by() -> (Standin, TestDatabase, Replica, Replica, i32) {
    let fake = standin(20, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    db.add_robot(&fake, "parent_group", None, 20, Duration::from_secs(60))
        .await;
    let first = Replica::start(&db, patient("w1", &fake));
    let first_pid = one_listener(&db, None, 5 * SECOND).await;
    let second = Replica::start(&db, patient("w2", &fake));
    tokio::time::sleep(SECOND).await;
    assert_eq!(
        listener_pids(&db).await,
        vec![first_pid],
        "still one listener"
    );
    (fake, db, first, second, first_pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_listens_and_hands_listening_on_when_it_stops() {
    let (fake, db, first, second, first_pid) = w1_listening_w2_standing_by().await;
    db.enqueue("parent_group", "while w1 listens", 1).await;
    db.wait_for_status("sent", 1, 5 * SECOND).await;
    let woken = newest_latency_ms(&db).await;
    assert!(woken < 1000, "the listener is woken at once: {woken} ms");

    first.stop().await;
    one_listener(&db, Some(first_pid), STANDBY_LOOK_EVERY + 5 * SECOND).await;
    db.enqueue("parent_group", "after w2 took over", 1).await;
    db.wait_for_status("sent", 2, 5 * SECOND).await;
    let woken = newest_latency_ms(&db).await;
    second.stop().await;
    assert!(
        woken < 1000,
        "the new listener is woken at once: {woken} ms"
    );
    assert_eq!(fake.stats().accepted, 2, "each message sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_while_no_one_listens_are_found_by_the_replica_taking_over() {
    let (fake, db, first, second, first_pid) = w1_listening_w2_standing_by().await;
    first.stop().await;
    // Between the listener's exit and the take-over no one hears these.
    db.enqueue("parent_group", "unheard", 3).await;
    db.wait_for_status("sent", 3, STANDBY_LOOK_EVERY + 5 * SECOND)
        .await;
    one_listener(&db, Some(first_pid), 5 * SECOND).await;
    second.stop().await;
    assert_eq!(fake.stats().accepted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_standing_by_shares_a_backlog_the_listener_cannot_keep_up_with() {
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    for r in 0..4 {
        let name = format!("r{r}");
        db.add_robot(&fake, &name, None, 1000, Duration::from_secs(60))
            .await;
        fake.set_behaviour(
            &format!("key-{name}"),
            Behaviour::Delay(Duration::from_millis(300)),
        );
    }
    // The listener serves one robot at a time: alone it would need 4 × 8 × 0.3 s ≈ 10 s.
    let listener = Replica::start(
        &db,
        WorkerConfig {
            concurrency: 1,
            ..patient("w1", &fake)
        },
    );
    one_listener(&db, None, 5 * SECOND).await;
    let standby = Replica::start(&db, patient("w2", &fake));
    tokio::time::sleep(SECOND).await;
    for r in 0..4 {
        db.enqueue(&format!("r{r}"), "backlog", 8).await;
    }
    let mut sending_by = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + 30 * SECOND;
    while db.status_count("sent").await < 32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog not drained"
        );
        let by: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT locked_by FROM wecom_outbox WHERE status = 'sending'",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        sending_by.extend(by);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    listener.stop().await;
    standby.stop().await;
    assert!(
        sending_by.contains("w2"),
        "the replica standing by took part: {sending_by:?}"
    );
    assert_eq!(fake.stats().accepted, 32, "each message sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_sends_through_all_of_a_pools_robots_at_once() {
    // Each robot takes 5 at a time; 15 rows need all three robots, side by side.
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    for r in 0..3 {
        let name = format!("pg{r}");
        db.add_robot(&fake, &name, Some("parents"), 5, Duration::from_secs(60))
            .await;
        fake.set_behaviour(
            &format!("key-{name}"),
            Behaviour::Delay(Duration::from_millis(200)),
        );
    }
    let replica = Replica::start(&db, patient("w1", &fake));
    one_listener(&db, None, 5 * SECOND).await;
    db.enqueue("parents", "fees", 15).await;
    db.wait_for_status("sent", 15, 10 * SECOND).await;
    replica.stop().await;
    let received = fake.received();
    let first = received.iter().map(|m| m.at).min().unwrap();
    let robots_in_first_second: std::collections::BTreeSet<&str> = received
        .iter()
        .filter(|m| m.at < first + Duration::from_millis(900))
        .map(|m| m.key.as_str())
        .collect();
    // One robot at a time would send 5 in its first second (200 ms each), the next robot
    // only after the replica's next look.
    assert_eq!(
        robots_in_first_second.len(),
        3,
        "all three robots sent in the first second: {robots_in_first_second:?}"
    );
    assert_eq!(fake.stats().accepted, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_at_every_robot_offers_as_many_of_a_pools_robots_as_it_has_rows() {
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    for r in 0..3 {
        db.add_robot(
            &fake,
            &format!("pg{r}"),
            Some("parents"),
            20,
            Duration::from_secs(60),
        )
        .await;
    }
    db.enqueue("parents", "fees", 2).await;
    assert_eq!(db.store.due_robots(10, &[]).await.unwrap().len(), 2);
    db.enqueue("parents", "more fees", 5).await;
    assert_eq!(db.store.due_robots(10, &[]).await.unwrap().len(), 3);
}
