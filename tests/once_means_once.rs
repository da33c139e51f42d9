//! Once means once: a message WeCom accepted is recorded `sent` and never sent again, whatever
//! the school's log table accepts, however leases and replicas fall; people may cancel and
//! requeue, and nothing else about a row's life.

mod cli_support;
mod phase1_support;

use cli_support::{eventually, Cli};
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::time::Duration;
use wecom_outbox::rules::decide::{decide, RobotSnapshot};
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::store::{ClaimResult, Claimed, ClaimedRobot, Finish};
use wecom_outbox::testing::{fast_config, standin, Replica, TestDatabase};

const SECOND: Duration = Duration::from_secs(1);

/// How many times the stand-in accepted each text, by text.
fn deliveries(fake: &Standin) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in fake.received() {
        let text = r.body["text"]["content"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        *seen.entry(text).or_insert(0) += 1;
    }
    seen
}

fn assert_each_once(fake: &Standin, want: usize) {
    let seen = deliveries(fake);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(seen.len(), want, "delivered: {seen:?}");
}

/// A migrated database with one robot, `parent_group` (WeCom's 20 per minute), at a stand-in.
async fn parent_group() -> (Standin, TestDatabase) {
    let fake = standin(20, 60 * SECOND).await;
    let db = TestDatabase::migrated().await;
    db.add_robot(&fake, "parent_group", None, 20, 60 * SECOND)
        .await;
    (fake, db)
}

/// A connection as a person (a DBA, AppSheet) has it: not the worker's.
async fn as_a_person(db: &TestDatabase) -> PgConnection {
    PgConnection::connect(&db.url).await.expect("connect")
}

/// What the worker last said about robot `name` (its state's `last_error`).
async fn robot_last_error(db: &TestDatabase, name: &str) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT s.last_error FROM wecom_robot_state s JOIN wecom_webhooks w ON w.id = s.robot_id
         WHERE w.webhook_name = $1",
    )
    .bind(name)
    .fetch_one(db.pool())
    .await
    .expect("robot state")
    .unwrap_or_default()
}

async fn person_err(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => panic!("expected an error from: {sql}"),
        Err(e) => e.to_string(),
    }
}

