//! `wecom-outbox … | head`: when the reader of stdout goes away, a command stops quietly —
//! exit 141 (what a shell reports for SIGPIPE), no panic, no backtrace — and cleans up what
//! it made. Driven through the real binary and real pipes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wecom_outbox::testing::{server_url, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_wecom-outbox");

/// The exit status of a command whose stdout was closed (see `cli::STDOUT_CLOSED`).
const STDOUT_CLOSED: i32 = 141;

/// Waits for `child` (at most a minute) and returns its exit code and stderr.
fn finish(mut child: std::process::Child, what: &str) -> (Option<i32>, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for wecom-outbox") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return (status.code(), stderr);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{what} did not stop within a minute of its stdout closing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn assert_quiet_stop(code: Option<i32>, stderr: &str, what: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace") && !stderr.contains("error"),
        "{what} complained about its closed stdout:\n{stderr}"
    );
    assert_eq!(
        code,
        Some(STDOUT_CLOSED),
        "{what} exit status\n--- stderr ---\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_whose_stdout_is_closed_stop_quietly_without_a_panic() {
    let db = TestDatabase::migrated().await;
    db.exec(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url)
         VALUES ('parent_group', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k');
         CREATE VIEW active_enrollments_needing_renewal AS
         SELECT 1 AS enrollment_id, 'Amy' AS student_name, 'Ms. Chan' AS tutor_name,
                'Monday' AS assigned_day, '16:00' AS assigned_time, 2 AS days_until_renewal,
                5 AS total_credits_remaining, '🔴 Not Yet Renewed' AS renewal_action_status;",
    )
    .await;
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["preview"],
        &["enqueue-reminders"],
        &["migrate"],
        &["send-test", "parent_group"],
        &["fake-wecom", "--listen", "127.0.0.1:0"],
        &["--help"],
        &["--version"],
    ] {
        // The pipe's only reader is gone before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let child = Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wecom-outbox");
        let what = format!("wecom-outbox {}", args.join(" "));
        let (code, stderr) = tokio::task::block_in_place(|| finish(child, &what));
        assert_quiet_stop(code, &stderr, &what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_piped_into_head_stops_quietly_and_drops_its_database() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .env("DATABASE_URL", server_url())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wecom-outbox demo");
    // `| head -3`: read three lines, then close the pipe.
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let first: Vec<String> = tokio::task::block_in_place(|| {
        (0..3)
            .map(|_| lines.next().expect("a line").expect("UTF-8"))
            .collect()
    });
    drop(lines);
    let database = first
        .iter()
        .find_map(|l| l.split("in a new database ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no demo database named in {first:?}"))
        .to_owned();

    let (code, stderr) = tokio::task::block_in_place(|| finish(child, "wecom-outbox demo"));
    assert_quiet_stop(code, &stderr, "wecom-outbox demo");

    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server_url())
        .await
        .expect("connect to the server");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "the demo's database {database} was left behind");
}
