//! `wecom-outbox demo`: the whole product on one screen, on a database that is thrown away.
//! A newcomer sees SQL enqueue a school's fee reminders, two worker replicas drain them
//! through a pool of three robots at WeCom's real limit (with a short window, so it takes
//! seconds), a robot in its quiet hours holding its messages, and a summary that shows no
//! 45009 was ever needed.
//!
//! `place` decides where the tables live, `school` writes the data, `report` prints;
//! this file runs the steps in order.

mod place;
mod report;
mod school;
pub mod throwaway_pg;

use crate::rules::retry::RetryPolicy;
use crate::standin::{Standin, StandinConfig};
use crate::store::Store;
use crate::wecom::allowed_hosts::AllowedHosts;
use crate::wecom::client::WeComClient;
use crate::worker::{self, WorkerConfig};
use place::Place;
use report::{Progress, Summary};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `demo` may be told; the defaults make a run of about ten seconds.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Use this server (in a new database of its own) instead of a throwaway cluster.
    pub database_url: Option<String>,
    /// Where `initdb` and `pg_ctl` are, when they are not in a usual place.
    pub pg_bin_dir: Option<PathBuf>,
    /// The rate window of the stand-in and the robots (WeCom's is 60 s).
    pub window: Duration,
    /// Plain-text rows inserted as AppSheet would, on top of the reminders.
    pub extra_messages: u32,
}

/// How the demo ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The pool drained and the summary was printed.
    Finished,
    /// Stopped by Ctrl-C or SIGTERM; everything it created was removed.
    Interrupted,
}

/// The longest the pool may take to drain before the demo says something is wrong.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Run the demo; `stop` (Ctrl-C) ends it early. Whatever it created is removed either way.
pub async fn run(options: DemoOptions, stop: CancellationToken) -> anyhow::Result<Ending> {
    let place = match &options.database_url {
        Some(url) => Place::database_beside(url).await?,
        None => {
            crate::outln!("Starting a throwaway PostgreSQL from this machine's binaries …")?;
            match Place::throwaway(options.pg_bin_dir.clone()).await {
                Ok(place) => place,
                // Ctrl-C reaches initdb and pg_ctl too; what they left is already removed.
                Err(_) if stop.is_cancelled() => return Ok(Ending::Interrupted),
                Err(e) => return Err(e),
            }
        }
    };
    // From here on every way out (a closed stdout included) goes through place.remove().
    let result = match crate::outln!("Database: {}", place.describe()) {
        Err(e) => Err(e.into()),
        Ok(()) if stop.is_cancelled() => Ok(Ending::Interrupted),
        Ok(()) => show(place.url(), &options, &stop).await,
    };
    let removed = place.remove().await;
    let ending = result?;
    removed?;
    Ok(ending)
}

/// Everything between creating the database and removing it.
async fn show(
    url: &str,
    options: &DemoOptions,
    stop: &CancellationToken,
) -> anyhow::Result<Ending> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    crate::outln!(
        "Migrated: wecom_webhooks, wecom_outbox, wecom_message_log and friends are ready."
    )?;
    let db = school::Db::of(&store);
    load_school(db).await?;

    let standin = start_standin(options.window).await?;
    school::add_robots(db, &standin, options.window).await?;
    crate::outln!(
        "Fake WeCom on {} (WeCom's limit: {} messages per robot per window; window shortened to {:?}).",
        standin.local_addr(),
        school::RATE_LIMIT,
        options.window
    )?;
    crate::outln!(
        "Robots: pool {} = {} (customer group, text and news only); {} is in its quiet hours.",
        school::POOL,
        school::POOL_ROBOTS.join(", "),
        school::QUIET_ROBOT
    )?;

    enqueue(&store, options.extra_messages).await?;
    let replicas = Replicas::start(url, &standin)?;
    crate::outln!("Two worker replicas started; draining {} …", school::POOL)?;
    let drained = drain(db, &standin, stop).await;
    replicas.stop().await;
    let Some(taken) = drained? else {
        return Ok(Ending::Interrupted);
    };

    crate::outln!("\nAs a parent reads them in WeChat:")?;
    crate::out!("{}", report::parent_view(&standin, 3))?;
    let summary = Summary::read(db, &standin, taken, options.window).await?;
    crate::outln!()?;
    crate::out!("{}", summary.render())?;
    standin.shutdown().await;
    Ok(Ending::Finished)
}

/// The example school: its tables, the view the reminder procedure reads, and a few dozen
/// enrollments, in the backend's own SQL. The PostgreSQL file is written for psql; its `\`
/// meta-commands are left out here.
async fn load_school(db: school::Db<'_>) -> anyhow::Result<()> {
    let (file, result) = match db {
        school::Db::Pg(pool) => {
            let sql: String = SCHOOL_SQL
                .lines()
                .filter(|line| !line.trim_start().starts_with('\\'))
                .collect::<Vec<_>>()
                .join("\n");
            (
                "sql/example_school.sql",
                sqlx::raw_sql(&sql).execute(pool).await.map(drop),
            )
        }
        school::Db::My(pool) => (
            "sql/example_school_mysql.sql",
            sqlx::raw_sql(SCHOOL_SQL_MYSQL)
                .execute(pool)
                .await
                .map(drop),
        ),
    };
    result.map_err(|e| anyhow::anyhow!("loading {file} failed: {e}"))?;
    crate::outln!("Loaded the example school ({file}: students, tutors, enrollments, payments).")?;
    Ok(())
}