async fn person_exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{e}\nin SQL: {sql}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schools_own_log_with_foreign_keys_gets_every_message_once_with_three_replicas() {
    let fake = standin(5, 2 * SECOND).await;
    let db = TestDatabase::empty().await;
    db.exec(phase1_support::PHASE1_023).await;
    Cli::new(&["migrate"]).db(&db).output().await.ok();
    for i in 1..=3 {
        db.add_robot(
            &fake,
            &format!("parent_group_{i}"),
            Some("parent_group"),
            5,
            2 * SECOND,
        )
        .await;
    }
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id)
         SELECT 'parent_group', 'reminder for enrollment ' || i, 'fee_reminder', i
         FROM generate_series(1, 20) i",
    )
    .await;
    // Enrollments do get deleted between enqueue and send: the log's foreign key refuses them.
    db.exec("DELETE FROM enrollments WHERE id IN (7, 13)").await;

    // What the log could never take is refused at INSERT, naming the log's column.
    let long_type = "x".repeat(60);
    let err = db
        .exec_err(&format!(
            "INSERT INTO wecom_outbox (webhook_name, content, message_type) VALUES ('parent_group', 'odd', '{long_type}')"
        ))
        .await;
    assert!(
        err.contains("message_type is 60 characters") && err.contains("character varying(50)"),
        "{err}"
    );
    let err = db
        .exec_err(
            "INSERT INTO wecom_outbox (webhook_name, content, enrollment_id) VALUES ('parent_group', 'odd', 3000000000)",
        )
        .await;
    assert!(
        err.contains("enrollment_id 3000000000 does not fit wecom_message_log.enrollment_id"),
        "{err}"
    );
    // An enrollment that never existed is accepted: its log row goes without the reference.
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id)
         VALUES ('parent_group', 'reminder for enrollment 999', 'fee_reminder', 999)",
    )
    .await;

    let replicas: Vec<_> = (1..=3)
        .map(|i| {
            Cli::new(&[
                "run",
                "--worker-id",
                &format!("replica-{i}"),
                "--retry-base-delay",
                "100ms",
            ])
            .db(&db)
            .allow(&fake)
            .spawn()
        })
        .collect();
    // More enrollments go while the replicas drain.
    eventually("the first delivery", 20 * SECOND, || async {
        !fake.received().is_empty()
    })
    .await;
    db.exec("DELETE FROM enrollments WHERE id IN (19, 20)")
        .await;
    db.wait_for_status("sent", 21, 30 * SECOND).await;
    for replica in replicas {
        let (out, took) = replica.stop("TERM", 15 * SECOND).await;
        out.ok();
        assert!(took < 15 * SECOND);
    }

    assert_each_once(&fake, 21);
    assert_eq!(fake.stats().rejected_45009, 0);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log l JOIN wecom_outbox o ON o.id = l.outbox_id
             WHERE l.send_status = 'sent'"
        )
        .await,
        21,
        "one log row per message"
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 22);
    let unreferenced = db
        .count(
            "SELECT count(*) FROM wecom_message_log
             WHERE outbox_id IS NOT NULL AND enrollment_id IS NULL",
        )
        .await;
    assert!(
        (3..=5).contains(&unreferenced),
        "7, 13, 999 (and 19, 20 unless they were sent before deletion) are logged without the reference: {unreferenced}"
    );
    for gone in [7, 13, 999] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM wecom_message_log
                 WHERE enrollment_id IS NULL AND error_message LIKE 'enrollment_id {gone} was refused%'"
            ))
            .await,
            1,
            "the log row of enrollment {gone} says why its reference is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_refuses_every_row_still_never_causes_a_second_send() {
    let (fake, db) = parent_group().await;
    // A column the school added after `migrate`, which the worker cannot fill.
    db.exec("ALTER TABLE wecom_message_log ADD COLUMN sent_by varchar(100) NOT NULL")
        .await;
    db.enqueue("parent_group", "once", 3).await;
    let mut config = fast_config("w1", &fake);
    config.lease = 2 * SECOND;
    let first = Replica::start(&db, config.clone());
    db.wait_for_status("sent", 3, 10 * SECOND).await;
    first.stop().await;

    // Well past every lease, another replica finds nothing to send again.
    tokio::time::sleep(3 * SECOND).await;
    config.worker_id = "w2".into();
    let second = Replica::start(&db, config);
    tokio::time::sleep(2 * SECOND).await;
    second.stop().await;

    assert_each_once(&fake, 3);
    assert_eq!(db.status_count("sent").await, 3);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox
             WHERE attempts = 1 AND last_error LIKE '%no wecom_message_log row%sent_by%'"
        )
        .await,
        3,
        "each row says why it has no log row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_what_run_lease_says() {
    let (fake, db) = parent_group().await;
    fake.set_behaviour("key-parent_group", Behaviour::Delay(SECOND));
    db.enqueue("parent_group", "slow", 1).await;
    let worker = Cli::new(&["run", "--lease", "3s"])
        .db(&db)
        .allow(&fake)
        .spawn();
    db.wait_for_status("sending", 1, 10 * SECOND).await;
    let lease_ms = db
        .count("SELECT (extract(epoch FROM locked_until - now()) * 1000)::bigint FROM wecom_outbox")
        .await;
    assert!(lease_ms <= 3000, "locked_until is {lease_ms} ms away");
    db.wait_for_status("sent", 1, 10 * SECOND).await;
    worker.stop("TERM", 15 * SECOND).await.0.ok();

    let out = Cli::new(&["run", "--lease", "100ms"])
        .db(&db)
        .output()
        .await;
    out.fails();
    assert!(
        out.stderr.contains("--lease 100ms is too short"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_its_rows_back_before_its_lease_runs_out() {
    let (fake, db) = parent_group().await;
    // Each send takes most of a second; a batch of 6 would outlive a 2 s lease, and a second
    // replica would rescue and resend what is left.
    fake.set_behaviour(
        "key-parent_group",
        Behaviour::Delay(Duration::from_millis(700)),
    );
    db.enqueue("parent_group", "slow", 6).await;
    let replicas: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|id| {
            let mut config = fast_config(id, &fake);
            config.lease = 2 * SECOND;
            Replica::start(&db, config)
        })
        .collect();
    db.wait_for_status("sent", 6, 30 * SECOND).await;
    for replica in replicas {
        replica.stop().await;
    }
    assert_each_once(&fake, 6);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE attempts = 1 AND last_error IS NULL")
            .await,
        6,
        "no row was rescued from a lease that ran out"
    );
}

