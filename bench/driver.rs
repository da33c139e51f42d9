//! Benchmarks: `bench/run SCENARIO [--smoke]` (or `cargo run --release --example bench --
//! SCENARIO [--smoke]` after `cargo build --release`) with `DATABASE_URL` set (bench/run starts a
//! throwaway PostgreSQL when it is not). One JSON line per scenario.
//!
//! An example target, not a binary: only developers build it, and `cargo install` installs
//! `wecom-outbox` alone. It uses the library's test helpers (feature `testing`, on for examples
//! through the dev-dependency on the crate itself).
//! Scenarios: drain, drain-robots, peer (Graphile Worker, needs node and `npm install` in bench/peer),
//! makespan, stricter, latency, backlog, many-robots, idle, trickle, status, all (everything
//! but peer in --smoke).
//!
//! The backend is `DATABASE_URL`'s scheme. With `mysql://…` / `mariadb://…` (a server URL
//! without a database, for a user that may CREATE DATABASE; `bench/run --mysql` passes
//! `MYSQL_DATABASE_URL`) only `latency` runs, and `all` means `latency`: the other scenarios
//! are PostgreSQL's.

use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use wecom_outbox::standin::Standin;
use wecom_outbox::store::Store;
use wecom_outbox::testing::{fast_config, standin, MySqlTestDatabase, Replica, TestDatabase};

/// The scenarios that also run on MySQL / MariaDB.
const ON_MYSQL: [&str; 1] = ["latency"];

/// `DATABASE_URL` names a MySQL or MariaDB server.
fn on_mysql() -> bool {
    std::env::var("DATABASE_URL")
        .map(|url| url.starts_with("mysql://") || url.starts_with("mariadb://"))
        .unwrap_or(false)
}

#[derive(Clone, Copy)]
struct Size {
    smoke: bool,
}

impl Size {
    fn pick(self, full: i64, smoke: i64) -> i64 {
        if self.smoke {
            smoke
        } else {
            full
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = Size {
        smoke: args.iter().any(|a| a == "--smoke"),
    };
    let scenario = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("all");
    let all = [
        "drain",
        "drain-robots",
        "peer",
        "makespan",
        "stricter",
        "latency",
        "backlog",
        "many-robots",
        "idle",
        "trickle",
        "status",
    ];
    let chosen: Vec<&str> = match scenario {
        "all" if on_mysql() => ON_MYSQL.to_vec(),
        one if on_mysql() && !ON_MYSQL.contains(&one) => {
            anyhow::bail!("scenario {one} runs on PostgreSQL only; on MySQL: {ON_MYSQL:?} or all")
        }
        "all" => all
            .iter()
            .copied()
            .filter(|s| !(size.smoke && *s == "peer"))
            .collect(),
        one => vec![one],
    };
    for s in chosen {
        let line = match s {
            "drain" => drain(size).await?,
            "drain-robots" => drain_robots(size).await?,
            "peer" => peer(size).await?,
            "makespan" => makespan(size).await?,
            "stricter" => stricter(size).await?,
            "latency" => latency(size).await?,
            "backlog" => backlog(size).await?,
            "many-robots" => many_robots(size).await?,
            "idle" => idle(size).await?,
            "trickle" => trickle(size).await?,
            "status" => status(size).await?,
            other => anyhow::bail!("unknown scenario {other}; one of {all:?} or all"),
        };
        println!("{line}");
    }
    Ok(())
}

/// Robots `r0..rN` in one pool each (own destination) at the stand-in, effectively unlimited.
async fn robots(
    db: &TestDatabase,
    fake: &Standin,
    n: i64,
    limit: i64,
    window_secs: f64,
    pooled: bool,
) {
    sqlx::query(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name, rate_limit, rate_window)
         SELECT 'r' || i, $1 || i, CASE WHEN $5 THEN 'pool' END, $2, make_interval(secs => $3)
         FROM generate_series(0, $4 - 1) i",
    )
    .bind(fake.url_for("bench-key-"))
    .bind(limit as i32)
    .bind(window_secs)
    .bind(n)
    .bind(pooled)
    .execute(db.pool())
    .await
    .expect("robots");
}

/// `n` messages spread round-robin over destinations `r0..r{robots-1}`.
async fn spread(db: &TestDatabase, n: i64, robots: i64) {
    sqlx::query(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type)
         SELECT 'r' || (i % $2), 'bench message ' || i, 'bench' FROM generate_series(1, $1) i",
    )
    .bind(n)
    .bind(robots)
    .execute(db.pool())
    .await
    .expect("enqueue");
}

