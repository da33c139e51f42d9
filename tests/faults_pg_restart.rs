//! The fault suite, the database's side: PostgreSQL restarted (`pg_ctl restart -m fast`, which
//! ends every connection) and then crashed (`-m immediate`: no shutdown checkpoint, crash
//! recovery on start) while three `run` replicas drain a pool of robots. Nothing is lost,
//! nothing stays `sending`, every message gets its one log row, and no message reaches WeCom
//! twice except those in flight when the database went away.
//!
//! The test starts a PostgreSQL cluster of its own (scripts/pg-throwaway) so it can restart
//! it; it is alone in this file because it points `DATABASE_URL` at that cluster for its
//! whole process. Without PostgreSQL's server binaries it says SKIPPED and passes.

mod cli_support;

use cli_support::{eventually, Cli, Running};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use wecom_outbox::standin::Behaviour;
use wecom_outbox::testing::{standin, TestDatabase};

const REPLICAS: usize = 3;
const ROBOTS: [&str; 3] = ["robot_a", "robot_b", "robot_c"];
const MESSAGES: i64 = 120;

/// How PostgreSQL is stopped and started again, in order, each after another quarter of the
/// messages is sent.
const RESTARTS: [&str; 2] = ["fast", "immediate"];

/// scripts/pg-throwaway's exit status when the server binaries are missing.
const NO_BINARIES: i32 = 3;

/// A private PostgreSQL cluster, stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-throwaway")
}

impl Cluster {
    /// `None` (after saying SKIPPED) when the machine has no PostgreSQL server binaries.
    fn start() -> Option<Cluster> {
        let dir = std::env::temp_dir().join(format!("wecom-faults-pg-{}", uuid::Uuid::new_v4()));
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run scripts/pg-throwaway");
        if out.status.code() == Some(NO_BINARIES) {
            eprintln!(
                "SKIPPED: no PostgreSQL server binaries: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        assert!(
            out.status.success(),
            "scripts/pg-throwaway start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(Cluster { dir, url })
    }

    /// `pg_ctl restart -m MODE` as the cluster's owner (`fast`: connections ended, clean
    /// shutdown; `immediate`: like a crash, recovered from the WAL on start); the server comes
    /// back on the same port; returns once it accepts connections again.
    fn restart(&self, mode: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let restart = format!(
            "bin=${{PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin /usr/pgsql-*/bin 2>/dev/null | sort -V | tail -n1)}}; \
             cmd=\"$bin/pg_ctl -D '{data}' -l '{log}' -w -t 60 -m {mode} restart\"; \
             if [ \"$(id -u)\" = 0 ]; then runuser -u \"$(stat -c %U '{data}')\" -- sh -c \"$cmd\"; else sh -c \"$cmd\"; fi",
            data = data.display(),
            log = log.display(),
            mode = mode,
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&restart)
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
    }
}

/// How many times each message reached the stand-in, by its text.
fn deliveries(received: &[wecom_outbox::standin::Received]) -> BTreeMap<String, usize> {
    let mut per_message = BTreeMap::new();
    for r in received {
        let text = r.body["text"]["content"].as_str().unwrap_or("?").to_owned();
        *per_message.entry(text).or_default() += 1;
    }
    per_message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_or_crashed_mid_drain_loses_nothing_and_duplicates_at_most_the_sends_in_flight(
) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // This file's only test: the test database goes on the cluster it can restart.
    std::env::set_var("DATABASE_URL", &cluster.url);
    let db = TestDatabase::migrated().await;
    // The throwaway cluster runs with synchronous_commit=off (fast tests); a crash would then
    // forget commits a real server keeps. This database commits durably, as production does.
    db.exec(
        "DO $$ BEGIN
             EXECUTE format('ALTER DATABASE %I SET synchronous_commit = on', current_database());
         END $$",
    )
    .await;
    let fake = standin(0, Duration::from_secs(60)).await;
    for robot in ROBOTS {
        db.add_robot(&fake, robot, Some("parents"), 1000, Duration::from_secs(60))
            .await;
        // Each send takes a while, so sends are in flight when the database goes.
        fake.set_behaviour(
            &format!("key-{robot}"),
            Behaviour::Delay(Duration::from_millis(100)),
        );
    }
    db.enqueue("parents", "reminder", MESSAGES).await;

    let workers: Vec<Running> = (1..=REPLICAS)
        .map(|i| {
            let id = format!("restart-replica-{i}");
            Cli::new(&[
                "run",
                "--worker-id",
                &id,
                "--lease",
                "5s",
                "--batch-size",
                "5",
                "--retry-base-delay",
                "100ms",
                "--http-timeout",
                "2s",
            ])
            .db(&db)
            .allow(&fake)
            .spawn()
        })
        .collect();
    let mut observed = Vec::new();
    for (i, mode) in RESTARTS.iter().enumerate() {
        let quarter = MESSAGES / 4 * (i as i64 + 1);
        eventually(
            &format!("{quarter} messages to be sent"),
            Duration::from_secs(60),
            || async {
                workers.iter().for_each(Running::assert_running);
                db.status_count("sent").await >= quarter
            },
        )
        .await;
        observed.push(restart(&cluster, &db, mode, fake.received().len()).await);
    }

    eventually(
        "every message to be sent after the restart",
        Duration::from_secs(90),
        || async {
            workers.iter().for_each(Running::assert_running);
            db.status_count("sent").await == MESSAGES
        },
    )
    .await;
    let mut outputs = Vec::new();
    for worker in workers {
        let (out, _) = worker.stop("TERM", Duration::from_secs(20)).await;
        out.ok();
        outputs.push(out);
    }

    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE status <> 'sent'")
            .await,
        0,
        "nothing lost, nothing left sending"
    );
    assert_eq!(
        db.count(
            "SELECT count(DISTINCT outbox_id) FROM wecom_message_log WHERE send_status = 'sent'"
        )
        .await,
        MESSAGES,
        "one log row per message"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_message_log").await,
        MESSAGES
    );
    let per_message = deliveries(&fake.received());
    assert_eq!(
        per_message.len() as i64,
        MESSAGES,
        "every message reached WeCom"
    );
    let duplicates: Vec<_> = per_message.iter().filter(|(_, n)| **n > 1).collect();
    let extra: usize = duplicates.iter().map(|(_, n)| **n - 1).sum();
    eprintln!(
        "observed: {}; {} deliveries in all for {MESSAGES} messages; duplicates: {duplicates:?}",
        observed.join("; "),
        fake.received().len()
    );
    // One robot sends one message at a time, so at most one send per robot was in flight.
    let in_flight = ROBOTS.len() * RESTARTS.len();
    assert!(
        extra <= in_flight,
        "{extra} duplicate deliveries, more than the {in_flight} sends that can be in flight: {duplicates:?}\n{}",
        outputs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(db);
    drop(cluster);
}

/// Restarts the cluster in `mode` and checks it really went down mid-drain; says what was seen.
async fn restart(cluster: &Cluster, db: &TestDatabase, mode: &str, delivered: usize) -> String {
    let started = "SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint";
    let first_start = db.count(started).await;
    let unsent = MESSAGES - db.status_count("sent").await;
    cluster.restart(mode);
    assert_ne!(db.count(started).await, first_start, "the server restarted");
    assert!(unsent > 0, "the {mode} restart came before the drain ended");
    format!("{mode} restart with {unsent} unsent and {delivered} delivered")
}
