//! `run --metrics-addr` on MariaDB / MySQL: the metrics and `/healthz` do not depend on the
//! backend (the instrumentation is in the worker, the health check is `Store::ping`), so one
//! test proves both work here too. Without `MYSQL_DATABASE_URL` it prints SKIPPED and passes.

mod cli_support;
mod metrics_support;

use cli_support::{secret_key, secret_part, Cli};
use metrics_support::{sample, MetricsRun};
use std::time::Duration;
use wecom_outbox::testing::{standin, MySqlTestDatabase};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_sent_total_work_on_mysql() {
    let Some(db) = MySqlTestDatabase::migrated("mysql_metrics").await else {
        return;
    };
    let fake = standin(20, Duration::from_secs(60)).await;
    let key = secret_key();
    db.add_robot_at(
        "m-1",
        &fake.url_for(&key),
        Some("parents"),
        20,
        Duration::from_secs(60),
    )
    .await;
    db.enqueue("parents", "hello", 2).await;

    let cli = Cli::new(&["run", "--metrics-addr", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .allow(&fake);
    let run = MetricsRun::start(cli).await;
    db.wait_for_status("sent", 2, WAIT).await;

    let page = run.metrics().await;
    let robot = [("destination", "parents"), ("robot", "m-1")];
    assert_eq!(
        sample(&page, "wecom_messages_sent_total", &robot),
        Some(2.0),
        "{page}"
    );
    assert_eq!(run.get("/healthz").await, (200, "ok\n".to_owned()));
    assert!(
        !page.contains(secret_part(&key)),
        "the key in /metrics: {page}"
    );
    run.running.stop("TERM", WAIT).await.0.ok();
}