/// The example school's schema and data, for PostgreSQL.
const SCHOOL_SQL: &str = include_str!("../../sql/example_school.sql");
/// The same school for MySQL 8.0 / MariaDB.
const SCHOOL_SQL_MYSQL: &str = include_str!("../../sql/example_school_mysql.sql");

async fn start_standin(window: Duration) -> anyhow::Result<Standin> {
    let config = StandinConfig {
        limit: school::RATE_LIMIT as usize,
        window,
    };
    let addr = "127.0.0.1:0".parse().expect("a socket address");
    Ok(Standin::start(addr, config).await?)
}

/// The day's messages: reminders from SQL, AppSheet-style rows, and the tutors' lists.
async fn enqueue(store: &Store, extra: u32) -> anyhow::Result<()> {
    let db = school::Db::of(store);
    let reminders = store.enqueue_reminders(None).await?.enqueued;
    let sql = school::enqueue_reminders_sql(db);
    crate::outln!("Enqueued {reminders} fee reminders: {sql}.")?;
    let rows = school::enqueue_appsheet_rows(db, extra).await?;
    crate::outln!(
        "Enqueued {rows} lesson confirmations as plain rows, the way AppSheet writes them."
    )?;
    let held = school::enqueue_for_tutors(db).await?;
    crate::outln!("Enqueued {held} messages for {}.", school::QUIET_ROBOT)?;
    Ok(())
}

/// Poll until the pool's rows are all done, printing a line a second. `None` if stopped.
async fn drain(
    db: school::Db<'_>,
    standin: &Standin,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    let mut next_line = started;
    loop {
        let progress = Progress::read(db).await?;
        let rejected = standin.stats().rejected_45009;
        if progress.done() || Instant::now() >= next_line {
            crate::outln!("{}", progress.line(started.elapsed(), rejected))?;
            next_line += Duration::from_secs(1);
        }
        if progress.done() {
            return Ok(Some(last_arrival(standin, started)));
        }
        anyhow::ensure!(
            started.elapsed() < DRAIN_TIMEOUT,
            "{} messages still waiting after {DRAIN_TIMEOUT:?}: see `wecom-outbox status`",
            progress.waiting
        );
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// From the start of draining to the last message the fake WeCom accepted.
fn last_arrival(standin: &Standin, started: Instant) -> Duration {
    standin
        .received()
        .iter()
        .map(|r| r.at.saturating_duration_since(started))
        .max()
        .unwrap_or_default()
}

/// Two worker replicas in this process, each with its own connections, as two processes
/// would have.
struct Replicas {
    shutdown: CancellationToken,
    handles: Vec<JoinHandle<Result<(), crate::store::StoreError>>>,
}

impl Replicas {
    fn start(url: &str, standin: &Standin) -> anyhow::Result<Replicas> {
        let shutdown = CancellationToken::new();
        let allowed =
            AllowedHosts::parse(&standin.local_addr().to_string()).map_err(anyhow::Error::msg)?;
        let mut handles = Vec::new();
        for n in 1..=2 {
            let config = WorkerConfig {
                worker_id: format!("demo-replica-{n}"),
                retry: RetryPolicy {
                    base: Duration::from_millis(200),
                    max: Duration::from_secs(2),
                },
                lease: Duration::from_secs(30),
                shutdown_grace: Duration::from_secs(5),
                max_idle: Duration::from_secs(1),
                allowed_hosts: allowed.clone(),
                ..WorkerConfig::default()
            };
            let store = Store::connect_lazy(url, 5)?;
            let client = WeComClient::new(Duration::from_secs(5))?;
            let task = worker::run(store, client, config, shutdown.child_token());
            handles.push(tokio::spawn(task));
        }
        Ok(Replicas { shutdown, handles })
    }

    /// Stop both and wait for them (they finish or release what they claimed).
    async fn stop(mut self) {
        self.shutdown.cancel();
        for handle in std::mem::take(&mut self.handles) {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "a demo replica failed"),
                Err(e) => tracing::warn!(error = %e, "a demo replica panicked"),
            }
        }
    }
}

impl Drop for Replicas {
    /// An early return must not leave replicas sending in the background.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `demo` prints its own story on stdout; the worker's info logs would drown it. Call
/// before logging starts; an explicit `RUST_LOG` still wins. sqlx's own warnings are left
/// out too: the demo ends by dropping its database with its connections (`WITH (FORCE)`),
/// and a pool that sees its connections end says so, about nothing the reader did.
pub fn prefer_quiet_logs() {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn,sqlx=error");
    }
}
