//! The fault suite, WeCom's side: the real `run` binary (two replicas where it matters) against
//! the stand-in made to refuse connections, time out, answer slowly, close the connection
//! without answering, answer 5xx, answer a body that is not JSON, `-1`, 45033, a payload error
//! and a storm of 45009. Each test proves what
//! DESIGN.md's "Semantics" promises for that fault: transient faults retry with growing
//! backoff and end `failed` with a log row once `max_attempts` are used; 45009 pauses the
//! robot without burning an attempt; a payload error fails at once.
//!
//! The worker logs as JSON (`--log-format json`), so the tests read the retry delays it chose
//! from its log lines: values it decided, not timings.

mod cli_support;

use cli_support::{add_robot_url, eventually, Cli, Running};
use serde_json::Value;
use std::time::Duration;
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::testing::{standin, TestDatabase};

/// The first retry delay the workers are started with.
const BASE: Duration = Duration::from_millis(100);

/// How long any one scenario may take to reach its outcome.
const OUTCOME_WITHIN: Duration = Duration::from_secs(45);

/// A test database, the stand-in, and robot `office` at it (key `key-office`).
struct Scene {
    db: TestDatabase,
    fake: Standin,
}

impl Scene {
    /// Robot `office` at the stand-in, `rate_limit` 20 per `window`.
    async fn new(window: Duration) -> Scene {
        let db = TestDatabase::migrated().await;
        let fake = standin(0, Duration::from_secs(60)).await;
        let url = fake.url_for("key-office");
        add_robot_url(&db, "office", &url, None, 20, window).await;
        Scene { db, fake }
    }

    /// `n` messages for `office` that may be tried `max_attempts` times.
    async fn enqueue(&self, n: i64, max_attempts: i32) {
        sqlx::query(
            "INSERT INTO wecom_outbox (webhook_name, content, max_attempts)
             SELECT 'office', 'fault test ' || i, $2 FROM generate_series(1, $1) i",
        )
        .bind(n)
        .bind(max_attempts)
        .execute(self.db.pool())
        .await
        .expect("enqueue");
    }

    /// `replicas` worker processes, JSON logs at debug, with `extra` arguments.
    fn workers(&self, replicas: usize, extra: &[&str]) -> Vec<Running> {
        (1..=replicas)
            .map(|i| {
                let id = format!("fault-replica-{i}");
                let base = format!("{}ms", BASE.as_millis());
                let mut args = vec![
                    "--log-format",
                    "json",
                    "run",
                    "--worker-id",
                    &id,
                    "--retry-base-delay",
                    &base,
                ];
                args.extend_from_slice(extra);
                Cli::new(&args)
                    .db(&self.db)
                    .allow(&self.fake)
                    .env("RUST_LOG", "info")
                    .spawn()
            })
            .collect()
    }

    /// Wait until `sql` counts `want`, the workers running all along.
    async fn wait_until(&self, workers: &[Running], what: &str, sql: &str, want: i64) {
        eventually(what, OUTCOME_WITHIN, || async {
            workers.iter().for_each(Running::assert_running);
            self.db.count(sql).await == want
        })
        .await;
    }

    /// The rows as `status|attempts|last_errcode` strings, sorted.
    async fn rows(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT status || '|' || attempts || '|' || coalesce(last_errcode::text, '-')
             FROM wecom_outbox ORDER BY 1",
        )
        .fetch_all(self.db.pool())
        .await
        .expect("read the outbox")
    }
}

/// Stop the workers with SIGTERM; their stderr, every line of it JSON, parsed.
async fn stop(workers: Vec<Running>) -> Vec<Value> {
    let mut lines = Vec::new();
    for worker in workers {
        let (out, _) = worker.stop("TERM", Duration::from_secs(20)).await;
        out.ok();
        for line in out.stderr.lines() {
            let value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"));
            lines.push(value);
        }
    }
    lines
}

/// The log lines with this message.
fn logged<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

/// `Debug` of a `Duration` as the log writes it (`104.2ms`, `1.5s`, `900µs`) back to a value.
fn debug_duration(text: &str) -> Duration {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or_else(|| panic!("no unit in {text:?}"));
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("{text:?}"));
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" => number / 1e6,
        "ns" => number / 1e9,
        _ => panic!("unknown unit in {text:?}"),
    };
    Duration::from_secs_f64(seconds)
}

/// Every "send failed; will retry" line chose a delay of at least BASE · 2^(attempt-1): the
/// backoff grows with each attempt (jitter only adds). Returns how many retries were logged.
fn assert_backoff_grows(lines: &[Value]) -> usize {
    let retries = logged(lines, "send failed; will retry");
    for line in &retries {
        let attempt = line["fields"]["attempt"].as_u64().expect("attempt") as u32;
        let retry_in = debug_duration(line["fields"]["retry_in"].as_str().expect("retry_in"));
        let floor = BASE * 2u32.pow(attempt.saturating_sub(1));
        assert!(
            retry_in >= floor,
            "attempt {attempt} retried after {retry_in:?}, less than {floor:?}: {line}"
        );
    }
    retries.len()
}

