//! Once means once on MySQL / MariaDB (issue 11): the log row of a message WeCom accepted is
//! written with whatever the school's migration-023 log accepts (a deleted enrollment is left
//! out and said; a log that refuses every row leaves the reason on the outbox row, which stays
//! `sent`), and only the worker (`@wecom_actor = 'worker'`) moves a row through its life:
//! everyone else may cancel a pending row or requeue a failed one, and is told so.

mod mysql_support;

use mysql_support::{phase1, MyDb};
use sqlx::MySqlConnection;

/// A database with migration 023's tables (with their foreign keys), migrated, a robot, and
/// enrollments 1 to 3.
async fn school(test: &str) -> Option<MyDb> {
    let db = MyDb::empty(test).await?;
    db.exec(&phase1("utf8mb4")).await;
    db.exec("INSERT INTO enrollments (student_name) VALUES ('Amy'), ('Ben'), ('陳小明')")
        .await;
    db.migrate().await.expect("migrate");
    db.add_robot("parent_group").await;
    Some(db)
}

/// What the worker does when WeCom answered errcode 0: mark the row sent and write its log
/// row in the same transaction. Returns @wecom_log_note.
async fn worker_records_sent(worker: &mut MySqlConnection, seq: i64) -> Option<String> {
    sqlx::raw_sql(&format!(
        "SET @wecom_actor = 'worker';
         START TRANSACTION;
         UPDATE wecom_outbox SET status = 'sent', attempts = attempts + 1, sent_at = UTC_TIMESTAMP(6),
                                 robot_name = 'parent_group', last_errcode = 0
          WHERE seq = {seq};
         SET @id = (SELECT id FROM wecom_outbox WHERE seq = {seq});
         CALL wecom_write_log(@id);
         COMMIT;"
    ))
    .execute(&mut *worker)
    .await
    .expect("the worker's record");
    let row = sqlx::query("SELECT @wecom_log_note")
        .fetch_one(&mut *worker)
        .await
        .unwrap();
    mysql_support::text_at(&row, 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sent_message_whose_enrollment_was_deleted_is_logged_without_it_and_says_why() {
    let Some(db) = school("deletedenrollment").await else {
        return;
    };
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id) VALUES
           ('parent_group', 'for Amy', 'fee_reminder', 1),
           ('parent_group', 'for Ben', 'fee_reminder', 2),
           ('parent_group', 'never enrolled', 'fee_reminder', 999);
         DELETE FROM enrollments WHERE id = 2;",
    )
    .await;
    let mut worker = db.connection().await;
    assert_eq!(
        worker_records_sent(&mut worker, 1).await,
        None,
        "the full row fits"
    );
    let note = worker_records_sent(&mut worker, 2)
        .await
        .expect("a note for the deleted enrollment");
    assert!(
        note.starts_with("enrollment_id 2 was refused by wecom_message_log ("),
        "{note}"
    );
    assert!(note.ends_with("): logged without it"), "{note}");
    assert!(
        worker_records_sent(&mut worker, 3).await.is_some(),
        "an enrollment that never existed"
    );
    drop(worker);

    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_outbox WHERE status = 'sent'")
            .await,
        3,
        "every sent row stays sent"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log WHERE send_status = 'sent'")
            .await,
        3,
        "one log row each"
    );
    assert_eq!(
        db.count("SELECT COUNT(DISTINCT outbox_id) FROM wecom_message_log")
            .await,
        3
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log WHERE enrollment_id IS NULL AND error_message LIKE 'enrollment_id % was refused by wecom_message_log%'").await,
        2,
        "the refused references are left out and said in error_message"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log WHERE enrollment_id = 1")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log l JOIN wecom_outbox o ON o.id = l.outbox_id WHERE l.send_timestamp IS NOT NULL AND l.attempts = 1 AND l.robot_name = 'parent_group'").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_refuses_every_row_leaves_the_reason_on_the_outbox_row_which_stays_sent() {
    let Some(db) = school("logrefuses").await else {
        return;
    };
    // A column the school added that the worker cannot know about.
    db.exec("ALTER TABLE wecom_message_log ADD COLUMN sent_by VARCHAR(100) NOT NULL")
        .await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content, enrollment_id) VALUES ('parent_group', 'hi', 1)").await;
    let mut worker = db.connection().await;
    let note = worker_records_sent(&mut worker, 1).await.expect("a note");
    drop(worker);
    assert!(
        note.contains("sent_by"),
        "the note names what the log refused: {note}"
    );
    assert_eq!(
        db.text("SELECT status FROM wecom_outbox").await.as_deref(),
        Some("sent")
    );
    let last_error = db
        .text("SELECT last_error FROM wecom_outbox")
        .await
        .unwrap();
    assert!(
        last_error.starts_with("no wecom_message_log row: "),
        "{last_error}"
    );
    assert!(last_error.contains("sent_by"), "{last_error}");
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_message_log").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_in_latin1_still_gets_its_row_with_question_marks_for_what_it_cannot_hold() {
    let Some(db) = MyDb::empty("latin1log").await else {
        return;
    };
    db.exec(&phase1("latin1")).await;
    db.migrate().await.unwrap();
    db.add_robot("parent_group").await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', '陳小明 🔴 renew')").await;
    let mut worker = db.connection().await;
    let note = worker_records_sent(&mut worker, 1).await.expect("a note");
    drop(worker);
    assert!(note.ends_with("so it was stored as ASCII"), "{note}");
    assert_eq!(
        db.text("SELECT status FROM wecom_outbox").await.as_deref(),
        Some("sent")
    );
    let content = db
        .text("SELECT message_content FROM wecom_message_log")
        .await
        .unwrap();
    assert!(content.contains("renew"), "{content}");
    assert_eq!(
        db.text("SELECT JSON_UNQUOTE(JSON_EXTRACT(payload, '$.text.content')) FROM wecom_outbox")
            .await
            .as_deref(),
        Some("陳小明 🔴 renew"),
        "the outbox itself keeps every character"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requeued_row_that_ends_again_updates_its_one_log_row() {
    let Some(db) = school("relog").await else {
        return;
    };
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'hi')")
        .await;
    let mut worker = db.connection().await;
    sqlx::raw_sql(
        "SET @wecom_actor = 'worker';
         UPDATE wecom_outbox SET status = 'failed', attempts = 5, last_errcode = -1, last_error = 'system busy';
         SET @id = (SELECT id FROM wecom_outbox); CALL wecom_write_log(@id);
         SET @wecom_actor = NULL;
         UPDATE wecom_outbox SET status = 'pending';",
    )
    .execute(&mut worker)
    .await
    .unwrap();
    assert_eq!(
        db.count("SELECT attempts FROM wecom_outbox").await,
        0,
        "a requeue starts a fresh set of attempts"
    );
    worker_records_sent(&mut worker, 1).await;
    drop(worker);
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_message_log").await, 1);
    assert_eq!(
        db.text("SELECT send_status FROM wecom_message_log")
            .await
            .as_deref(),
        Some("sent")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn people_may_cancel_a_pending_row_and_requeue_a_failed_one_and_nothing_else() {
    let Some(db) = school("guard").await else {
        return;
    };
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'a'), ('parent_group', 'b'), ('parent_group', 'c')").await;
    let id =
        |seq: i64| format!("(SELECT id FROM (SELECT id FROM wecom_outbox WHERE seq = {seq}) x)");

    // Pending -> sent by hand: refused, saying what may be done.
    let e = db
        .exec_err("UPDATE wecom_outbox SET status = 'sent' WHERE seq = 1")
        .await;
    assert_eq!(e, "wecom_outbox: status pending -> sent is the worker's to set; you may cancel a pending row (status = 'cancelled') or requeue a failed, expired or cancelled one (status = 'pending')");
    // Worker-owned columns.
    let e = db
        .exec_err("UPDATE wecom_outbox SET attempts = 7, locked_by = 'me' WHERE seq = 1")
        .await;
    assert!(
        e.starts_with("wecom_outbox: attempts, locked_by of row "),
        "{e}"
    );
    assert!(e.ends_with(" belong to the worker and cannot be changed; you may cancel a pending row or requeue a failed one with status"), "{e}");
    // Cancelling a pending row is allowed, and says who did it.
    db.exec("UPDATE wecom_outbox SET status = 'cancelled' WHERE seq = 1")
        .await;
    let why = db
        .text("SELECT last_error FROM wecom_outbox WHERE seq = 1")
        .await
        .unwrap();
    assert!(why.starts_with("cancelled by "), "{why}");

    // A row being sent cannot be cancelled, changed or deleted.
    db.exec("SET @wecom_actor = 'worker'; UPDATE wecom_outbox SET status = 'sending', lease_token = UUID() WHERE seq = 2; SET @wecom_actor = NULL;").await;
    let e = db
        .exec_err("UPDATE wecom_outbox SET status = 'cancelled' WHERE seq = 2")
        .await;
    assert!(e.contains("is being sent right now (WeCom may already have it): its status cannot be changed to cancelled"), "{e}");
    let e = db
        .exec_err("UPDATE wecom_outbox SET content = 'edited' WHERE seq = 2")
        .await;
    assert!(
        e.ends_with("is being sent right now: change it after it is sent or failed"),
        "{e}"
    );
    let e = db.exec_err("DELETE FROM wecom_outbox WHERE seq = 2").await;
    assert!(
        e.contains("it cannot be deleted; wait until it is sent or failed"),
        "{e}"
    );

    // A sent row stays sent.
    db.exec("SET @wecom_actor = 'worker'; UPDATE wecom_outbox SET status = 'sent', sent_at = UTC_TIMESTAMP(6) WHERE seq = 3; SET @wecom_actor = NULL;").await;
    let e = db
        .exec_err("UPDATE wecom_outbox SET status = 'pending' WHERE seq = 3")
        .await;
    assert!(e.ends_with("was already sent (WeCom accepted it): status pending is not allowed; to send the message again, INSERT a new row"), "{e}");

    // Requeue a cancelled one; edit a pending one's message (checked like a new row).
    db.exec("UPDATE wecom_outbox SET status = 'pending' WHERE seq = 1")
        .await;
    db.exec("UPDATE wecom_outbox SET content = 'edited' WHERE seq = 1")
        .await;
    assert_eq!(
        db.text("SELECT JSON_UNQUOTE(JSON_EXTRACT(payload, '$.text.content')) FROM wecom_outbox WHERE seq = 1").await.as_deref(),
        Some("edited"),
        "the payload built from content follows the edit"
    );
    db.exec("UPDATE wecom_outbox SET content = 'EDITED' WHERE seq = 1")
        .await;
    assert_eq!(
        db.text("SELECT JSON_UNQUOTE(JSON_EXTRACT(payload, '$.text.content')) FROM wecom_outbox WHERE seq = 1").await.as_deref(),
        Some("EDITED"),
        "an edit of case only is an edit too (the table's collation ignores case)"
    );
    let e = db
        .exec_err("UPDATE wecom_outbox SET content = '' WHERE seq = 1")
        .await;
    assert_eq!(
        e,
        "wecom_outbox: text.content is empty: WeCom needs 1 to 2048 UTF-8 bytes"
    );
    db.exec(&format!("DELETE FROM wecom_outbox WHERE id = {}", id(1)))
        .await;
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_outbox").await, 2);
}
