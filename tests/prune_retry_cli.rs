//! `prune` and `retry` as an operator meets them: the real binary against a database of its
//! own (PostgreSQL; both backends' store behaviour is in tests/store_conformance.rs).

mod cli_support;

use cli_support::Cli;
use std::time::Duration;
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};

const SECOND: Duration = Duration::from_secs(1);

/// Rows of `destination` with `content LIKE prefix%` made `status`, finished `days` ago.
async fn finished(db: &TestDatabase, prefix: &str, status: &str, days: i64) {
    db.exec(&format!(
        "UPDATE wecom_outbox SET status = '{status}', last_error = 'boom at https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRETKEY123'
         WHERE content LIKE '{prefix}%'"
    ))
    .await;
    db.exec("ALTER TABLE wecom_outbox DISABLE TRIGGER wecom_outbox_finished_at")
        .await;
    db.exec(&format!(
        "UPDATE wecom_outbox SET finished_at = finished_at - interval '{days} days' WHERE content LIKE '{prefix}%'"
    ))
    .await;
    db.exec("ALTER TABLE wecom_outbox ENABLE TRIGGER wecom_outbox_finished_at")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_and_retry_refuse_nonsense_flags_with_a_clear_error() {
    let db = TestDatabase::migrated().await;
    for (args, says) in [
        (vec!["prune", "--older-than", "1h"], "less than a day"),
        (vec!["prune", "--older-than", "soon"], "is not a duration"),
        (
            vec!["prune", "--older-than", "90d", "--batch-size", "0"],
            "batch-size",
        ),
        (vec!["prune"], "--older-than"),
        (vec!["retry"], "say which failed messages to retry"),
        (
            vec!["retry", "--failed-since", "yesterday"],
            "neither an RFC 3339 time",
        ),
        (vec!["retry", "--id", "not-a-uuid"], "--id"),
        (
            vec!["retry", "--failed-since", "1h", "--failed-before", "2h"],
            "is not before --failed-before",
        ),
    ] {
        let out = Cli::new(&args).db(&db).output().await;
        out.fails();
        assert!(
            out.stderr.contains(says),
            "{args:?} should say {says:?}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_dry_run_deletes_nothing_and_prune_deletes_only_old_finished_rows() {
    let db = TestDatabase::migrated().await;
    db.add_robot_at(
        "parent_group",
        "http://127.0.0.1:9/x?key=k",
        None,
        20,
        60 * SECOND,
    )
    .await;
    db.enqueue("parent_group", "old", 3).await;
    db.enqueue("parent_group", "new", 2).await;
    db.enqueue("parent_group", "waiting", 2).await;
    finished(&db, "old", "cancelled", 100).await;
    finished(&db, "new", "cancelled", 10).await;

    let dry = Cli::new(&["prune", "--older-than", "90d", "--dry-run"])
        .db(&db)
        .output()
        .await;
    dry.ok();
    assert!(dry.stdout.contains("would delete 3 message(s)"), "{dry}");
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox").await,
        7,
        "a dry run deletes nothing"
    );

    let out = Cli::new(&["prune", "--older-than", "90d", "--batch-size", "2"])
        .db(&db)
        .output()
        .await;
    out.ok();
    assert!(out.stdout.contains("deleted 3 message(s)"), "{out}");
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE content LIKE 'old%'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE content LIKE 'new%'")
            .await,
        2
    );
    assert_eq!(db.status_count("pending").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_dry_run_lists_without_keys_and_retry_requeues_only_failed_rows() {
    let db = TestDatabase::migrated().await;
    db.add_robot_at(
        "parent_group",
        "http://127.0.0.1:9/x?key=k",
        None,
        20,
        60 * SECOND,
    )
    .await;
    db.add_robot_at("staff", "http://127.0.0.1:9/x?key=s", None, 20, 60 * SECOND)
        .await;
    db.enqueue("parent_group", "failed", 2).await;
    db.enqueue("staff", "staff failed", 1).await;
    db.enqueue("parent_group", "gone", 1).await;
    finished(&db, "failed", "failed", 0).await;
    finished(&db, "staff failed", "failed", 0).await;
    finished(&db, "gone", "cancelled", 0).await;

    let dry = Cli::new(&["retry", "--destination", "parent_group", "--dry-run"])
        .db(&db)
        .output()
        .await;
    dry.ok().never_shows("SECRETKEY123");
    assert!(
        dry.stdout.contains("would requeue 2 failed message(s)"),
        "{dry}"
    );
    assert_eq!(
        dry.stdout.matches("parent_group  attempts 0").count(),
        2,
        "{dry}"
    );
    assert_eq!(
        db.status_count("failed").await,
        3,
        "a dry run changes nothing"
    );

    let cancelled = cli_support::text(
        &db,
        "SELECT id::text FROM wecom_outbox WHERE content LIKE 'gone%'",
    )
    .await
    .unwrap();
    let out = Cli::new(&[
        "retry",
        "--failed-since",
        "1h",
        "--destination",
        "parent_group",
        "--id",
        &cancelled,
        "--id",
        "00000000-0000-0000-0000-000000000000",
    ])
    .db(&db)
    .output()
    .await;
    out.fails().never_shows("SECRETKEY123");
    assert!(
        out.stdout.contains("requeued 0 failed message(s)"),
        "ids and destination must all match: {out}"
    );
    assert!(
        out.stdout
            .contains(&format!("{cancelled}: not requeued: it is cancelled")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("00000000-0000-0000-0000-000000000000: no such message"),
        "{out}"
    );

    let out = Cli::new(&[
        "retry",
        "--failed-since",
        "1h",
        "--destination",
        "parent_group",
    ])
    .db(&db)
    .output()
    .await;
    out.ok();
    assert!(out.stdout.contains("requeued 2 failed message(s)"), "{out}");
    assert_eq!(db.status_count("pending").await, 2);
    assert_eq!(
        db.status_count("failed").await,
        1,
        "staff's row stays failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_while_a_worker_runs_loses_nothing_pending() {
    let db = TestDatabase::migrated().await;
    let fake = standin(20, 60 * SECOND).await;
    db.add_robot(&fake, "parent_group", None, 20, 60 * SECOND)
        .await;
    db.enqueue("parent_group", "history", 300).await;
    finished(&db, "history", "cancelled", 100).await;
    db.enqueue("parent_group", "live", 20).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    let out = Cli::new(&["prune", "--older-than", "90d", "--batch-size", "7"])
        .db(&db)
        .output()
        .await;
    out.ok();
    db.wait_for_status("sent", 20, 20 * SECOND).await;
    replica.stop().await;
    assert!(out.stdout.contains("deleted 300 message(s)"), "{out}");
    assert_eq!(db.count("SELECT count(*) FROM wecom_outbox").await, 20);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent'")
            .await,
        20
    );
}
