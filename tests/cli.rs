//! The command line as a user meets it: the real `wecom-outbox` binary, a database of its own
//! per test, and the WeCom stand-in. Secrets are in `tests/secrets.rs`, SIGTERM/SIGINT in
//! `tests/shutdown.rs`.

mod cli_support;

use chrono::{DateTime, Utc};
use cli_support::{add_robot_url, eventually, text, Cli};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wecom_outbox::standin::{Behaviour, Standin, Stats};
use wecom_outbox::testing::{server_url, standin, with_database, TestDatabase};
use wecom_outbox::wecom::allowed_hosts::PLACEHOLDER_URL;

const MINUTE: Duration = Duration::from_secs(60);

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// A migrated database and a stand-in with WeCom's limit.
async fn setup() -> (TestDatabase, Standin) {
    (TestDatabase::migrated().await, standin(20, MINUTE).await)
}

/// `wecom-outbox ARGS` against `db`, with the stand-in allowed.
fn cli(db: &TestDatabase, fake: &Standin, args: &[&str]) -> Cli {
    Cli::new(args).db(db).allow(fake)
}

/// The text of every message the stand-in accepted, with the key it came to.
fn received(fake: &Standin) -> Vec<(String, String)> {
    fake.received()
        .into_iter()
        .map(|m| {
            let content = m.body["text"]["content"].as_str().unwrap_or("").to_owned();
            (m.key, content)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// migrate
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_prints_success_and_a_second_run_keeps_every_row() {
    let db = TestDatabase::empty().await;
    let first = Cli::new(&["migrate"]).db(&db).output().await;
    first.ok();
    assert!(
        first.stdout.contains("migrations applied"),
        "no success message: {first}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('wecom_outbox', 'wecom_webhooks', 'wecom_message_log')")
            .await,
        3,
        "migrate did not create the tables"
    );
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url) VALUES ('parent_group', '{PLACEHOLDER_URL}');
         INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'kept');"
    ))
    .await;

    let second = Cli::new(&["migrate"]).db(&db).output().await;
    second.ok();
    assert!(second.stdout.contains("migrations applied"), "{second}");
    assert_eq!(db.count("SELECT count(*) FROM wecom_webhooks").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE content = 'kept'")
            .await,
        1,
        "a second migrate lost a row"
    );
}

#[tokio::test]
async fn migrate_against_nothing_listening_fails_in_one_line_without_the_password() {
    let url = format!("postgres://u:secretpw@127.0.0.1:{}/x", free_port());
    let out = Cli::new(&["migrate"])
        .env("DATABASE_URL", &url)
        .output()
        .await;
    let error = out.one_line_error();
    out.never_shows("secretpw");
    assert!(
        error.contains("cannot connect") && error.contains("127.0.0.1"),
        "the error should say it cannot connect, and where: {out}"
    );
    assert!(
        !error.contains("pool timed out") || error.contains("is PostgreSQL running"),
        "a bare pool timeout does not tell the user what is wrong: {out}"
    );
}

#[tokio::test]
async fn migrate_refused_by_the_server_fails_in_one_line_without_the_password() {
    // A real server, a database that does not exist, and a password in the URL.
    let mut url = reqwest::Url::parse(&with_database(
        &server_url(),
        &format!("no_such_db_{}", uuid::Uuid::new_v4().simple()),
    ))
    .unwrap();
    url.set_password(Some("secretpw")).unwrap();
    let out = Cli::new(&["migrate"])
        .env("DATABASE_URL", url.as_str())
        .output()
        .await;
    let error = out.one_line_error();
    out.never_shows("secretpw");
    assert!(error.contains("cannot connect"), "{out}");
    assert!(
        error.contains("does not exist") || error.contains("password"),
        "the server's reason is missing: {out}"
    );
}

#[tokio::test]
async fn migrate_without_database_url_says_how_to_set_it() {
    let out = Cli::new(&["migrate"]).output().await;
    let error = out.one_line_error();
    assert!(error.contains("DATABASE_URL"), "{out}");
}