/// The planner the worker uses, without the allowed-hosts check.
fn plan(
    snapshot: &RobotSnapshot,
    _url: &wecom_outbox::wecom::robot_url::RobotUrl,
    now: chrono::DateTime<chrono::Utc>,
) -> wecom_outbox::rules::decide::Decision {
    decide(snapshot, now, 20)
}

async fn claim(
    db: &TestDatabase,
    robot_id: i32,
    worker: &str,
    lease: Duration,
) -> (ClaimedRobot, Vec<Claimed>) {
    match db
        .store
        .claim(robot_id, worker, lease, plan)
        .await
        .expect("claim")
    {
        ClaimResult::Claimed(robot, rows) => (robot, rows),
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_the_same_worker_id_never_finish_each_others_rows() {
    let (_fake, db) = parent_group().await;
    db.enqueue("parent_group", "shared id", 2).await;
    let robot_id = db.count("SELECT id::bigint FROM wecom_webhooks").await as i32;

    let (robot, first) = claim(&db, robot_id, "same-name", Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, rescued) = db.store.housekeeping().await.expect("housekeeping");
    assert_eq!(rescued, 2);
    let (_, second) = claim(&db, robot_id, "same-name", 60 * SECOND).await;
    assert_eq!(second.len(), 2);

    // The first claim's late answer changes nothing: the rows are the second claim's now.
    assert!(!db
        .store
        .finish(&robot, &first[0], &Finish::Sent)
        .await
        .unwrap());
    let failed = Finish::Failed {
        errcode: Some(40058),
        error: "late".into(),
    };
    assert!(!db.store.finish(&robot, &first[1], &failed).await.unwrap());
    db.store.release(&first).await.unwrap();
    assert_eq!(db.status_count("sending").await, 2);

    assert!(db
        .store
        .finish(&robot, &second[0], &Finish::Sent)
        .await
        .unwrap());
    assert_eq!(db.status_count("sent").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_in_one_statement_go_out_in_the_order_they_were_written() {
    let fake = standin(100, 60 * SECOND).await;
    let db = TestDatabase::migrated().await;
    db.add_robot(&fake, "parent_group", None, 100, 60 * SECOND)
        .await;
    db.enqueue("parent_group", "number", 40).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("sent", 40, 20 * SECOND).await;
    replica.stop().await;
    let order: Vec<String> = fake
        .received()
        .iter()
        .map(|r| r.body["text"]["content"].as_str().unwrap().to_string())
        .collect();
    let written: Vec<String> = (1..=40).map(|i| format!("number {i}")).collect();
    assert_eq!(order, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_may_cancel_a_pending_row_but_not_one_being_sent() {
    let (_fake, db) = parent_group().await;
    db.enqueue("parent_group", "row", 2).await;
    let mut dba = as_a_person(&db).await;
    person_exec(
        &mut dba,
        "UPDATE wecom_outbox SET status = 'cancelled' WHERE content = 'row 1'",
    )
    .await;
    assert_eq!(db.status_count("cancelled").await, 1);

    let robot_id = db.count("SELECT id::bigint FROM wecom_webhooks").await as i32;
    let (robot, rows) = claim(&db, robot_id, "w1", 60 * SECOND).await;
    assert_eq!(rows.len(), 1);
    for sql in [
        "UPDATE wecom_outbox SET status = 'cancelled' WHERE content = 'row 2'",
        "DELETE FROM wecom_outbox WHERE content = 'row 2'",
        "UPDATE wecom_outbox SET content = 'changed' WHERE content = 'row 2'",
    ] {
        let err = person_err(&mut dba, sql).await;
        assert!(err.contains("is being sent right now"), "{sql}: {err}");
    }
    // WeCom accepted it meanwhile: it is recorded sent, with its log row.
    assert!(db
        .store
        .finish(&robot, &rows[0], &Finish::Sent)
        .await
        .unwrap());
    assert_eq!(db.status_count("sent").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_row_cannot_be_sent_again_or_marked_sent_by_hand() {
    let (fake, db) = parent_group().await;
    db.enqueue("parent_group", "row", 2).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("sent", 2, 10 * SECOND).await;
    replica.stop().await;
    db.enqueue("parent_group", "pending", 1).await;

    let mut dba = as_a_person(&db).await;
    let cases = [
        ("UPDATE wecom_outbox SET status = 'pending' WHERE content = 'row 1'", "was already sent"),
        ("UPDATE wecom_outbox SET status = 'sent' WHERE content = 'pending 1'", "is the worker's to set"),
        ("UPDATE wecom_outbox SET attempts = 0 WHERE content = 'row 1'", "attempts"),
        ("UPDATE wecom_outbox SET locked_by = 'me', locked_until = now() WHERE content = 'pending 1'", "locked_by, locked_until"),
        ("UPDATE wecom_outbox SET sent_at = now() WHERE content = 'pending 1'", "sent_at"),
    ];
    for (sql, says) in cases {
        let err = person_err(&mut dba, sql).await;
        assert!(err.contains(says), "{sql}: {err}");
        assert!(
            err.contains("cancel") || err.contains("INSERT a new row"),
            "says what to do instead: {err}"
        );
    }
    assert_eq!(db.status_count("sent").await, 2);
    assert_eq!(db.status_count("pending").await, 1);
    assert_eq!(deliveries(&fake).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_failed_row_is_sent_and_its_one_log_row_says_sent() {
    let (fake, db) = parent_group().await;
    fake.set_behaviour("key-parent_group", Behaviour::FailTimes(1, 40058));
    db.enqueue("parent_group", "second chance", 1).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("failed", 1, 10 * SECOND).await;

    let mut dba = as_a_person(&db).await;
    person_exec(
        &mut dba,
        "UPDATE wecom_outbox SET status = 'pending' WHERE status = 'failed'",
    )
    .await;
    db.wait_for_status("sent", 1, 10 * SECOND).await;
    replica.stop().await;

    assert_eq!(
        db.count("SELECT attempts::bigint FROM wecom_outbox").await,
        1,
        "a requeue starts the attempts afresh"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent' AND errcode = 0"
        )
        .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 1);
    assert_each_once(&fake, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insert_check_uses_the_widths_of_the_schools_own_log() {
    let fake = standin(20, 60 * SECOND).await;
    let db = TestDatabase::empty().await;
    let narrower = phase1_support::PHASE1_023
        .replace("message_type    varchar(50)", "message_type    varchar(20)");
    db.exec(&narrower).await;
    db.store.migrate().await.expect("migrate");
    db.add_robot(&fake, "parent_group", None, 20, 60 * SECOND)
        .await;
    let insert = |n: usize| {
        format!(
            "INSERT INTO wecom_outbox (webhook_name, content, message_type) VALUES ('parent_group', 'x', '{}')",
            "t".repeat(n)
        )
    };
    db.exec(&insert(20)).await;
    let err = db.exec_err(&insert(21)).await;
    assert!(
        err.contains("message_type is 21 characters but wecom_message_log.message_type is character varying(20)"),
        "{err}"
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_outbox").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stops_when_its_lease_is_lost() {
    let (fake, db) = parent_group().await;
    fake.set_behaviour(
        "key-parent_group",
        Behaviour::Delay(Duration::from_millis(400)),
    );
    db.enqueue("parent_group", "batch", 5).await;
    let replica = Replica::start(&db, fast_config("w1", &fake));
    db.wait_for_status("sending", 5, 10 * SECOND).await;
    // Another claim takes the rows over (as a rescue after a lost lease would).
    db.exec("UPDATE wecom_outbox SET lease_token = gen_random_uuid(), locked_by = 'w2'")
        .await;
    tokio::time::sleep(3 * SECOND).await;
    replica.stop().await;
    assert!(
        fake.received().len() <= 1,
        "the batch went on sending rows that were no longer its own: {}",
        fake.received().len()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE status = 'sending' AND locked_by = 'w2'")
            .await,
        5,
        "the rows stay with the claim that holds them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_row_the_worker_cannot_read_waits_with_its_reason_and_the_rest_go_on() {
    let fake = standin(20, 60 * SECOND).await;
    let db = TestDatabase::migrated().await;
    db.add_robot(&fake, "good_group", None, 20, 60 * SECOND)
        .await;
    db.add_robot(&fake, "bad_group", None, 20, 60 * SECOND)
        .await;
    // A row from before the checks that now refuse it (triggers off, as an old import would
    // have written it): two-dimensional send_days.
    db.exec(
        "SET session_replication_role = replica;
         UPDATE wecom_webhooks SET send_days = '{{1,2},{3,4}}' WHERE webhook_name = 'bad_group';
         RESET session_replication_role;",
    )
    .await;
    db.enqueue("good_group", "good", 3).await;
    db.enqueue("bad_group", "bad", 3).await;
    let worker = Cli::new(&["run", "--retry-base-delay", "100ms"])
        .db(&db)
        .allow(&fake)
        .spawn();
    db.wait_for(
        "SELECT count(*) FROM wecom_outbox WHERE webhook_name = 'good_group' AND status = 'sent'",
        3,
        10 * SECOND,
    )
    .await;
    tokio::time::sleep(3 * SECOND).await;
    let (out, _) = worker.stop("TERM", 15 * SECOND).await;
    out.ok();
    let complaints = out.stderr.matches("claim failed").count();
    assert!(
        (1..=5).contains(&complaints),
        "one bad robot must back off, not spin: {complaints} complaints in 3 s"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE webhook_name = 'bad_group' AND status = 'pending'")
            .await,
        3
    );
    let reason = robot_last_error(&db, "bad_group").await;
    assert!(reason.contains("could not claim"), "{reason}");
    let status = Cli::new(&["status"]).db(&db).allow(&fake).output().await;
    status.ok();
    assert!(status.stdout.contains("good_group"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_misconfigured_replica_and_one_bad_setting_leave_the_others_delivering() {
    let fake = standin(5, 2 * SECOND).await;
    let db = TestDatabase::migrated().await;
    for i in 1..=3 {
        db.add_robot(
            &fake,
            &format!("parent_group_{i}"),
            Some("parent_group"),
            5,
            2 * SECOND,
        )
        .await;
    }
    db.add_robot(&fake, "odd_group", None, 5, 2 * SECOND).await;
    // One robot whose stored zone cannot work (written before the checks that now refuse it).
    db.exec(
        "SET session_replication_role = replica;
         UPDATE wecom_webhooks SET timezone = 'Mars/Olympus' WHERE webhook_name = 'odd_group';
         RESET session_replication_role;",
    )
    .await;
    // One bad setting: refused when written, so it never reaches a worker.
    let err = db
        .exec_err(
            "UPDATE wecom_settings SET value = 'Mars/Olympus' WHERE name = 'default_timezone'",
        )
        .await;
    assert!(err.contains("Mars/Olympus"), "{err}");
    db.enqueue("parent_group", "for parents", 30).await;
    db.enqueue("odd_group", "odd", 2).await;

    // One replica started without the stand-in in its allowed hosts, one configured well.
    let mut wrong = fast_config("misconfigured", &fake);
    wrong.allowed_hosts =
        wecom_outbox::wecom::allowed_hosts::AllowedHosts::parse("qyapi.weixin.qq.com").unwrap();
    let misconfigured = Replica::start(&db, wrong);
    tokio::time::sleep(SECOND).await;
    let good = Replica::start(&db, fast_config("good", &fake));
    db.wait_for(
        "SELECT count(*) FROM wecom_outbox WHERE webhook_name = 'parent_group' AND status = 'sent'",
        30,
        30 * SECOND,
    )
    .await;
    let status = Cli::new(&["status"]).db(&db).allow(&fake).output().await;
    misconfigured.stop().await;
    good.stop().await;

    assert_each_once(&fake, 30);
    assert_eq!(fake.stats().rejected_45009, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_webhooks WHERE is_active AND disabled_reason IS NULL")
            .await,
        4,
        "no robot was switched off for anyone"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE webhook_name = 'odd_group' AND status = 'pending'")
            .await,
        2
    );
    let reason = robot_last_error(&db, "odd_group").await;
    assert!(reason.contains("Mars/Olympus"), "{reason}");
    status.ok();
    assert!(
        status.stdout.contains("misconfigured") && status.stdout.contains("WECOM_ALLOWED_HOSTS"),
        "status says which replica skips what: {}",
        status.stdout
    );
}
