//! `migrate`: create or adopt the tables; safe to run twice.

use crate::store::Store;
use std::process::ExitCode;

/// Create the outbox tables, or adopt the school's Phase-1 tables keeping every row. Tables
/// with a column the worker could not use are refused first, naming each one, changing nothing.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  DATABASE_URL=postgres://dba@db/school wecom-outbox migrate")]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.db.url()?).await?;
    store.migrate().await?;
    crate::outln!("migrations applied; the database is ready for `wecom-outbox run`")?;
    Ok(ExitCode::SUCCESS)
}