// ---------------------------------------------------------------------------------------
// send-test
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_delivers_exactly_the_text_and_records_it() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;

    let out = cli(
        &db,
        &fake,
        &["send-test", "office", "Hello from the office 你好"],
    )
    .output()
    .await;
    out.ok();
    assert!(
        out.stdout.contains("WeCom answered: errcode 0"),
        "WeCom's answer is not shown: {out}"
    );
    assert_eq!(
        received(&fake),
        vec![(
            "key-office".to_string(),
            "Hello from the office 你好".to_string()
        )]
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log
             WHERE send_status = 'sent' AND message_type = 'send_test' AND webhook_name = 'office'
               AND send_timestamp IS NOT NULL AND message_content LIKE '%Hello from the office%'"
        )
        .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 1);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_webhooks
             WHERE webhook_name = 'office' AND total_messages_sent = 1 AND last_used_at IS NOT NULL"
        )
        .await,
        1,
        "the Phase-1 counters were not updated"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox").await,
        0,
        "send-test must not leave an outbox row behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_without_text_sends_the_default_test_message() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;

    cli(&db, &fake, &["send-test", "office"])
        .output()
        .await
        .ok();
    let got = received(&fake);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].1.contains("Test from wecom-outbox"),
        "unexpected default text: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_a_pool_uses_an_active_robot_of_the_pool() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "parent_a", Some("parents"), 20, MINUTE)
        .await;
    db.add_robot(&fake, "parent_b", Some("parents"), 20, MINUTE)
        .await;
    db.exec("UPDATE wecom_webhooks SET is_active = false WHERE webhook_name = 'parent_a'")
        .await;

    let out = cli(&db, &fake, &["send-test", "parents", "pool test"])
        .output()
        .await;
    out.ok();
    assert!(out.stdout.contains("parent_b"), "which robot? {out}");
    assert_eq!(
        received(&fake),
        vec![("key-parent_b".to_string(), "pool test".to_string())],
        "the disabled robot of the pool was used, or nothing was sent"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log
             WHERE webhook_name = 'parents' AND robot_name = 'parent_b' AND send_status = 'sent'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_a_pool_skips_a_placeholder_robot() {
    let (db, fake) = setup().await;
    add_robot_url(
        &db,
        "parent_a",
        PLACEHOLDER_URL,
        Some("parents"),
        20,
        MINUTE,
    )
    .await;
    db.add_robot(&fake, "parent_b", Some("parents"), 20, MINUTE)
        .await;

    let out = cli(&db, &fake, &["send-test", "parents"]).output().await;
    out.ok();
    assert_eq!(received(&fake).len(), 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_an_unknown_name_fails_clearly() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;

    let out = cli(&db, &fake, &["send-test", "ofice"]).output().await;
    let error = out.one_line_error();
    assert!(
        error.contains("no robot or pool named") && error.contains("ofice"),
        "{out}"
    );
    assert_eq!(fake.stats(), Stats::default(), "nothing may be sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_a_placeholder_robot_fails_and_says_so() {
    let (db, fake) = setup().await;
    add_robot_url(&db, "parent_group", PLACEHOLDER_URL, None, 20, MINUTE).await;

    let out = cli(&db, &fake, &["send-test", "parent_group"])
        .output()
        .await;
    let error = out.one_line_error();
    assert!(error.contains("placeholder"), "{out}");
    assert!(
        error.contains("UPDATE wecom_webhooks"),
        "no advice on how to fix it: {out}"
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_a_disabled_robot_fails_and_says_why() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;
    db.exec(
        "UPDATE wecom_webhooks SET is_active = false, disabled_reason = 'robot removed in March'
         WHERE webhook_name = 'office'",
    )
    .await;

    let out = cli(&db, &fake, &["send-test", "office"]).output().await;
    let error = out.one_line_error();
    assert!(
        error.contains("disabled") && error.contains("robot removed in March"),
        "{out}"
    );
    assert_eq!(
        fake.stats(),
        Stats::default(),
        "a disabled robot was called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_a_removed_robot_fails_with_advice() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;
    fake.set_behaviour("key-office", Behaviour::Errcode(93000));

    let out = cli(&db, &fake, &["send-test", "office"]).output().await;
    out.fails();
    assert!(out.all().contains("93000"), "WeCom's errcode: {out}");
    assert!(
        out.all().contains("create a new robot"),
        "no advice for a removed robot: {out}"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log
             WHERE send_status = 'failed' AND errcode = 93000 AND error_message LIKE '%93000%'"
        )
        .await,
        1,
        "the failed test send is not in the log"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_webhooks WHERE total_messages_sent > 0")
            .await,
        0,
        "a refused send was counted as sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_never_calls_a_host_outside_wecom_allowed_hosts() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;

    for allowed in [
        "qyapi.weixin.qq.com".to_string(),
        format!("127.0.0.1:{}", free_port()),
    ] {
        let out = Cli::new(&["send-test", "office"])
            .db(&db)
            .env("WECOM_ALLOWED_HOSTS", &allowed)
            .output()
            .await;
        let error = out.one_line_error();
        assert!(error.contains("not in WECOM_ALLOWED_HOSTS"), "{out}");
        out.never_shows("key-office");
    }
    assert_eq!(fake.stats(), Stats::default(), "the robot was called");
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_respects_the_robots_rate_limit() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 1, MINUTE).await;

    cli(&db, &fake, &["send-test", "office", "first"])
        .output()
        .await
        .ok();
    let second = cli(&db, &fake, &["send-test", "office", "second"])
        .output()
        .await;
    let error = second.one_line_error();
    assert!(error.contains("may send again at"), "{second}");
    assert_eq!(
        received(&fake),
        vec![("key-office".to_string(), "first".to_string())]
    );
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 1);
}

// ---------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------

/// A pool of two robots (`parent_1` limit 5, `parent_2` limit 1, each with one test send), a
/// placeholder robot `office` with two rows waiting, and a disabled robot `old_robot`;
/// `parent_group` has 1 pending, 1 sending, 1 sent and 2 failed rows.
async fn status_fixture() -> (TestDatabase, Standin) {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "parent_1", Some("parent_group"), 5, MINUTE)
        .await;
    db.add_robot(&fake, "parent_2", Some("parent_group"), 1, MINUTE)
        .await;
    add_robot_url(&db, "office", PLACEHOLDER_URL, None, 20, MINUTE).await;
    db.add_robot(&fake, "old_robot", None, 20, MINUTE).await;
    db.exec(
        "UPDATE wecom_webhooks SET is_active = false, disabled_reason = 'replaced by parent_group'
         WHERE webhook_name = 'old_robot'",
    )
    .await;
    for robot in ["parent_1", "parent_2"] {
        cli(&db, &fake, &["send-test", robot]).output().await.ok();
    }
    db.enqueue("parent_group", "reminder", 5).await;
    db.enqueue("office", "memo", 2).await;
    db.exec(
        "WITH r AS (SELECT id, row_number() OVER (ORDER BY content) AS n
                    FROM wecom_outbox WHERE webhook_name = 'parent_group')
         UPDATE wecom_outbox o
         SET status = CASE r.n WHEN 1 THEN 'sending' WHEN 2 THEN 'sent' WHEN 3 THEN 'failed'
                               WHEN 4 THEN 'failed' ELSE 'pending' END,
             locked_by = CASE r.n WHEN 1 THEN 'someone' END,
             locked_until = CASE r.n WHEN 1 THEN now() + interval '1 hour' END,
             sent_at = CASE r.n WHEN 2 THEN now() END,
             last_error = CASE r.n WHEN 3 THEN 'errcode 40058: invalid parameter' END,
             attempts = CASE WHEN r.n < 5 THEN 1 ELSE 0 END
         FROM r WHERE o.id = r.id",
    )
    .await;
    (db, fake)
}

fn destination<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["destinations"]
        .as_array()
        .expect("destinations is an array")
        .iter()
        .find(|d| d["destination"] == name)
        .unwrap_or_else(|| panic!("no destination {name} in {status:#}"))
}

