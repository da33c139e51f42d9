//! WeCom stricter than configured, on MariaDB / MySQL: the same rule as on PostgreSQL
//! (tests/rate_learning.rs) learns the real limit from the first 45009 of each robot and every
//! replica holds to it. Without `MYSQL_DATABASE_URL` the test prints SKIPPED and passes.

use std::collections::HashSet;
use std::time::Duration;
use wecom_outbox::testing::{fast_config, standin, MySqlTestDatabase, Replica};

const WINDOW: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_mysql_learn_that_wecom_allows_5_of_the_configured_10_and_hold_to_it() {
    let Some(db) = MySqlTestDatabase::migrated("mysql_rate_learning").await else {
        return;
    };
    let fake = standin(5, WINDOW).await;
    for name in ["parent_1", "parent_2"] {
        db.add_robot(&fake, name, Some("parent_group"), 10, WINDOW)
            .await;
    }
    db.enqueue("parent_group", "reminder", 40).await;

    let replicas: Vec<Replica> = (1..=2)
        .map(|i| Replica::start_url(&db.url, fast_config(&format!("replica-{i}"), &fake)))
        .collect();
    db.wait_for_status("sent", 40, Duration::from_secs(90))
        .await;
    for r in replicas {
        r.stop().await;
    }

    let stats = fake.stats();
    let contents: HashSet<String> = fake
        .received()
        .iter()
        .map(|m| m.body["text"]["content"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(stats.accepted, 40, "every message arrives");
    assert_eq!(contents.len(), 40, "no message arrives twice");
    for (key, counts) in &stats.per_key {
        assert!(
            counts.rejected_45009 <= 1,
            "{key} got {} answers of 45009",
            counts.rejected_45009
        );
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_robot_state WHERE learned_rate_limit = 5")
            .await,
        2,
        "each robot stored what WeCom accepted"
    );
}