/// A transient fault that never clears: each message is tried `max_attempts` times with
/// growing backoff, then `failed`, with one `failed` log row naming the fault; nothing is left
/// `sending` or `pending`. Returns the log lines.
async fn gives_up_after_max_attempts(
    scene: &Scene,
    extra: &[&str],
    says: &str,
) -> (Vec<Value>, Vec<String>) {
    const MESSAGES: i64 = 2;
    const MAX_ATTEMPTS: i32 = 3;
    scene.enqueue(MESSAGES, MAX_ATTEMPTS).await;
    let workers = scene.workers(2, extra);
    scene
        .wait_until(
            &workers,
            "every message to be failed",
            "SELECT count(*) FROM wecom_outbox WHERE status = 'failed'",
            MESSAGES,
        )
        .await;
    let lines = stop(workers).await;
    let rows = scene.rows().await;
    assert!(
        rows.iter()
            .all(|r| r.starts_with(&format!("failed|{MAX_ATTEMPTS}|"))),
        "every row failed after exactly {MAX_ATTEMPTS} attempts: {rows:?}"
    );
    let log_rows = scene
        .db
        .count(&format!(
            "SELECT count(*) FROM wecom_message_log
             WHERE send_status = 'failed' AND attempts = {MAX_ATTEMPTS}
               AND error_message LIKE '%{says}%'"
        ))
        .await;
    assert_eq!(
        log_rows,
        MESSAGES,
        "one failed log row per message, saying {says:?}: {}",
        text_of(
            &scene.db,
            "SELECT string_agg(error_message, ' | ') FROM wecom_message_log"
        )
        .await
    );
    let retries = assert_backoff_grows(&lines);
    assert_eq!(
        retries,
        (MESSAGES * i64::from(MAX_ATTEMPTS - 1)) as usize,
        "each message retried max_attempts - 1 times"
    );
    (lines, rows)
}

