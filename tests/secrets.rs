//! Robot keys are secrets: whoever holds one can post to the parents' group. Drive the real
//! binary through every failure a robot can answer with, at the chattiest log levels, and
//! look for the keys everywhere a user or a DBA can read: stdout, stderr, and the error
//! columns of the tables.

mod cli_support;

use cli_support::{add_robot_key, add_robot_url, eventually, secret_key, secret_part, text, Cli};
use serde_json::Value;
use std::time::Duration;
use wecom_outbox::testing::{standin, TestDatabase};
use wecom_outbox::wecom::standin::{Behaviour, Standin};

/// One robot per way of failing, each with a key of its own.
struct Robots {
    good: String,
    gone: String,
    gateway: String,
    dropper: String,
    slow: String,
    elsewhere: String,
}

impl Robots {
    fn keys(&self) -> [&str; 6] {
        [
            &self.good,
            &self.gone,
            &self.gateway,
            &self.dropper,
            &self.slow,
            &self.elsewhere,
        ]
    }
}

/// Robots `good` (accepts), `gone` (93000), `gateway` (HTTP 502), `dropper` (drops the
/// connection), `slow` (answers after 3 s: longer than the 1 s `--http-timeout` the tests
/// use) and `elsewhere` (a host not in WECOM_ALLOWED_HOSTS).
async fn robots(db: &TestDatabase, fake: &Standin) -> Robots {
    let r = Robots {
        good: secret_key(),
        gone: secret_key(),
        gateway: secret_key(),
        dropper: secret_key(),
        slow: secret_key(),
        elsewhere: secret_key(),
    };
    add_robot_key(db, fake, "good", &r.good).await;
    add_robot_key(db, fake, "gone", &r.gone).await;
    add_robot_key(db, fake, "gateway", &r.gateway).await;
    add_robot_key(db, fake, "dropper", &r.dropper).await;
    add_robot_key(db, fake, "slow", &r.slow).await;
    let elsewhere = format!(
        "https://robots.example/cgi-bin/webhook/send?key={}",
        r.elsewhere
    );
    add_robot_url(
        db,
        "elsewhere",
        &elsewhere,
        None,
        20,
        Duration::from_secs(60),
    )
    .await;
    fake.set_behaviour(&r.gone, Behaviour::Errcode(93000));
    fake.set_behaviour(&r.gateway, Behaviour::HttpStatus(502));
    fake.set_behaviour(&r.dropper, Behaviour::Drop);
    fake.set_behaviour(&r.slow, Behaviour::Delay(Duration::from_secs(3)));
    r
}

/// Everything the tables say about errors, in one string.
async fn recorded_errors(db: &TestDatabase) -> String {
    let queries = [
        "SELECT string_agg(coalesce(last_error, ''), ' | ') FROM wecom_outbox",
        "SELECT string_agg(coalesce(last_error, ''), ' | ') FROM wecom_robot_state",
        "SELECT string_agg(coalesce(error_message, '') || ' ' || message_content, ' | ') FROM wecom_message_log",
        "SELECT string_agg(coalesce(disabled_reason, ''), ' | ') FROM wecom_webhooks",
    ];
    let mut all = String::new();
    for sql in queries {
        all.push_str(&text(db, sql).await.unwrap_or_default());
        all.push('\n');
    }
    all
}

#[track_caller]
fn assert_no_key(keys: &[&str], haystack: &str, where_: &str) {
    for key in keys {
        assert!(
            !haystack.contains(secret_part(key)),
            "a robot key appears in {where_}:\n{haystack}"
        );
    }
}

