//! The command line: one file per subcommand, each thin; the logic lives in the library.
//! Commands print with `outln!`/`out!` (not `println!`), so a reader that goes away early
//! (`wecom-outbox demo | head -3`) ends the command quietly, with its clean-up, instead of
//! a panic.

#[cfg(feature = "fake-wecom")]
mod demo;
mod enqueue_reminders;
#[cfg(feature = "fake-wecom")]
mod fake_wecom;
mod migrate;
mod preview;
mod prune;
mod retry;
mod run;
mod send_test;
mod status;

use crate::telemetry::{LogFormat, OutputError};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// Deliver WeCom group-robot messages from a database outbox, within WeCom's limits.
#[derive(Debug, Parser)]
#[command(name = "wecom-outbox", version, propagate_version = true)]
#[cfg_attr(
    feature = "fake-wecom",
    command(
        after_help = "New here? `wecom-outbox demo` shows it all working in about ten seconds.\n\
Then `wecom-outbox migrate`, and `wecom-outbox run` (one or more replicas).\n\
Messages are rows INSERTed into wecom_outbox; see README.md and docs/guide.md.\n\
Each command explains itself: wecom-outbox help COMMAND."
    )
)]
#[cfg_attr(
    not(feature = "fake-wecom"),
    command(
        after_help = "Start with `wecom-outbox migrate`, then `wecom-outbox run` (one or more replicas).\n\
Messages are rows INSERTed into wecom_outbox; see README.md and docs/guide.md.\n\
Each command explains itself: wecom-outbox help COMMAND."
    )
)]
pub struct Cli {
    /// Log lines on stderr as text for people, or as one JSON object a line for log shippers;
    /// robot keys are hidden in both.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        env = "WECOM_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Where the database is; every subcommand that touches it takes this.
#[derive(Debug, clap::Args)]
pub struct Database {
    /// postgres://user@host:5432/school, or mysql://user@host:3306/school (MySQL 8 / MariaDB)
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    url: Option<String>,
}

impl Database {
    /// The URL, or an error that says how to give one (clap's own message names only the flag).
    pub fn url(&self) -> anyhow::Result<&str> {
        match self.url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => Ok(url),
            _ => anyhow::bail!(
                "DATABASE_URL is not set: export DATABASE_URL=postgres://user@host:5432/school \
                 or mysql://user@host:3306/school (or pass --database-url)"
            ),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    Migrate(migrate::Args),
    Run(run::Args),
    EnqueueReminders(enqueue_reminders::Args),
    Preview(preview::Args),
    SendTest(send_test::Args),
    Status(status::Args),
    Prune(prune::Args),
    Retry(retry::Args),
    #[cfg(feature = "fake-wecom")]
    FakeWecom(fake_wecom::Args),
    #[cfg(feature = "fake-wecom")]
    Demo(demo::Args),
}

/// Parse the command line, run the subcommand, and turn its error into a clear message.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    #[cfg(feature = "fake-wecom")]
    if matches!(cli.command, Command::Demo(_)) {
        crate::demo::prefer_quiet_logs();
    }
    crate::telemetry::init(cli.log_format);
    let log_format = cli.log_format;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let text = format!("cannot start the async runtime: {e}");
            crate::telemetry::write_error(log_format, &text);
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate(args) => migrate::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::EnqueueReminders(args) => enqueue_reminders::run(args).await,
            Command::Preview(args) => preview::run(args).await,
            Command::SendTest(args) => send_test::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Prune(args) => prune::run(args).await,
            Command::Retry(args) => retry::run(args).await,
            #[cfg(feature = "fake-wecom")]
            Command::FakeWecom(args) => fake_wecom::run(args).await,
            #[cfg(feature = "fake-wecom")]
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e)
            if e.chain()
                .any(|c| matches!(c.downcast_ref(), Some(OutputError::StdoutClosed))) =>
        {
            ExitCode::from(STDOUT_CLOSED)
        }
        Err(e) => {
            crate::telemetry::write_error(log_format, &describe_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// Prints clap's help, version or usage error as `Error::exit` would, but a closed stdout
/// (`wecom-outbox --help | head -1`) ends like every other command's.
fn clap_exit(e: &clap::Error) -> ExitCode {
    match e.print() {
        Err(io) if io.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(STDOUT_CLOSED),
        _ => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)),
    }
}

/// The exit status of a command whose stdout was closed before it finished (`| head`): what a
/// shell reports for a program ended by SIGPIPE (128 + 13), said without a word, as `cat` does.
pub const STDOUT_CLOSED: u8 = 141;

/// The error and its causes on one line. sqlx's errors repeat their source in their own
/// text, so a cause already said is not said again.
fn describe_error(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        let said = said.trim();
        if said.is_empty() || text.contains(said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(said);
    }
    let text = text.replace(['\n', '\r'], " ");
    // sqlx nests some errors in themselves ("error with configuration: error with
    // configuration: …"): say each part once.
    let mut parts: Vec<&str> = text.split(": ").collect();
    parts.dedup();
    parts.join(": ")
}

/// Parse `200ms`, `5s`, `1m30s`, … for duration flags.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 200ms, 5s or 2m: {e}"))
}

/// Cancel `token` on SIGTERM or SIGINT (Ctrl-C).
pub async fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("signal received: stopping");
    token.cancel();
}
