//! `run` stops gracefully on SIGTERM and SIGINT, as an operator (systemd, Kubernetes, Ctrl-C)
//! stops it: the send in flight finishes and is recorded, every other claimed row goes back
//! to `pending` with its attempt given back, nothing is left `sending`, and it exits 0.

mod cli_support;

use cli_support::{eventually, Cli, Running};
use serde_json::Value;
use std::time::Duration;
use wecom_outbox::standin::{Behaviour, Standin};
use wecom_outbox::testing::{standin, TestDatabase};

const GRACE: Duration = Duration::from_secs(5);

/// A robot `office` whose every request takes `delay` to answer, ten rows for it, and a
/// worker that has just started sending the first of them.
async fn worker_mid_send(delay: Duration, extra: &[&str]) -> (TestDatabase, Standin, Running) {
    let db = TestDatabase::migrated().await;
    let fake = standin(20, Duration::from_secs(60)).await;
    db.add_robot(&fake, "office", None, 20, Duration::from_secs(60))
        .await;
    fake.set_behaviour("key-office", Behaviour::Delay(delay));
    db.enqueue("office", "reminder", 10).await;

    let mut args = vec!["run", "--retry-base-delay", "200ms"];
    args.extend_from_slice(extra);
    let worker = Cli::new(&args).db(&db).allow(&fake).spawn();
    eventually(
        "the worker to claim rows",
        Duration::from_secs(20),
        || async {
            worker.assert_running();
            db.status_count("sending").await > 0
        },
    )
    .await;
    // The claim is committed before the first request starts; give the request time to leave.
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.assert_running();
    assert!(
        fake.received().is_empty(),
        "the first message should still be in flight (the stand-in answers after {delay:?})"
    );
    (db, fake, worker)
}

/// Stop a worker mid-send with `signal` and check everything a user relies on.
async fn stops_gracefully_on(signal: &str) {
    let grace = format!("{}s", GRACE.as_secs());
    let (db, fake, worker) =
        worker_mid_send(Duration::from_secs(2), &["--shutdown-grace", &grace]).await;

    let (out, took) = worker.stop(signal, GRACE + Duration::from_secs(5)).await;
    out.ok();
    assert!(
        took < GRACE,
        "SIG{signal}: took {took:?} to stop, more than the grace period"
    );
    assert_eq!(
        db.status_count("sending").await,
        0,
        "rows left 'sending' after SIG{signal}: {out}"
    );
    assert_eq!(
        db.status_count("sent").await,
        1,
        "the message in flight was not finished and recorded: {out}"
    );
    assert_eq!(
        fake.received().len(),
        1,
        "a message was sent after SIG{signal}"
    );
    assert_eq!(db.status_count("pending").await, 9);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox
             WHERE status = 'pending' AND attempts = 0 AND locked_by IS NULL AND locked_until IS NULL"
        )
        .await,
        9,
        "released rows must not burn an attempt or keep a lease"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log").await,
        1,
        "only the sent row has a log row"
    );

    // The released rows gave their rate-limit reservations back: one send used, 19 left.
    let status = Cli::new(&["status", "--json"])
        .db(&db)
        .allow(&fake)
        .output()
        .await;
    status.ok();
    let status: Value = serde_json::from_str(&status.stdout).expect("JSON");
    assert_eq!(
        status["destinations"][0]["robots"][0]["budget_left"],
        Value::from(19),
        "{status:#}"
    );

    // A new replica picks the released rows up and sends them.
    fake.set_behaviour("key-office", Behaviour::Normal);
    let again = Cli::new(&["run"]).db(&db).allow(&fake).spawn();
    db.wait_for(
        "SELECT count(*) FROM wecom_outbox WHERE status = 'sent' AND attempts = 1",
        10,
        Duration::from_secs(20),
    )
    .await;
    again.stop("TERM", GRACE).await.0.ok();
    assert_eq!(fake.received().len(), 10, "each message arrives once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_send_in_flight_and_releases_the_rest() {
    stops_gracefully_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_finishes_the_send_in_flight_and_releases_the_rest() {
    stops_gracefully_on("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_stops_at_once() {
    let db = TestDatabase::migrated().await;
    let fake = standin(20, Duration::from_secs(60)).await;
    db.add_robot(&fake, "office", None, 20, Duration::from_secs(60))
        .await;
    let worker = Cli::new(&["run"]).db(&db).allow(&fake).spawn();
    eventually("the worker to start", Duration::from_secs(20), || async {
        worker.assert_running();
        worker.stderr_so_far().contains("worker started")
    })
    .await;
    let (out, took) = worker.stop("TERM", GRACE).await;
    out.ok();
    assert!(took < Duration::from_secs(2), "idle, yet took {took:?}");
}

/// A send that outlasts the grace period is abandoned to its lease (it may have reached
/// WeCom), but the rows claimed with it that never started go back to `pending` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_period_only_the_send_in_flight_waits_for_its_lease() {
    let (db, fake, worker) = worker_mid_send(
        Duration::from_secs(4),
        &["--shutdown-grace", "1s", "--http-timeout", "10s"],
    )
    .await;
    let (out, took) = worker.stop("TERM", Duration::from_secs(5)).await;
    out.ok();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        db.status_count("sending").await,
        1,
        "only the send in flight may wait for its lease: {out}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE status = 'pending' AND attempts = 0")
            .await,
        9
    );
    drop(fake);
}