fn robot<'a>(destination: &'a Value, name: &str) -> &'a Value {
    destination["robots"]
        .as_array()
        .expect("robots is an array")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no robot {name} in {destination:#}"))
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_counts_rows_and_explains_each_robot() {
    let (db, fake) = status_fixture().await;
    let out = cli(&db, &fake, &["status", "--json"]).output().await;
    out.ok();
    let status: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"));
    let now = time(&status["now"]);

    assert_eq!(
        status["finished_window_days"],
        json!(7),
        "sent, cancelled and expired count the last 7 days"
    );
    let pool = destination(&status, "parent_group");
    for (field, want) in [("pending", 1), ("sending", 1), ("sent", 1), ("failed", 2)] {
        assert_eq!(pool[field], json!(want), "parent_group {field}: {pool:#}");
    }
    let p1 = robot(pool, "parent_1");
    assert_eq!(p1["enabled"], json!(true));
    assert_eq!(p1["problem"], Value::Null, "{p1:#}");
    assert_eq!(
        p1["budget_left"],
        json!(4),
        "one of 5 used by send-test: {p1:#}"
    );
    assert!(
        time(&p1["next_send_at"]) <= now,
        "parent_1 has budget and should be ready now: {p1:#}"
    );
    assert_eq!(p1["total_messages_sent"], json!(1));
    let p2 = robot(pool, "parent_2");
    assert_eq!(p2["enabled"], json!(true));
    assert_eq!(p2["budget_left"], json!(0), "its one send is used: {p2:#}");
    assert!(
        time(&p2["next_send_at"]) > now + chrono::Duration::seconds(50),
        "parent_2 cannot send before its window frees: {p2:#}"
    );

    let office = destination(&status, "office");
    assert_eq!(office["pending"], json!(2));
    let placeholder = robot(office, "office");
    assert!(
        placeholder["problem"]
            .as_str()
            .is_some_and(|p| p.contains("placeholder")),
        "{placeholder:#}"
    );
    assert_eq!(placeholder["next_send_at"], Value::Null);

    let old = robot(destination(&status, "old_robot"), "old_robot");
    assert_eq!(old["enabled"], json!(false));
    let problem = old["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("disabled") && problem.contains("replaced by parent_group"),
        "{old:#}"
    );
    for key in ["key-parent_1", "key-parent_2", "key-old_robot"] {
        out.never_shows(key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_text_names_each_destination_and_robot() {
    let (db, fake) = status_fixture().await;
    let out = cli(&db, &fake, &["status"]).output().await;
    out.ok();
    let text = &out.stdout;
    for expected in [
        "parent_group: 1 pending, 1 sending, 2 failed; in the last 7 days: 1 sent, 0 cancelled",
        "office: 2 pending",
        "robot parent_1 [enabled] ready now: budget 4/5",
        "robot parent_2 [enabled] next send at",
        "robot office [enabled] placeholder",
        "robot old_robot [DISABLED] disabled: replaced by parent_group",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {out}");
    }
    for key in ["key-parent_1", "key-parent_2", "key-old_robot"] {
        out.never_shows(key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_empty_database_says_what_to_do_next() {
    let (db, fake) = setup().await;
    let out = cli(&db, &fake, &["status"]).output().await;
    out.ok();
    assert!(
        out.stdout.contains("no robots") && out.stdout.contains("wecom_webhooks"),
        "{out}"
    );
    let json_out = cli(&db, &fake, &["status", "--json"]).output().await;
    json_out.ok();
    let status: Value = serde_json::from_str(&json_out.stdout).expect("JSON");
    assert_eq!(status["destinations"], json!([]), "{json_out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_an_unmigrated_database_say_to_run_migrate() {
    let db = TestDatabase::empty().await;
    let fake = standin(20, MINUTE).await;
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["send-test", "office"],
        &["enqueue-reminders"],
        &["run"],
    ] {
        let out = cli(&db, &fake, args).output().await;
        let error = out.one_line_error();
        assert!(error.contains("wecom-outbox migrate"), "{out}");
    }
}

// ---------------------------------------------------------------------------------------
// run's options, and --help
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_retry_base_delay_sets_how_soon_a_failure_is_retried() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;
    fake.set_behaviour("key-office", Behaviour::FailTimes(1, -1));
    db.enqueue("office", "retry me", 1).await;

    let started = Instant::now();
    let worker = cli(&db, &fake, &["run", "--retry-base-delay", "200ms"]).spawn();
    eventually(
        "the row to be sent on its second attempt",
        Duration::from_secs(20),
        || async {
            worker.assert_running();
            db.status_count("sent").await == 1
        },
    )
    .await;
    let took = started.elapsed();
    let (out, _) = worker.stop("TERM", Duration::from_secs(10)).await;
    out.ok();
    assert_eq!(
        fake.stats().other_errors,
        1,
        "the first attempt did not fail"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE status = 'sent' AND attempts = 2")
            .await,
        1
    );
    // The default (5 s) could not retry this soon; 200 ms (with jitter, < 400 ms) can.
    assert!(
        took < Duration::from_secs(4),
        "--retry-base-delay 200ms was not applied: sent after {took:?}"
    );
}

#[tokio::test]
async fn run_with_a_bad_duration_says_what_a_duration_looks_like() {
    let out = Cli::new(&["run", "--retry-base-delay", "soon"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .output()
        .await;
    out.fails();
    assert!(
        out.stderr.contains("\"soon\" is not a duration like 200ms"),
        "{out}"
    );
    assert!(
        out.stderr.contains("--retry-base-delay"),
        "which flag? {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_bad_wecom_allowed_hosts_fails_clearly() {
    let db = TestDatabase::migrated().await;
    for bad in ["https://qyapi.weixin.qq.com/", "127.0.0.1:http", " , "] {
        let out = Cli::new(&["run"])
            .db(&db)
            .env("WECOM_ALLOWED_HOSTS", bad)
            .output()
            .await;
        let error = out.one_line_error();
        assert!(error.contains("WECOM_ALLOWED_HOSTS"), "{bad:?}: {out}");
    }
}

#[tokio::test]
async fn every_subcommand_help_exits_0_with_an_example() {
    for sub in [
        "migrate",
        "run",
        "enqueue-reminders",
        "send-test",
        "status",
        "fake-wecom",
    ] {
        let out = Cli::new(&[sub, "--help"]).output().await;
        out.ok();
        assert!(out.stdout.contains("Example"), "no example in {out}");
    }
    let top = Cli::new(&["--help"]).output().await;
    top.ok();
    for sub in ["migrate", "run", "send-test", "status", "fake-wecom"] {
        assert!(top.stdout.contains(sub), "{sub} not listed in {top}");
    }
}

// ---------------------------------------------------------------------------------------
// fake-wecom
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_wecom_enforces_its_limit_reports_and_stops_on_sigterm() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let fake = Cli::new(&[
        "fake-wecom",
        "--listen",
        &listen,
        "--limit",
        "2",
        "--window",
        "1s",
    ])
    .spawn();
    let http = reqwest::Client::new();
    eventually("fake-wecom to listen", Duration::from_secs(20), || async {
        fake.assert_running();
        http.get(format!("{base}/_stats")).send().await.is_ok()
    })
    .await;
    assert!(
        fake.stdout_so_far().contains(&base),
        "it should say where it listens: {}",
        fake.stdout_so_far()
    );

    let send_url = format!("{base}/cgi-bin/webhook/send?key=demo-key-123");
    let send = |n: u32| {
        let (http, url) = (http.clone(), send_url.clone());
        async move {
            let body = json!({"msgtype": "text", "text": {"content": format!("hello {n}")}});
            let answer: Value = http
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("POST to fake-wecom")
                .json()
                .await
                .expect("a JSON answer");
            answer["errcode"].as_i64().expect("an errcode")
        }
    };
    assert_eq!(send(1).await, 0);
    assert_eq!(send(2).await, 0);
    assert_eq!(
        send(3).await,
        45009,
        "the third within 1 s is over the limit"
    );

    let stats: Value = http
        .get(format!("{base}/_stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["accepted"], json!(2), "{stats:#}");
    assert_eq!(stats["rejected_45009"], json!(1), "{stats:#}");

    let messages: Value = http
        .get(format!("{base}/_messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contents: Vec<&str> = messages
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| m["body"]["text"]["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(contents, ["hello 1", "hello 2"]);
    assert!(
        !messages.to_string().contains("demo-key-123"),
        "/_messages shows the key: {messages}"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(4).await, 0, "the 1 s window has passed");

    let (out, took) = fake.stop("TERM", Duration::from_secs(10)).await;
    out.ok();
    assert!(took < Duration::from_secs(5), "slow to stop: {took:?}");
    out.never_shows("demo-key-123");
    assert!(
        http.get(format!("{base}/_stats")).send().await.is_err(),
        "still answering after SIGTERM"
    );
}

/// The log's `message_content` is the JSON body sent, as the contract says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_log_row_holds_the_json_body_sent() {
    let (db, fake) = setup().await;
    db.add_robot(&fake, "office", None, 20, MINUTE).await;
    cli(&db, &fake, &["send-test", "office", "body check"])
        .output()
        .await
        .ok();
    let logged = text(&db, "SELECT message_content FROM wecom_message_log")
        .await
        .expect("message_content");
    let body: Value = serde_json::from_str(&logged).expect("message_content is the JSON sent");
    assert_eq!(
        body,
        json!({"msgtype": "text", "text": {"content": "body check"}})
    );
    assert_eq!(
        fake.received()[0].body,
        body,
        "the log differs from what was sent"
    );
}