/// `run` at `level`, through every failure; then `status` and `status --json`.
async fn run_through_every_failure(level: &str) {
    let db = TestDatabase::migrated().await;
    let fake = standin(20, Duration::from_secs(60)).await;
    let r = robots(&db, &fake).await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, max_attempts)
         SELECT name, 'message for ' || name, 2
         FROM unnest(ARRAY['good', 'gone', 'gateway', 'dropper', 'slow', 'elsewhere']) name",
    )
    .await;

    let worker = Cli::new(&["run", "--retry-base-delay", "100ms", "--http-timeout", "1s"])
        .db(&db)
        .allow(&fake)
        .env("RUST_LOG", level)
        .spawn();
    let done = "SELECT count(*) FROM wecom_outbox o JOIN wecom_webhooks w USING (webhook_name)
                WHERE (o.webhook_name = 'good' AND o.status = 'sent')
                   OR (o.webhook_name IN ('gateway', 'dropper', 'slow') AND o.status = 'failed')
                   OR (o.webhook_name = 'gone' AND NOT w.is_active)
                   OR (o.webhook_name = 'elsewhere' AND o.status = 'pending'
                       AND EXISTS (SELECT 1 FROM wecom_replica_notes n WHERE n.robot_id = w.id))";
    eventually(
        "every robot to reach its outcome",
        Duration::from_secs(40),
        || async {
            worker.assert_running();
            db.count(done).await == 6
        },
    )
    .await;
    let (out, _) = worker.stop("TERM", Duration::from_secs(15)).await;
    out.ok();
    let keys = r.keys();
    assert_no_key(
        &keys,
        &out.all(),
        &format!("the output of run (RUST_LOG={level})"),
    );

    // The failures really happened and were logged, so the checks above looked at something.
    for seen in ["93000", "502", "timed out"] {
        assert!(out.stderr.contains(seen), "{seen} was not logged: {out}");
    }
    assert_eq!(fake.stats().per_key[&r.good].accepted, 1);
    assert!(
        out.stderr.lines().count() > 20,
        "RUST_LOG={level} produced almost nothing: {out}"
    );

    let errors = recorded_errors(&db).await;
    assert_no_key(&keys, &errors, "the error columns");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_robot_state s JOIN wecom_webhooks w ON w.id = s.robot_id
             WHERE w.webhook_name IN ('gone', 'gateway', 'dropper', 'slow') AND s.last_error IS NOT NULL"
        )
        .await,
        4,
        "robot errors were not recorded: {errors}"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_message_log
             WHERE send_status = 'failed' AND error_message IS NOT NULL"
        )
        .await,
        3,
        "failed rows without an error in the log: {errors}"
    );

    for args in [&["status"][..], &["status", "--json"]] {
        let status = Cli::new(args)
            .db(&db)
            .allow(&fake)
            .env("RUST_LOG", level)
            .output()
            .await;
        status.ok();
        assert_no_key(&keys, &status.all(), &format!("{args:?}"));
        assert!(
            status.stdout.contains("502") && status.stdout.contains("93000"),
            "status should show the robots' last errors: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_at_debug_never_shows_a_key_even_when_robots_fail() {
    run_through_every_failure("debug").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_at_trace_never_shows_a_key_even_when_robots_fail() {
    run_through_every_failure("trace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_never_shows_a_key_whatever_the_robot_answers() {
    let db = TestDatabase::migrated().await;
    let fake = standin(20, Duration::from_secs(60)).await;
    let r = robots(&db, &fake).await;
    let keys = r.keys();
    for (robot, succeeds, says) in [
        ("good", true, "errcode 0"),
        ("gone", false, "93000"),
        ("gateway", false, "502"),
        ("dropper", false, "no answer"),
        ("slow", false, "timed out"),
        ("elsewhere", false, "not in WECOM_ALLOWED_HOSTS"),
    ] {
        let out = Cli::new(&["send-test", robot, "secret check", "--http-timeout", "1s"])
            .db(&db)
            .allow(&fake)
            .env("RUST_LOG", "trace")
            .output()
            .await;
        if succeeds {
            out.ok();
        } else {
            out.fails();
        }
        assert!(
            out.all().contains(says),
            "{robot}: expected {says:?} in {out}"
        );
        assert_no_key(&keys, &out.all(), &format!("send-test {robot}"));
    }
    let errors = recorded_errors(&db).await;
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'failed'")
            .await,
        4,
        "every failed call is logged: {errors}"
    );
    assert_no_key(&keys, &errors, "the error columns after send-test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_shows_robot_urls_with_the_key_hidden() {
    let db = TestDatabase::migrated().await;
    let fake = standin(20, Duration::from_secs(60)).await;
    let key = secret_key();
    add_robot_key(&db, &fake, "office", &key).await;
    let out = Cli::new(&["status", "--json"])
        .db(&db)
        .allow(&fake)
        .output()
        .await;
    out.ok().never_shows(secret_part(&key));
    let status: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let url = status["destinations"][0]["robots"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no robot url in {status:#}"));
    assert!(
        url.starts_with(&format!("http://{}/", fake.local_addr())) && url.contains("key=***"),
        "the URL should stay recognisable with the key hidden: {url}"
    );
}