async fn text_of(db: &TestDatabase, sql: &str) -> String {
    cli_support::text(db, sql).await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_retry_with_backoff_then_fail_with_a_log_row() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    // The robot's URL is a loopback port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/cgi-bin/webhook/send?key=key-office");
    scene
        .db
        .exec(&format!(
            "UPDATE wecom_webhooks SET webhook_url = '{url}' WHERE webhook_name = 'office'"
        ))
        .await;
    let allowed = format!("{},127.0.0.1:{port}", scene.fake.local_addr());
    let extra = ["--allowed-hosts", allowed.as_str()];
    gives_up_after_max_attempts(&scene, &extra, "no answer").await;
    assert_eq!(
        scene
            .db
            .count("SELECT count(*) FROM wecom_webhooks WHERE is_active")
            .await,
        1,
        "a robot that cannot be reached is not disabled: the fault may be the network's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_slower_than_the_http_timeout_retry_then_fail() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::Delay(Duration::from_secs(2)));
    let (lines, _) =
        gives_up_after_max_attempts(&scene, &["--http-timeout", "500ms"], "timed out").await;
    assert!(!logged(&lines, "send failed; will retry").is_empty());
    // Observed, not promised: the stand-in abandons a request whose client went away (its
    // handler is dropped while it waits), so none of these arrive here; real WeCom may still
    // deliver one, which is the duplicate window of one in-flight request. Either way a
    // message never arrives more often than it was tried.
    let arrived = scene.fake.received().len();
    eprintln!("observed: {arrived} arrivals at the stand-in for 6 timed-out tries");
    assert!(arrived <= 2 * 3, "{arrived} arrivals for 6 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_within_the_http_timeout_are_sent_once() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::Delay(Duration::from_millis(300)));
    scene.enqueue(5, 3).await;
    let workers = scene.workers(2, &["--http-timeout", "3s"]);
    scene
        .wait_until(
            &workers,
            "every message to be sent",
            "SELECT count(*) FROM wecom_outbox WHERE status = 'sent' AND attempts = 1",
            5,
        )
        .await;
    let lines = stop(workers).await;
    assert!(logged(&lines, "send failed; will retry").is_empty());
    assert_eq!(scene.fake.received().len(), 5, "each message arrived once");
    assert_eq!(
        scene
            .db
            .count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent'")
            .await,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_retry_with_backoff_then_fail_with_a_log_row() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::HttpStatus(503));
    gives_up_after_max_attempts(&scene, &[], "HTTP 503").await;
    assert!(scene.fake.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_that_clears_is_retried_and_sent_once() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::HttpStatus(502));
    scene.enqueue(1, 5).await;
    let workers = scene.workers(2, &[]);
    scene
        .wait_until(
            &workers,
            "the first attempt to fail",
            "SELECT count(*) FROM wecom_outbox WHERE attempts >= 1 AND status = 'pending'",
            1,
        )
        .await;
    scene.fake.set_behaviour("key-office", Behaviour::Normal);
    scene
        .wait_until(
            &workers,
            "the message to be sent",
            "SELECT count(*) FROM wecom_outbox WHERE status = 'sent'",
            1,
        )
        .await;
    stop(workers).await;
    assert_eq!(scene.fake.received().len(), 1, "sent once");
    assert_eq!(
        scene
            .db
            .count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent' AND attempts >= 2")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_without_an_answer_retry_with_backoff_then_fail() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene.fake.set_behaviour("key-office", Behaviour::Drop);
    gives_up_after_max_attempts(&scene, &[], "no answer").await;
    assert!(scene.fake.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_answers_retry_with_backoff_then_fail_with_a_log_row() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene.fake.set_behaviour("key-office", Behaviour::NotJson);
    gives_up_after_max_attempts(&scene, &[], "unreadable answer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_busy_minus_one_retries_with_backoff_then_fails_with_a_log_row() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::Errcode(-1));
    let (_, rows) = gives_up_after_max_attempts(&scene, &[], "errcode -1").await;
    assert!(rows.iter().all(|r| r.ends_with("|-1")), "{rows:?}");
}

/// -1 (system busy) and 45033 (concurrency) are transient: a few of them cost attempts, then
/// the message goes through, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_concurrency_errors_that_clear_are_retried_and_sent_once() {
    for code in [-1, 45033] {
        let scene = Scene::new(Duration::from_secs(60)).await;
        scene
            .fake
            .set_behaviour("key-office", Behaviour::FailTimes(2, code));
        scene.enqueue(1, 5).await;
        let workers = scene.workers(2, &[]);
        scene
            .wait_until(
                &workers,
                &format!("the message to be sent after two {code}s"),
                "SELECT count(*) FROM wecom_outbox WHERE status = 'sent'",
                1,
            )
            .await;
        let lines = stop(workers).await;
        assert_eq!(scene.rows().await, ["sent|3|0"], "after two {code}s");
        assert_eq!(assert_backoff_grows(&lines), 2, "{code}");
        assert_eq!(scene.fake.received().len(), 1, "{code}: sent once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_45033_retries_with_backoff_then_fails_with_a_log_row() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::Errcode(45033));
    gives_up_after_max_attempts(&scene, &[], "errcode 45033").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_error_fails_at_once_without_a_retry() {
    let scene = Scene::new(Duration::from_secs(60)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::Errcode(40058));
    scene.enqueue(2, 5).await;
    let workers = scene.workers(2, &[]);
    scene
        .wait_until(
            &workers,
            "every message to be failed",
            "SELECT count(*) FROM wecom_outbox WHERE status = 'failed'",
            2,
        )
        .await;
    let lines = stop(workers).await;
    assert_eq!(scene.rows().await, ["failed|1|40058", "failed|1|40058"]);
    assert!(logged(&lines, "send failed; will retry").is_empty());
    assert_eq!(scene.fake.stats().other_errors, 2, "one request each");
    assert_eq!(
        scene
            .db
            .count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'failed' AND errcode = 40058")
            .await,
        2
    );
    assert_eq!(
        scene
            .db
            .count("SELECT count(*) FROM wecom_webhooks WHERE is_active")
            .await,
        1,
        "a bad message does not disable its robot"
    );
}

/// WeCom answers 45009 far more often than `max_attempts`: the robot pauses each time (longer
/// each time), the messages wait without burning an attempt, and all are sent in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_45009_storm_pauses_the_robot_without_burning_attempts() {
    const STORM: u32 = 5;
    let scene = Scene::new(Duration::from_millis(200)).await;
    scene
        .fake
        .set_behaviour("key-office", Behaviour::FailTimes(STORM, 45009));
    scene.enqueue(3, 2).await;
    let workers = scene.workers(2, &[]);
    scene
        .wait_until(
            &workers,
            "every message to be sent after the storm",
            "SELECT count(*) FROM wecom_outbox WHERE status = 'sent'",
            3,
        )
        .await;
    let lines = stop(workers).await;
    assert_eq!(
        scene.rows().await,
        ["sent|1|0", "sent|1|0", "sent|1|0"],
        "{STORM} 45009s with max_attempts 2: no attempt burnt"
    );
    assert_eq!(scene.fake.stats().rejected_45009, u64::from(STORM));
    assert_eq!(scene.fake.received().len(), 3, "each message arrived once");
    let pauses: Vec<Duration> = logged(&lines, "WeCom said 45009: robot paused, message requeued")
        .iter()
        .map(|l| debug_duration(l["fields"]["pause"].as_str().expect("pause")))
        .collect();
    assert_eq!(pauses.len(), STORM as usize, "{pauses:?}");
    assert!(
        pauses.iter().all(|p| *p >= Duration::from_millis(200)),
        "each pause lasts at least the robot's window: {pauses:?}"
    );
    assert!(
        pauses.iter().max() > pauses.iter().min(),
        "repeated 45009s back off: {pauses:?}"
    );
    assert!(logged(&lines, "send failed; will retry").is_empty());
}