/// The release binary the worker processes run: `WECOM_OUTBOX_BIN` (bench/run sets it), else
/// `target/release/wecom-outbox`, beside the `examples/` directory this driver is built in.
fn worker_binary() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("WECOM_OUTBOX_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the bench driver's own path");
    let examples = exe.parent().expect("the bench driver's directory");
    examples.parent().unwrap_or(examples).join("wecom-outbox")
}

/// Start `n` real worker processes; returns them for RSS reading and stopping.
fn processes(database_url: &str, fake: &Standin, n: usize) -> Vec<std::process::Child> {
    let bin = worker_binary();
    (0..n)
        .map(|i| {
            std::process::Command::new(&bin)
                .args([
                    "run",
                    "--worker-id",
                    &format!("bench-{i}"),
                    "--batch-size",
                    "100",
                ])
                .env("DATABASE_URL", database_url)
                .env("WECOM_ALLOWED_HOSTS", fake.local_addr().to_string())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn target/release/wecom-outbox (cargo build --release first)")
        })
        .collect()
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn stop(children: Vec<std::process::Child>) -> Vec<u64> {
    children
        .into_iter()
        .map(|mut c| {
            let rss = peak_rss_kb(c.id());
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
            rss
        })
        .collect()
}

/// Drain rate: messages/s from start to the last log row, 1 and 3 replicas; peak RSS.
async fn drain(size: Size) -> anyhow::Result<serde_json::Value> {
    let n = size.pick(10_000, 500);
    let mut result = json!({"scenario": "drain", "messages": n, "robots": 50});
    for replicas in [1usize, 3] {
        let (msgs_per_s, rss_mb) = drain_once(n, 50, replicas).await?;
        result[format!("replicas_{replicas}_msgs_per_s")] = json!(msgs_per_s);
        result[format!("replicas_{replicas}_peak_rss_mb")] = json!(rss_mb);
    }
    Ok(result)
}

/// The same drain over more robots (one replica): each robot has one message in flight at a
/// time, so if that rule is what bounds the drain, more robots drain faster.
async fn drain_robots(size: Size) -> anyhow::Result<serde_json::Value> {
    let n = size.pick(10_000, 500);
    let mut result = json!({"scenario": "drain-robots", "messages": n, "replicas": 1});
    for robots in [10, 50, 250, 1000] {
        let (msgs_per_s, _) = drain_once(n, robots, 1).await?;
        result[format!("robots_{robots}_msgs_per_s")] = json!(msgs_per_s);
    }
    Ok(result)
}

/// `n` messages over `robots` unlimited robots drained by `replicas` worker processes:
/// (messages/s from start to the last log row, the largest peak RSS in MB).
async fn drain_once(n: i64, robots_n: i64, replicas: usize) -> anyhow::Result<(f64, f64)> {
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    robots(&db, &fake, robots_n, 1_000_000, 60.0, false).await;
    spread(&db, n, robots_n).await;
    let started = Instant::now();
    let workers = processes(&db.url, &fake, replicas);
    db.wait_for(
        "SELECT count(*) FROM wecom_message_log",
        n,
        Duration::from_secs(300),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let rss = stop(workers);
    anyhow::ensure!(
        fake.stats().accepted as i64 == n,
        "every message delivered once"
    );
    let rss_mb = rss.iter().max().copied().unwrap_or(0) as f64 / 1024.0;
    Ok(((n as f64 / secs).round(), rss_mb))
}

/// The peer: Graphile Worker 0.16 at concurrency 20, each job POSTing one WeCom body to the
/// same stand-in, on its own fresh database of the same server.
async fn peer(size: Size) -> anyhow::Result<serde_json::Value> {
    let n = size.pick(10_000, 500);
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::empty().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/peer/graphile.js");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .env("DATABASE_URL", &db.url)
        .env("SINK", fake.url_for("peer"))
        .env("N", n.to_string())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        fake.stats().accepted as i64 == n,
        "the peer delivered every job once"
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `k` messages to pool `pool`, drained by `replicas` in-process replicas; seconds from
/// starting them to the last log row.
async fn drain_pool(
    db: &TestDatabase,
    fake: &Standin,
    k: i64,
    replicas: usize,
    prefix: &str,
) -> anyhow::Result<f64> {
    sqlx::query("INSERT INTO wecom_outbox (webhook_name, content) SELECT 'pool', 'm ' || i FROM generate_series(1, $1) i")
        .bind(k)
        .execute(db.pool())
        .await?;
    let started = Instant::now();
    let running: Vec<Replica> = (0..replicas)
        .map(|i| Replica::start(db, fast_config(&format!("{prefix}{i}"), fake)))
        .collect();
    db.wait_for(
        "SELECT count(*) FROM wecom_message_log",
        k,
        Duration::from_secs(600),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    for rep in running {
        rep.stop().await;
    }
    Ok(secs)
}

/// From the first arrival at the stand-in to the last, in seconds.
fn arrival_span(fake: &Standin) -> f64 {
    let arrivals: Vec<Instant> = fake.received().iter().map(|m| m.at).collect();
    match (arrivals.iter().min(), arrivals.iter().max()) {
        (Some(first), Some(last)) => (*last - *first).as_secs_f64(),
        _ => 0.0,
    }
}

/// Makespan against the physical limit, with a stand-in enforcing the same limit.
async fn makespan(size: Size) -> anyhow::Result<serde_json::Value> {
    let (k, r, limit, window) = (size.pick(300, 120), 3i64, 20i64, 3.0f64);
    let fake = standin(limit as usize, Duration::from_secs_f64(window)).await;
    let db = TestDatabase::migrated().await;
    robots(&db, &fake, r, limit, window, true).await;
    let secs = drain_pool(&db, &fake, k, 3, "m").await?;
    let physical = (k as f64 / (r * limit) as f64 - 1.0) * window;
    // The physical limit is the shortest span from the first arrival at WeCom to the last.
    let span = arrival_span(&fake);
    Ok(
        json!({"scenario": "makespan", "messages": k, "robots": r, "limit": limit, "window_s": window,
        "elapsed_from_start_s": secs, "first_to_last_arrival_s": span, "physical_limit_s": physical,
        "ratio": span / physical, "ratio_from_start": secs / physical,
        "answers_45009": fake.stats().rejected_45009}),
    )
}

/// WeCom stricter than configured: a pool of 2 robots configured 10 per 2 s, a stand-in that
/// allows 5 per 2 s, 2 in-process replicas. Makespan against what the stand-in allows, and
/// how many 45009 answers it took to find that out.
async fn stricter(size: Size) -> anyhow::Result<serde_json::Value> {
    let (k, r, configured, real, window) = (size.pick(40, 20), 2i64, 10i64, 5i64, 2.0f64);
    let fake = standin(real as usize, Duration::from_secs_f64(window)).await;
    let db = TestDatabase::migrated().await;
    robots(&db, &fake, r, configured, window, true).await;
    let secs = drain_pool(&db, &fake, k, 2, "s").await?;
    let stats = fake.stats();
    anyhow::ensure!(stats.accepted as i64 == k, "every message delivered once");
    // What the stand-in allows: the first window's burst, then one window per further burst.
    let possible = (k as f64 / (r * real) as f64 - 1.0) * window;
    let span = arrival_span(&fake);
    let max_45009_per_robot = stats.per_key.values().map(|c| c.rejected_45009).max();
    let learned: Vec<Option<i32>> = sqlx::query_scalar(
        "SELECT s.learned_rate_limit FROM wecom_robot_state s ORDER BY s.robot_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap_or_default();
    Ok(
        json!({"scenario": "stricter", "messages": k, "robots": r, "configured_limit": configured,
        "wecom_limit": real, "window_s": window, "makespan_s": secs, "first_to_last_arrival_s": span,
        "possible_s": possible, "ratio": secs / possible, "ratio_arrivals": span / possible, "answers_45009": stats.rejected_45009,
        "max_45009_per_robot": max_45009_per_robot, "learned_rate_limits": learned}),
    )
}

/// Latency: one message at a time while robots have budget; enqueue → sent.
async fn latency(size: Size) -> anyhow::Result<serde_json::Value> {
    if on_mysql() {
        return latency_mysql(size).await;
    }
    let n = size.pick(300, 30);
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    robots(&db, &fake, 1, 1_000_000, 60.0, false).await;
    let workers = processes(&db.url, &fake, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..n {
        sqlx::query("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('r0', $1)")
            .bind(format!("latency {i}"))
            .execute(db.pool())
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.wait_for(
        "SELECT count(*) FROM wecom_message_log",
        n,
        Duration::from_secs(60),
    )
    .await;
    stop(workers);
    let ms = sent_latencies_ms(&db).await?;
    Ok(latency_result("postgres", n, &ms))
}

/// The latency scenario on MySQL / MariaDB: the same robot, rows and pacing; the worker has
/// no LISTEN/NOTIFY there and finds new rows by its indexed poll.
async fn latency_mysql(size: Size) -> anyhow::Result<serde_json::Value> {
    let n = size.pick(300, 30);
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = MySqlTestDatabase::migrated("bench latency")
        .await
        .ok_or_else(|| anyhow::anyhow!("set MYSQL_DATABASE_URL (bench/run --mysql does)"))?;
    sqlx::query(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, rate_limit, rate_window)
         VALUES ('r0', ?, 1000000, 60)",
    )
    .bind(fake.url_for("bench-key-0"))
    .execute(db.pool())
    .await?;
    let workers = processes(&db.url, &fake, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..n {
        sqlx::query("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('r0', ?)")
            .bind(format!("latency {i}"))
            .execute(db.pool())
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.wait_for(
        "SELECT COUNT(*) FROM wecom_message_log",
        n,
        Duration::from_secs(60),
    )
    .await;
    stop(workers);
    let micros: Vec<i64> = sqlx::query_scalar(
        "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, sent_at) FROM wecom_outbox ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await?;
    let ms: Vec<f64> = micros.iter().map(|us| *us as f64 / 1000.0).collect();
    Ok(latency_result("mysql", n, &ms))
}

/// The latency line from sorted milliseconds.
fn latency_result(backend: &str, n: i64, ms: &[f64]) -> serde_json::Value {
    json!({"scenario": "latency", "backend": backend, "messages": n,
           "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99), "max_ms": percentile(ms, 1.0)})
}

/// The value at fraction `p` of `sorted` (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Every row's enqueue → sent time on PostgreSQL, in ms, sorted.
async fn sent_latencies_ms(db: &TestDatabase) -> anyhow::Result<Vec<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT extract(epoch FROM sent_at - created_at)::float8 * 1000 FROM wecom_outbox ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await?)
}

/// Drain rate of the first 10 000 messages with a large backlog behind them vs none.
async fn backlog(size: Size) -> anyhow::Result<serde_json::Value> {
    let (measure, big) = (size.pick(10_000, 500), size.pick(1_000_000, 20_000));
    let mut result = json!({"scenario": "backlog", "measured": measure, "backlog": big});
    for total in [measure, big] {
        let fake = standin(0, Duration::from_secs(60)).await;
        let db = TestDatabase::migrated().await;
        robots(&db, &fake, 50, 1_000_000, 60.0, false).await;
        spread(&db, total, 50).await;
        db.exec("VACUUM ANALYZE wecom_outbox").await;
        let started = Instant::now();
        let workers = processes(&db.url, &fake, 3);
        loop {
            if db.count("SELECT count(*) FROM wecom_message_log").await >= measure {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        stop(workers);
        result[format!("pending_{total}_msgs_per_s")] = json!((measure as f64 / secs).round());
        if total == big {
            let plan: Vec<String> = sqlx::query_scalar(
                "EXPLAIN SELECT id FROM wecom_outbox WHERE webhook_name = 'r1' AND status = 'pending'
                   AND not_before <= now() AND (expires_at IS NULL OR expires_at > now())
                 ORDER BY priority DESC, seq LIMIT 100 FOR UPDATE SKIP LOCKED",
            )
            .fetch_all(db.pool())
            .await?;
            result["claim_plan"] = json!(plan);
        }
    }
    let small = result[format!("pending_{measure}_msgs_per_s")]
        .as_f64()
        .unwrap_or(1.0);
    let large = result[format!("pending_{big}_msgs_per_s")]
        .as_f64()
        .unwrap_or(0.0);
    result["ratio"] = json!(large / small);
    Ok(result)
}

/// 5 000 robots with a few messages each: how long finding due robots and claiming take.
async fn many_robots(size: Size) -> anyhow::Result<serde_json::Value> {
    let n = size.pick(5_000, 200);
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    robots(&db, &fake, n, 20, 60.0, false).await;
    spread(&db, n * 2, n).await;
    db.exec("VACUUM ANALYZE").await;
    let store: &Store = &db.store;
    let t = Instant::now();
    let due = store.due_robots(64, &[]).await?;
    let due_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut claim_ms = Vec::new();
    for id in due.iter().take(20) {
        let t = Instant::now();
        let plan = |s: &wecom_outbox::rules::decide::RobotSnapshot,
                    _: &wecom_outbox::wecom::robot_url::RobotUrl,
                    now| { wecom_outbox::rules::decide::decide(s, now, 20) };
        let result = store
            .claim(*id, "bench", Duration::from_secs(60), plan)
            .await?;
        claim_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if let wecom_outbox::store::ClaimResult::Claimed(_, rows) = result {
            store.release(&rows).await?;
        }
    }
    claim_ms.sort_by(f64::total_cmp);
    let started = Instant::now();
    let workers = processes(&db.url, &fake, 3);
    db.wait_for(
        "SELECT count(*) FROM wecom_message_log",
        n * 2,
        Duration::from_secs(600),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    stop(workers);
    Ok(
        json!({"scenario": "many-robots", "robots": n, "messages": n * 2,
        "due_robots_query_ms": due_ms, "claim_p50_ms": claim_ms[claim_ms.len() / 2],
        "drain_s": secs}),
    )
}

/// Robots `r0..rN` spread round-robin over pools `p0..p{pools-1}`, 20 per minute each.
async fn pooled_robots(db: &TestDatabase, fake: &Standin, n: i64, pools: i64) {
    sqlx::query(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name, rate_limit, rate_window)
         SELECT 'r' || i, $1 || i, 'p' || (i % $3), 20, interval '60 seconds'
         FROM generate_series(0, $2 - 1) i",
    )
    .bind(fake.url_for("bench-key-"))
    .bind(n)
    .bind(pools)
    .execute(db.pool())
    .await
    .expect("robots");
}

/// The database's own counters: (transactions, tuples read). Every session's work counts,
/// the driver's INSERTs included; a backend reports its counts at most a second late.
async fn db_counters(db: &TestDatabase) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (xact_commit + xact_rollback)::int8, (tup_returned + tup_fetched)::int8
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(db.pool())
    .await?)
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    let ticks = fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// Each worker's CPU use since `before`, in % of one core over `secs`.
fn cpu_percent(children: &[std::process::Child], before: &[Duration], secs: f64) -> Vec<f64> {
    children
        .iter()
        .zip(before)
        .map(|(c, b)| {
            let used = cpu_time(c.id()).saturating_sub(*b).as_secs_f64();
            (used / secs * 1000.0).round() / 10.0
        })
        .collect()
}

/// The set-up issue 15 measures: 5 000 robots in 500 pools, 3 real replicas, settled for 30 s.
async fn quiet_fleet(size: Size) -> (Standin, TestDatabase, Vec<std::process::Child>) {
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    pooled_robots(&db, &fake, size.pick(5_000, 200), size.pick(500, 20)).await;
    db.exec("VACUUM ANALYZE").await;
    let workers = processes(&db.url, &fake, 3);
    // Settled: a replica's first seconds cost what it never costs again (each new pooled
    // connection prepares its statements on first use, a transaction each): 288 transactions
    // in the 15 s after a 5 s settle, then ~30 per 15 s.
    tokio::time::sleep(Duration::from_secs(size.pick(30, 2) as u64)).await;
    (fake, db, workers)
}

/// Idle: nothing pending; what 3 replicas cost the database and the machine.
async fn idle(size: Size) -> anyhow::Result<serde_json::Value> {
    let (_fake, db, workers) = quiet_fleet(size).await;
    let secs = size.pick(60, 3) as f64;
    let cpu_before: Vec<Duration> = workers.iter().map(|c| cpu_time(c.id())).collect();
    let (tx0, tup0) = db_counters(&db).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (tx1, tup1) = db_counters(&db).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_percent(&workers, &cpu_before, secs);
    stop(workers);
    let per_replica = (tx1 - tx0) as f64 / secs / 3.0;
    Ok(
        json!({"scenario": "idle", "robots": size.pick(5_000, 200), "replicas": 3, "seconds": secs,
        "tx_per_s_per_replica": (per_replica * 100.0).round() / 100.0,
        "tuples_read_per_s": ((tup1 - tup0) as f64 / secs).round(),
        "worker_cpu_percent": cpu}),
    )
}

/// Trickle: single-row INSERTs spread over a minute, the way AppSheet writes; what each
/// delivered message costs the database (its INSERT included) and how long it waits.
async fn trickle(size: Size) -> anyhow::Result<serde_json::Value> {
    let (fake, db, workers) = quiet_fleet(size).await;
    let (n, pools) = (size.pick(600, 20), size.pick(500, 20));
    let gap = Duration::from_secs_f64(size.pick(60, 2) as f64 / n as f64);
    let cpu_before: Vec<Duration> = workers.iter().map(|c| cpu_time(c.id())).collect();
    let (tx0, tup0) = db_counters(&db).await?;
    let started = Instant::now();
    for i in 0..n {
        sqlx::query("INSERT INTO wecom_outbox (webhook_name, content) VALUES ($1, $2)")
            .bind(format!("p{}", (i * 7) % pools))
            .bind(format!("trickle {i}"))
            .execute(db.pool())
            .await?;
        tokio::time::sleep(gap).await;
    }
    // Waiting on the stand-in, not the database: polling would count in the figures.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (fake.stats().accepted as i64) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_percent(&workers, &cpu_before, secs);
    stop(workers);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (tx1, tup1) = db_counters(&db).await?;
    let delivered = db.count("SELECT count(*) FROM wecom_message_log").await;
    anyhow::ensure!(
        delivered == n,
        "every message delivered once ({delivered} of {n})"
    );
    let ms = sent_latencies_ms(&db).await?;
    Ok(
        json!({"scenario": "trickle", "robots": size.pick(5_000, 200), "pools": pools,
        "replicas": 3, "messages": n, "seconds": secs,
        "tx_per_message": ((tx1 - tx0) as f64 / n as f64 * 10.0).round() / 10.0,
        "tuples_read_per_message": ((tup1 - tup0) as f64 / n as f64).round(),
        "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99),
        "worker_cpu_percent": cpu}),
    )
}

/// `status` before it read only live rows and a window of finished ones: every row of every
/// destination, counted by status. Kept here to time the old query on the same data.
const OLD_DESTINATIONS: &str = r#"
WITH destinations AS (
    SELECT destination FROM wecom_webhooks
    UNION
    SELECT DISTINCT webhook_name FROM wecom_outbox
)
SELECT d.destination,
       count(o.id) FILTER (WHERE o.status = 'pending')   AS pending,
       count(o.id) FILTER (WHERE o.status = 'sending')   AS sending,
       count(o.id) FILTER (WHERE o.status = 'sent')      AS sent,
       count(o.id) FILTER (WHERE o.status = 'failed')    AS failed,
       count(o.id) FILTER (WHERE o.status = 'cancelled') AS cancelled,
       count(o.id) FILTER (WHERE o.status = 'expired')   AS expired,
       min(o.created_at) FILTER (WHERE o.status = 'pending') AS oldest_pending,
       (SELECT last_error FROM wecom_outbox f
         WHERE f.webhook_name = d.destination AND f.last_error IS NOT NULL
         ORDER BY coalesce(f.sent_at, f.created_at) DESC LIMIT 1) AS last_error
FROM destinations d
LEFT JOIN wecom_outbox o ON o.webhook_name = d.destination
GROUP BY d.destination
ORDER BY d.destination
"#;

/// `n` finished rows over 50 destinations, finished_at spread evenly over the last 180 days
/// (1 % failed with an error, 1 % cancelled, 1 % expired, the rest sent), written in one
/// statement with the outbox's triggers off: they refuse preset worker columns, which is what
/// history is made of.
async fn history(db: &TestDatabase, n: i64) {
    db.exec("ALTER TABLE wecom_outbox DISABLE TRIGGER USER")
        .await;
    sqlx::query(
        r#"INSERT INTO wecom_outbox (webhook_name, payload, content, message_type, status,
                                     attempts, last_error, created_at, not_before, sent_at,
                                     finished_at)
           SELECT 'r' || (i % 50), jsonb_build_object('msgtype', 'text',
                      'text', jsonb_build_object('content', 'bench history ' || i)),
                  'bench history ' || i, 'bench', s, 1,
                  CASE s WHEN 'failed' THEN 'errcode 40058: invalid parameter' END,
                  t, t, CASE s WHEN 'sent' THEN t END, t
           FROM generate_series(1, $1) i,
                LATERAL (SELECT now() - interval '180 days' * (i::float8 / $1) AS t,
                                CASE i % 100 WHEN 0 THEN 'failed' WHEN 1 THEN 'cancelled'
                                             WHEN 2 THEN 'expired' ELSE 'sent' END AS s) x"#,
    )
    .bind(n)
    .execute(db.pool())
    .await
    .expect("history");
    db.exec("ALTER TABLE wecom_outbox ENABLE TRIGGER USER")
        .await;
}

/// Milliseconds of each of `runs` runs of `f`, sorted.
async fn timed<F, Fut>(runs: usize, mut f: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

/// `wecom-outbox status --json` with 1 000 000 finished rows (180 days of history) and a few
/// thousand pending: the release binary's wall time, p50 of 5; and the old and new per-
/// destination query on the same data.
async fn status(size: Size) -> anyhow::Result<serde_json::Value> {
    let (finished, pending) = (size.pick(1_000_000, 2_000), size.pick(5_000, 100));
    let fake = standin(0, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    robots(&db, &fake, 50, 20, 60.0, false).await;
    history(&db, finished).await;
    spread(&db, pending, 50).await;
    db.exec("VACUUM ANALYZE wecom_outbox").await;
    let bin = worker_binary();
    let mut failures = 0;
    let command_ms = timed(5, || {
        let out = std::process::Command::new(&bin)
            .args(["status", "--json"])
            .env("DATABASE_URL", &db.url)
            .env("WECOM_ALLOWED_HOSTS", fake.local_addr().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run target/release/wecom-outbox status");
        failures += usize::from(!out.success());
        async {}
    })
    .await;
    anyhow::ensure!(failures == 0, "status --json failed {failures} times");
    let store: &Store = &db.store;
    let new_ms = timed(5, || async {
        store.destination_counts().await.expect("new query");
    })
    .await;
    let old_ms = timed(5, || async {
        sqlx::query(OLD_DESTINATIONS)
            .fetch_all(db.pool())
            .await
            .expect("old query");
    })
    .await;
    Ok(
        json!({"scenario": "status", "finished_rows": finished, "pending_rows": pending,
              "destinations": 50, "finished_window_days": wecom_outbox::store::FINISHED_WINDOW_DAYS,
              "status_json_p50_ms": command_ms[2], "status_json_max_ms": command_ms[4],
              "new_query_p50_ms": new_ms[2], "old_query_p50_ms": old_ms[2]}),
    )
}
