//! Several replicas, one pool, a stand-in that enforces WeCom's limit on arrival:
//! every row is delivered exactly once, and WeCom never has to say 45009.

use std::collections::HashSet;
use std::time::{Duration, Instant};
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_drain_a_pool_exactly_once_within_the_limit() {
    let window = Duration::from_secs(2);
    let fake = standin(5, window).await;
    let db = TestDatabase::migrated().await;
    for i in 1..=3 {
        db.add_robot(
            &fake,
            &format!("parent_{i}"),
            Some("parent_group"),
            5,
            window,
        )
        .await;
    }
    db.enqueue("parent_group", "reminder", 90).await;

    let started = Instant::now();
    let replicas: Vec<Replica> = (1..=3)
        .map(|i| Replica::start(&db, fast_config(&format!("replica-{i}"), &fake)))
        .collect();
    db.wait_for_status("sent", 90, Duration::from_secs(40))
        .await;
    let elapsed = started.elapsed();
    for r in replicas {
        r.stop().await;
    }

    let stats = fake.stats();
    let received = fake.received();
    let contents: HashSet<String> = received
        .iter()
        .map(|m| m.body["text"]["content"].as_str().unwrap().to_string())
        .collect();
    println!(
        "90 messages, pool of 3 robots at 5 per 2 s, 3 replicas: {:.2} s (physical limit 10 s), 45009 answers: {}",
        elapsed.as_secs_f64(),
        stats.rejected_45009
    );
    assert_eq!(stats.rejected_45009, 0, "WeCom had to say 45009");
    assert_eq!(received.len(), 90, "every message arrives once");
    assert_eq!(contents.len(), 90, "no message arrives twice");
    for key in ["key-parent_1", "key-parent_2", "key-parent_3"] {
        assert_eq!(
            stats.per_key[key].accepted, 30,
            "the pool shares the load evenly: {key}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent'")
            .await,
        90
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT outbox_id) FROM wecom_message_log")
            .await,
        90
    );
    assert_eq!(
        db.count("SELECT sum(total_messages_sent) FROM wecom_webhooks")
            .await,
        90
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE attempts <> 1")
            .await,
        0
    );
    // 90 messages at 15 per window need 5 windows after the first burst.
    assert!(
        elapsed >= Duration::from_secs(10),
        "faster than WeCom allows: {elapsed:?}"
    );
}
