//! `demo`: the whole product on a throwaway database, in about ten seconds.

use crate::demo::{DemoOptions, Ending};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Show the whole product working on a throwaway database, in about ten seconds.
///
/// A private PostgreSQL, an example school, its fee reminders drained by two replicas through
/// a pool of three robots at WeCom's limit, a robot in quiet hours, and a summary.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Without DATABASE_URL the demo starts its own PostgreSQL from this machine's server binaries
(initdb, pg_ctl; as root it runs them as user postgres) in a temporary directory, and removes
it at the end or on Ctrl-C. With DATABASE_URL it creates a new database on that server (the
user needs CREATEDB) and drops it at the end: your own database is not read or written. With a
mysql:// or mariadb:// DATABASE_URL it creates a utf8mb4 database wecom_outbox_demo_… on that
server (the user needs CREATE and DROP) and drops it at the end.
Nothing reaches WeCom: the robots point at a fake WeCom inside the demo.

Examples:
  wecom-outbox demo
  DATABASE_URL=postgres://me@localhost/scratch wecom-outbox demo
  DATABASE_URL=mysql://root@127.0.0.1:3306/scratch wecom-outbox demo
  wecom-outbox demo --pg-bin-dir /usr/lib/postgresql/16/bin --window 5s")]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// Directory with initdb and pg_ctl [default: the newest /usr/lib/postgresql/*/bin, else PATH]
    #[arg(long, value_name = "DIR")]
    pg_bin_dir: Option<PathBuf>,
    /// The robots' rate window (WeCom's is 60s; the limit stays WeCom's 20 per robot).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = super::parse_duration)]
    window: Duration,
    /// Plain-text rows inserted as AppSheet would, on top of the reminders, so the pool has
    /// several windows of work.
    #[arg(long, value_name = "N", default_value_t = 100)]
    extra_messages: u32,
}

/// Run the demo; exit 130 (like a shell) when Ctrl-C or SIGTERM ended it early.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = DemoOptions {
        database_url: args.db.url().ok().map(str::to_owned),
        pg_bin_dir: args.pg_bin_dir,
        window: args.window,
        extra_messages: args.extra_messages,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(stop.clone()));
    match crate::demo::run(options, stop).await? {
        Ending::Finished => Ok(ExitCode::SUCCESS),
        Ending::Interrupted => {
            eprintln!("demo interrupted; everything it created was removed");
            Ok(ExitCode::from(130))
        }
    }
}
