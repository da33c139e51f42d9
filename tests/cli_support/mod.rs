//! Helpers shared by the tests that drive the real `wecom-outbox` binary as a user would:
//! build a command with a clean environment, run it to completion or keep it running and
//! stop it with a signal, and put robots with chosen keys in a test database.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use wecom_outbox::standin::Standin;
use wecom_outbox::testing::TestDatabase;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wecom-outbox");

/// No command run to completion may take longer than this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// `SECRETKEY-<uuid>`: a robot key no output may ever contain.
pub fn secret_key() -> String {
    format!("SECRETKEY-{}", uuid::Uuid::new_v4())
}

/// The part of a key that is secret enough to search for: what follows `SECRETKEY-`.
pub fn secret_part(key: &str) -> &str {
    key.strip_prefix("SECRETKEY-").unwrap_or(key)
}

/// A `wecom-outbox` invocation, with none of the test runner's own `DATABASE_URL`,
/// `WECOM_ALLOWED_HOSTS` or `RUST_LOG` leaking in.
pub struct Cli {
    cmd: Command,
    shown: String,
}

impl Cli {
    pub fn new(args: &[&str]) -> Cli {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("DATABASE_URL")
            .env_remove("WECOM_ALLOWED_HOSTS")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Cli {
            cmd,
            shown: format!("wecom-outbox {}", args.join(" ")),
        }
    }

    /// `DATABASE_URL` = the test database.
    pub fn db(self, db: &TestDatabase) -> Cli {
        self.env("DATABASE_URL", &db.url)
    }

    /// `WECOM_ALLOWED_HOSTS` = the stand-in's `127.0.0.1:PORT`.
    pub fn allow(self, fake: &Standin) -> Cli {
        let addr = fake.local_addr().to_string();
        self.env("WECOM_ALLOWED_HOSTS", &addr)
    }

    pub fn env(mut self, name: &str, value: &str) -> Cli {
        self.cmd.env(name, value);
        self
    }

    /// Run to completion (or panic after a minute) and capture everything.
    pub async fn output(mut self) -> Output {
        let out = tokio::time::timeout(COMMAND_TIMEOUT, self.cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`{}` did not finish within a minute", self.shown))
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        Output {
            command: self.shown,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Start it and keep it running; its output is collected as it comes (so a chatty
    /// `RUST_LOG=trace` never blocks on a full pipe).
    pub fn spawn(mut self) -> Running {
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running {
            command: self.shown,
            child: Mutex::new(child),
            stdout,
            stderr,
            readers,
        }
    }
}

fn collect(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// What a finished command left behind.
pub struct Output {
    pub command: String,
    /// `None` when it was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for "never contains" checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Exit 0, or a panic that shows everything it printed.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success from {self}");
        self
    }

    /// A non-zero exit (not a crash by signal).
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a non-zero exit from {self}"
        );
        self
    }

    /// The error, which must be exactly one non-empty line on stderr.
    #[track_caller]
    pub fn one_line_error(&self) -> &str {
        self.fails();
        let text = self.stderr.trim();
        assert!(
            !text.is_empty() && text.lines().count() == 1,
            "expected a one-line error on stderr from {self}"
        );
        let parts: Vec<&str> = text.split(": ").collect();
        assert!(
            parts.windows(2).all(|w| w[0] != w[1]),
            "the error repeats itself: {self}"
        );
        text
    }

    /// Panics if stdout or stderr contains `secret`.
    #[track_caller]
    pub fn never_shows(&self, secret: &str) -> &Self {
        assert!(
            !self.all().contains(secret),
            "{secret:?} appears in the output of {self}"
        );
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (exit {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// A process still running, e.g. `run` or `fake-wecom`.
pub struct Running {
    command: String,
    child: Mutex<Child>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap()
            .id()
            .expect("the process is still running")
    }

    /// What it printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// What it printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Panics (showing its output) if the process has already exited.
    pub fn assert_running(&self) {
        let exited = self.child.lock().unwrap().try_wait();
        if let Ok(Some(status)) = exited {
            panic!(
                "`{}` exited early ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.command,
                self.stdout_so_far(),
                self.stderr_so_far()
            );
        }
    }

    /// Send `signal` ("TERM", "INT", …) the way an operator would, with kill(1).
    pub async fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .await
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// Send `signal` and wait up to `within` for the process to exit; returns its output and
    /// how long it took to exit after the signal. Panics if it is still running then.
    pub async fn stop(self, signal: &str, within: Duration) -> (Output, Duration) {
        let sent = Instant::now();
        self.signal(signal).await;
        let Running {
            command,
            child,
            stdout,
            stderr,
            readers,
        } = self;
        let mut child = child.into_inner().unwrap();
        let text =
            |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
        let status = match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.expect("wait for the process"),
            Err(_) => {
                let _ = child.kill().await;
                panic!(
                    "`{command}` still running {within:?} after SIG{signal}\n--- stderr ---\n{}",
                    text(&stderr)
                );
            }
        };
        let took = sent.elapsed();
        for reader in readers {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        let output = Output {
            command,
            code: status.code(),
            stdout: text(&stdout),
            stderr: text(&stderr),
        };
        (output, took)
    }
}

/// Add a robot whose URL is exactly `url` (see `TestDatabase::add_robot_at`).
pub async fn add_robot_url(
    db: &TestDatabase,
    name: &str,
    url: &str,
    pool: Option<&str>,
    rate_limit: i32,
    window: Duration,
) {
    db.add_robot_at(name, url, pool, rate_limit as u32, window)
        .await;
}

/// Add a robot at the stand-in with its key `key`.
pub async fn add_robot_key(db: &TestDatabase, fake: &Standin, name: &str, key: &str) {
    add_robot_url(
        db,
        name,
        &fake.url_for(key),
        None,
        20,
        Duration::from_secs(60),
    )
    .await;
}

/// One text value from a query (e.g. `SELECT string_agg(…)`); `None` for SQL NULL.
pub async fn text(db: &TestDatabase, sql: &str) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(sql)
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}\nin SQL: {sql}"))
}

/// Wait until `check` holds, or panic with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
