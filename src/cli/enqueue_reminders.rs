//! `enqueue-reminders`: run the daily fee-reminder function by hand.

use crate::store::Store;
use chrono::NaiveDate;
use std::process::ExitCode;

/// Enqueue today's fee-renewal reminders now (the same SQL function the schedule runs).
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  wecom-outbox enqueue-reminders --date 2026-11-27")]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// The local day to enqueue for (YYYY-MM-DD); default: today in the configured zone.
    #[arg(long)]
    date: Option<NaiveDate>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.db.url()?).await?;
    store.check_schema().await?;
    let n: i32 = sqlx::query_scalar("SELECT wecom_enqueue_fee_reminders($1)")
        .bind(args.date)
        .fetch_one(store.pool())
        .await
        .map_err(|e| anyhow::anyhow!("wecom_enqueue_fee_reminders failed: {e}"))?;
    println!("enqueued {n} reminder(s)");
    Ok(ExitCode::SUCCESS)
}
