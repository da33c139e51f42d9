//! `run --metrics-addr`: the real binary against a database of its own and the WeCom
//! stand-in, its `/metrics` and `/healthz` read over HTTP as Prometheus and a load balancer
//! would. The MySQL backend's check is in `tests/mysql_metrics.rs`.

mod cli_support;
mod metrics_support;

use cli_support::{secret_key, secret_part, Cli};
use metrics_support::{sample, MetricsRun};
use sqlx::Connection;
use std::time::Duration;
use wecom_outbox::metrics::Metrics;
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::testing::{fast_config, server_url, standin, Replica, TestDatabase};
use wecom_outbox::worker::WorkerConfig;

const MINUTE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);

/// `run` with its metrics on a free port, fast retries, the stand-in allowed.
fn run_with_metrics(url: &str, fake: &Standin) -> Cli {
    Cli::new(&[
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--retry-base-delay",
        "100ms",
    ])
    .env("DATABASE_URL", url)
    .allow(fake)
}

/// Adds robot `name` at the stand-in with `key`, in `pool`, with a one-second window (so a
/// 45009 pauses it for a second only).
async fn add_robot(db: &TestDatabase, fake: &Standin, name: &str, key: &str, pool: &str) {
    let url = fake.url_for(key);
    db.add_robot_at(name, &url, Some(pool), 20, Duration::from_secs(1))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_45009s_and_rejections_are_counted_per_destination_and_robot_name() {
    let (db, fake) = (TestDatabase::migrated().await, standin(20, MINUTE).await);
    let key = secret_key();
    add_robot(&db, &fake, "alpha-1", &key, "parents").await;
    fake.set_behaviour(&key, Behaviour::FailTimes(1, 45009));
    db.enqueue("parents", "hello", 3).await;

    let run = MetricsRun::start(run_with_metrics(&db.url, &fake)).await;
    db.wait_for_status("sent", 3, WAIT).await;
    fake.set_behaviour(&key, Behaviour::FailTimes(1, 40058));
    db.enqueue("parents", "too long", 1).await;
    db.wait_for_status("failed", 1, WAIT).await;

    let page = run.metrics().await;
    let robot = [("destination", "parents"), ("robot", "alpha-1")];
    let value = |name: &str| sample(&page, name, &robot);
    assert_eq!(value("wecom_messages_sent_total"), Some(3.0), "{page}");
    assert_eq!(value("wecom_rate_limited_total"), Some(1.0), "{page}");
    assert_eq!(value("wecom_messages_failed_total"), Some(1.0), "{page}");
    assert_eq!(
        value("wecom_retries_total"),
        None,
        "nothing was retried: {page}"
    );
    let stats = fake.stats();
    assert_eq!((stats.accepted, stats.rejected_45009), (3, 1), "{stats:?}");
    let requests = stats.accepted + stats.rejected_45009 + stats.invalid + stats.other_errors;
    assert_eq!(requests, 5, "3 sent, one 45009, one 40058: {stats:?}");
    assert_eq!(
        value("wecom_send_duration_seconds_count"),
        Some(requests as f64),
        "the histogram counts every request WeCom answered: {page}"
    );
    assert!(
        page.contains("wecom_send_duration_seconds_bucket{"),
        "a histogram with buckets, not a summary: {page}"
    );
    assert!(
        !page.contains(secret_part(&key)),
        "the key in /metrics: {page}"
    );
    run.running.stop("TERM", WAIT).await.0.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_keys_never_appear_in_metrics_healthz_or_the_log() {
    let (db, fake) = (TestDatabase::migrated().await, standin(20, MINUTE).await);
    let (flaky, gone) = (secret_key(), secret_key());
    add_robot(&db, &fake, "flaky", &flaky, "staff").await;
    add_robot(&db, &fake, "removed", &gone, "office").await;
    fake.set_behaviour(&flaky, Behaviour::FailTimes(2, -1));
    fake.set_behaviour(&gone, Behaviour::Errcode(93000));
    db.enqueue("staff", "retried", 1).await;
    db.enqueue("office", "waits", 1).await;

    let run = MetricsRun::start(run_with_metrics(&db.url, &fake)).await;
    db.wait_for_status("sent", 1, WAIT).await;
    db.wait_for(
        "SELECT count(*) FROM wecom_webhooks WHERE NOT is_active",
        1,
        WAIT,
    )
    .await;

    let page = run.metrics().await;
    let staff = [("destination", "staff"), ("robot", "flaky")];
    assert_eq!(
        sample(&page, "wecom_retries_total", &staff),
        Some(2.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "wecom_messages_sent_total", &staff),
        Some(1.0),
        "{page}"
    );
    let office = [("destination", "office"), ("robot", "removed")];
    assert_eq!(
        sample(&page, "wecom_robots_gone_total", &office),
        Some(1.0),
        "{page}"
    );
    let (status, health) = run.get("/healthz").await;
    assert_eq!((status, health.as_str()), (200, "ok\n"));
    let (output, _) = run.running.stop("TERM", WAIT).await;
    for key in [&flaky, &gone] {
        let secret = secret_part(key);
        assert!(!page.contains(secret), "a key in /metrics: {page}");
        assert!(!health.contains(secret), "a key in /healthz: {health}");
        output.never_shows(secret);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_with_a_reason_once_the_database_is_gone_and_the_replica_keeps_running() {
    let (db, fake) = (TestDatabase::migrated().await, standin(20, MINUTE).await);
    let password = "SECRETPW-hunter2";
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some(password)).unwrap(); // the test server trusts: it is never checked
    let run = MetricsRun::start(run_with_metrics(url.as_str(), &fake)).await;
    assert_eq!(run.get("/healthz").await, (200, "ok\n".to_owned()));

    let name = url.path().trim_start_matches('/').to_owned();
    let mut admin = sqlx::PgConnection::connect(&server_url()).await.unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop the replica's database");

    let deadline = std::time::Instant::now() + WAIT;
    let (status, reason) = loop {
        let (status, body) = run.get("/healthz").await;
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "/healthz with the database dropped: {reason}");
    assert_eq!(reason.trim().lines().count(), 1, "one line: {reason:?}");
    assert!(
        reason.contains("database"),
        "says what is wrong: {reason:?}"
    );
    assert!(
        !reason.contains(password),
        "the password in /healthz: {reason}"
    );
    run.running.assert_running();
    assert_eq!(run.get("/metrics").await.0, 200, "/metrics still served");
    let (output, _) = run.running.stop("TERM", WAIT).await;
    output.never_shows(password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_shows_the_pending_rows_of_a_destination_that_cannot_send() {
    let (db, fake) = (TestDatabase::migrated().await, standin(20, MINUTE).await);
    add_robot(&db, &fake, "asleep", &secret_key(), "night").await;
    db.exec("UPDATE wecom_webhooks SET is_active = false, disabled_reason = 'test' WHERE webhook_name = 'asleep'")
        .await;
    db.enqueue("night", "waits", 4).await;
    let pending = db.status_count("pending").await;
    assert_eq!(pending, 4);

    // The address from the environment this time.
    let cli = Cli::new(&["run"])
        .env("DATABASE_URL", &db.url)
        .env("WECOM_METRICS_ADDR", "127.0.0.1:0")
        .allow(&fake);
    let run = MetricsRun::start(cli).await;
    let night = [("destination", "night"), ("status", "pending")];
    run.wait_for_sample("wecom_queue_depth", &night, pending as f64)
        .await;
    let page = run.metrics().await;
    let dest = [("destination", "night")];
    assert_eq!(
        sample(&page, "wecom_robots_disabled", &dest),
        Some(1.0),
        "{page}"
    );
    assert_eq!(sample(&page, "wecom_database_up", &[]), Some(1.0), "{page}");
    let sending = [("destination", "night"), ("status", "sending")];
    assert_eq!(
        sample(&page, "wecom_queue_depth", &sending),
        Some(0.0),
        "{page}"
    );
    let age = sample(&page, "wecom_oldest_pending_age_seconds", &dest);
    assert!(age.is_some_and(|a| a >= 0.0), "{page}");
    assert_eq!(db.status_count("pending").await, 4, "nothing was sent");
    run.running.stop("TERM", WAIT).await.0.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_are_404() {
    let (db, fake) = (TestDatabase::migrated().await, standin(20, MINUTE).await);
    let run = MetricsRun::start(run_with_metrics(&db.url, &fake)).await;
    assert_eq!(run.get("/").await.0, 404);
    assert_eq!(run.get("/metrics/x").await.0, 404);
    run.running.stop("TERM", WAIT).await.0.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_addr_that_is_not_an_address_is_refused_naming_the_flag() {
    let out = Cli::new(&["run", "--metrics-addr", "nonsense"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .await;
    out.fails();
    assert!(
        out.stderr.contains("--metrics-addr") && out.stderr.contains("nonsense"),
        "names the flag and the value: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_addr_already_in_use_stops_run_before_the_worker_starts() {
    let db = TestDatabase::migrated().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    db.exec("INSERT INTO wecom_webhooks (webhook_name, webhook_url) VALUES ('r', 'http://127.0.0.1:1/cgi-bin/webhook/send?key=k')")
        .await;
    db.enqueue("r", "stays", 1).await;
    let out = Cli::new(&["run", "--metrics-addr", &addr])
        .env("DATABASE_URL", &db.url)
        .output()
        .await;
    let error = out.one_line_error();
    assert!(
        error.contains(&format!("--metrics-addr {addr}")),
        "names the flag and the address: {out}"
    );
    assert!(!out.stderr.contains("worker started"), "{out}");
    assert_eq!(db.status_count("pending").await, 1, "nothing was claimed");
    drop(taken);
}

/// The sent count of every robot on a `/metrics` page, added up.
fn sent_on(page: &str) -> f64 {
    ["r-1", "r-2"]
        .iter()
        .filter_map(|r| {
            let labels = [("destination", "parents"), ("robot", *r)];
            sample(page, "wecom_messages_sent_total", &labels)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_in_one_process_each_count_only_their_own_sends() {
    let (db, fake) = (TestDatabase::migrated().await, standin(20, MINUTE).await);
    for name in ["r-1", "r-2"] {
        add_robot(&db, &fake, name, &secret_key(), "parents").await;
    }
    db.enqueue("parents", "m", 6).await;
    let replicas: Vec<(Replica, Metrics)> = ["one", "two"]
        .into_iter()
        .map(|id| {
            let metrics = Metrics::prometheus();
            let config = WorkerConfig {
                metrics: metrics.clone(),
                ..fast_config(id, &fake)
            };
            (Replica::start(&db, config), metrics)
        })
        .collect();
    db.wait_for_status("sent", 6, WAIT).await;
    let pages: Vec<String> = replicas.iter().map(|(_, m)| m.render().unwrap()).collect();
    for (replica, _) in replicas {
        replica.stop().await;
    }
    let total: f64 = pages.iter().map(|p| sent_on(p)).sum();
    assert_eq!(
        total, 6.0,
        "each send counted once, by its replica: {pages:#?}"
    );
    assert_eq!(Metrics::off().render(), None, "off records nothing");
}
