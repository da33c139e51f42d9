//! Robot keys are secrets: whoever holds one can post to the parents' group. Drive the real
//! binary through every failure a robot can answer with, at the chattiest log levels, and
//! look for the keys everywhere a user or a DBA can read: stdout, stderr, and the error
//! columns of the tables.

mod cli_support;

use cli_support::{add_robot_key, add_robot_url, eventually, secret_key, secret_part, text, Cli};
use serde_json::Value;
use std::time::Duration;
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::testing::{standin, TestDatabase};

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

/// Writes a robot URL's query string around a key.
type Spelling = fn(&str) -> String;

/// Every way of writing the key parameter that a server still reads as `key`, each robot with
/// a key of its own: (robot, URL) on a loopback port where nothing listens, so every send
/// fails with an error that quotes the URL.
fn spellings(port: u16) -> Vec<(String, String, String)> {
    let base = format!("http://127.0.0.1:{port}/cgi-bin/webhook/send");
    let queries: [(&str, Spelling); 7] = [
        ("upper", |k| format!("?KEY={k}")),
        ("mixed", |k| format!("?Key={k}")),
        ("encoded_name", |k| format!("?k%65y={k}")),
        ("encoded_all", |k| format!("?%6B%65%79={k}")),
        ("after_amp", |k| format!("?debug=1&key={k}")),
        ("repeated", |k| format!("?key={k}&KEY={k}")),
        ("encoded_value", |k| {
            let encoded: String = k.bytes().map(|b| format!("%{b:02X}")).collect();
            format!("?key={encoded}")
        }),
    ];
    queries
        .iter()
        .map(|(name, query)| {
            let key = secret_key();
            (name.to_string(), format!("{base}{}", query(&key)), key)
        })
        .collect()
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_written_in_any_spelling_never_show_in_status_send_test_or_error_columns() {
    let db = TestDatabase::migrated().await;
    let port = closed_port();
    let robots = spellings(port);
    for (name, url, _) in &robots {
        add_robot_url(&db, name, url, None, 20, Duration::from_secs(60)).await;
    }
    let allowed = format!("127.0.0.1:{port}");
    let mut seen = String::new();
    for (name, _, key) in &robots {
        let out = Cli::new(&["send-test", name, "secret check", "--http-timeout", "1s"])
            .db(&db)
            .env("WECOM_ALLOWED_HOSTS", &allowed)
            .env("RUST_LOG", "trace")
            .output()
            .await;
        out.fails();
        assert!(
            out.stdout.contains("sending to robot") && out.stdout.contains("=***"),
            "send-test shows the robot's URL, key hidden: {out}"
        );
        out.never_shows(secret_part(key));
        // The encoded value spelled out must not show either.
        let encoded: String = secret_part(key)
            .bytes()
            .take(6)
            .map(|b| format!("%{b:02X}"))
            .collect();
        out.never_shows(&encoded);
        seen.push_str(&out.all());
    }
    assert!(
        seen.contains("error sending request"),
        "the errors quote the URL, so the checks above looked at something: {seen}"
    );
    let keys: Vec<&str> = robots.iter().map(|(_, _, k)| k.as_str()).collect();
    assert_no_key(&keys, &recorded_errors(&db).await, "the error columns");

    for args in [&["status"][..], &["status", "--json"]] {
        let out = Cli::new(args)
            .db(&db)
            .env("WECOM_ALLOWED_HOSTS", &allowed)
            .output()
            .await;
        out.ok();
        assert_no_key(&keys, &out.all(), &format!("{args:?}"));
        assert!(
            robots
                .iter()
                .all(|(name, _, _)| out.stdout.contains(name.as_str())),
            "every robot is listed: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_wecom_stats_page_counts_per_key_without_showing_keys() {
    let port = closed_port();
    let base = format!("http://127.0.0.1:{port}");
    let fake = Cli::new(&[
        "fake-wecom",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--limit",
        "0",
    ])
    .spawn();
    let http = reqwest::Client::new();
    eventually("fake-wecom to listen", Duration::from_secs(20), || async {
        fake.assert_running();
        http.get(format!("{base}/_stats")).send().await.is_ok()
    })
    .await;
    let key = secret_key();
    let body = serde_json::json!({"msgtype": "text", "text": {"content": "hello"}});
    let answer: Value = http
        .post(format!("{base}/cgi-bin/webhook/send?key={key}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");

    let stats: Value = http
        .get(format!("{base}/_stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["accepted"], 1, "{stats}");
    assert_eq!(stats["per_key"]["SECR…"]["accepted"], 1, "{stats}");
    assert!(!stats.to_string().contains(secret_part(&key)), "{stats}");

    let (out, _) = fake.stop("TERM", Duration::from_secs(10)).await;
    out.ok().never_shows(secret_part(&key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_password_never_shows_in_connect_errors() {
    let db = TestDatabase::migrated().await;
    let server = reqwest::Url::parse(&db.url).unwrap();
    let host = format!(
        "{}:{}",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432)
    );
    let user = server.username();
    let secret = "SECRETPW-0ne-Of-a-k1nd";
    let closed = closed_port();
    let cases = [
        // (DATABASE_URL, what the error must say)
        (
            format!("postgres://{user}@{host}/no_such_db?password={secret}"),
            "?password=***: error returned from database: database \"no_such_db\" does not exist",
        ),
        (
            format!("postgres://{user}@{host}/no_such_db?pass%77ord={secret}&application_name=x"),
            "pass%77ord=***&application_name=x",
        ),
        (
            format!("postgres://{user}:{secret}@127.0.0.1:{closed}/school"),
            ":***@127.0.0.1",
        ),
        (
            format!("postgres://{user}@127.0.0.1:{closed}/school?sslmode=disable&password={secret}"),
            "sslmode=disable&password=***: error communicating with database",
        ),
        (
            format!("postgres://{user}@{host}/school?PASSWORD={secret}"),
            "DATABASE_URL has a query parameter \"PASSWORD\": PostgreSQL's name for it is `password`",
        ),
        (
            format!("postgres://{user}@{host}/school?password={secret}&sslmode=bogus"),
            "password=***&sslmode=bogus is not a valid PostgreSQL URL",
        ),
    ];
    for (url, says) in &cases {
        for command in ["status", "migrate"] {
            let out = Cli::new(&[command])
                .env("DATABASE_URL", url)
                .env("RUST_LOG", "trace")
                .output()
                .await;
            let error = out.one_line_error();
            assert!(error.contains(says), "expected {says:?} in {out}");
            out.never_shows(secret);
        }
    }
}

/// `--log-format json` (and `WECOM_LOG_FORMAT=json`) is for log shippers: every line on
/// stderr is one JSON object, and the keys are hidden exactly as in text logs, through every
/// failure a robot can answer with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_and_never_show_a_key() {
    let db = TestDatabase::migrated().await;
    let fake = standin(20, Duration::from_secs(60)).await;
    let r = robots(&db, &fake).await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, max_attempts)
         SELECT name, 'message for ' || name, 2
         FROM unnest(ARRAY['good', 'gone', 'gateway', 'dropper', 'slow']) name",
    )
    .await;
    let worker = Cli::new(&[
        "--log-format",
        "json",
        "run",
        "--retry-base-delay",
        "100ms",
        "--http-timeout",
        "1s",
    ])
    .db(&db)
    .allow(&fake)
    .env("RUST_LOG", "debug")
    .spawn();
    let done = "SELECT count(*) FROM wecom_outbox o JOIN wecom_webhooks w USING (webhook_name)
                WHERE (o.webhook_name = 'good' AND o.status = 'sent')
                   OR (o.webhook_name IN ('gateway', 'dropper', 'slow') AND o.status = 'failed')
                   OR (o.webhook_name = 'gone' AND NOT w.is_active)";
    eventually(
        "every robot to reach its outcome",
        Duration::from_secs(40),
        || async {
            worker.assert_running();
            db.count(done).await == 5
        },
    )
    .await;
    let (out, _) = worker.stop("TERM", Duration::from_secs(15)).await;
    out.ok();
    assert_no_key(&r.keys(), &out.all(), "the JSON log of run");
    let lines: Vec<Value> = out
        .stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line:?}\n{out}"))
        })
        .collect();
    assert!(lines.len() > 20, "debug produced almost nothing: {out}");
    assert!(
        lines.iter().all(|l| l["level"].is_string()
            && l["timestamp"].is_string()
            && l["fields"].is_object()),
        "every line has a level, a timestamp and its fields: {out}"
    );
    // The failures were logged, so the key checks above looked at something.
    for seen in ["93000", "502", "timed out"] {
        assert!(out.stderr.contains(seen), "{seen} was not logged: {out}");
    }

    // The environment variable does the same, and a command's final error is JSON too.
    let closed = closed_port();
    let failed = Cli::new(&["status"])
        .env("WECOM_LOG_FORMAT", "json")
        .env(
            "DATABASE_URL",
            &format!("postgres://u@127.0.0.1:{closed}/school?password={}", r.good),
        )
        .output()
        .await;
    failed.fails();
    assert_no_key(&r.keys(), &failed.all(), "the JSON error of status");
    let error: Value = serde_json::from_str(failed.stderr.trim())
        .unwrap_or_else(|e| panic!("the error is not one JSON line ({e}): {failed}"));
    assert_eq!(error["level"], "ERROR", "{failed}");
    assert!(
        error["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("password=***")),
        "{failed}"
    );
}
