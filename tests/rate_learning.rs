//! WeCom stricter than configured (issue 15 item 5): robots configured at 10 per 2 s, a
//! stand-in that allows 5 per 2 s. The replicas learn the real limit from the first 45009 of
//! each robot, store it for every replica, and hold to it: every message is delivered once
//! with at most one 45009 per robot, and `status` shows the configured and the learned limit.

mod cli_support;

use cli_support::Cli;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use wecom_outbox::standin::Standin;
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};

const WINDOW: Duration = Duration::from_secs(2);

/// Every message arrived once, and no robot needed more than one 45009 to learn.
fn assert_learned_with_one_45009_per_robot(fake: &Standin, messages: usize) {
    let stats = fake.stats();
    let contents: HashSet<String> = fake
        .received()
        .iter()
        .map(|m| m.body["text"]["content"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(stats.accepted as usize, messages, "every message arrives");
    assert_eq!(contents.len(), messages, "no message arrives twice");
    for (key, counts) in &stats.per_key {
        assert!(
            counts.rejected_45009 <= 1,
            "{key} got {} answers of 45009: it did not hold to what it learned",
            counts.rejected_45009
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_learn_that_wecom_allows_5_of_the_configured_10_and_hold_to_it() {
    let fake = standin(5, WINDOW).await;
    let db = TestDatabase::migrated().await;
    for name in ["parent_1", "parent_2"] {
        db.add_robot(&fake, name, Some("parent_group"), 10, WINDOW)
            .await;
    }
    db.enqueue("parent_group", "reminder", 40).await;

    let replicas: Vec<Replica> = (1..=2)
        .map(|i| Replica::start(&db, fast_config(&format!("replica-{i}"), &fake)))
        .collect();
    db.wait_for_status("sent", 40, Duration::from_secs(60))
        .await;
    for r in replicas {
        r.stop().await;
    }

    assert_learned_with_one_45009_per_robot(&fake, 40);
    assert_eq!(
        db.count(
            "SELECT count(DISTINCT outbox_id) FROM wecom_message_log WHERE send_status = 'sent'"
        )
        .await,
        40
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_robot_state WHERE learned_rate_limit = 5")
            .await,
        2,
        "each robot stored what WeCom accepted"
    );

    let out = Cli::new(&["status", "--json"])
        .db(&db)
        .allow(&fake)
        .output()
        .await;
    out.ok();
    let status: Value = serde_json::from_str(&out.stdout).expect("status --json");
    for robot in status["destinations"][0]["robots"]
        .as_array()
        .expect("robots")
    {
        assert_eq!(robot["rate_limit"], 10, "{robot:#}");
        assert_eq!(robot["learned_rate_limit"], 5, "{robot:#}");
    }
    let out = Cli::new(&["status"]).db(&db).allow(&fake).output().await;
    out.ok();
    assert!(
        out.stdout.contains("per 2s (learned 5/2s"),
        "text status shows the learned limit: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rate_limit_forgets_what_was_learned_and_status_shows_none() {
    let fake = standin(5, WINDOW).await;
    let db = TestDatabase::migrated().await;
    db.add_robot(&fake, "parent_1", None, 10, WINDOW).await;
    db.exec("UPDATE wecom_robot_state SET learned_rate_limit = 5, learned_at = now()")
        .await;
    db.exec("UPDATE wecom_webhooks SET rate_limit = 8").await;
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_robot_state WHERE learned_rate_limit IS NOT NULL OR learned_at IS NOT NULL")
            .await,
        0
    );
    let out = Cli::new(&["status", "--json"])
        .db(&db)
        .allow(&fake)
        .output()
        .await;
    out.ok();
    let status: Value = serde_json::from_str(&out.stdout).expect("status --json");
    let robot = &status["destinations"][0]["robots"][0];
    assert!(robot["learned_rate_limit"].is_null(), "{robot:#}");
    assert_eq!(robot["rate_limit"], 8, "{robot:#}");
}
