//! `enqueue-reminders`: run the daily fee-reminder function by hand and say what it did.

use crate::store::Store;
use chrono::NaiveDate;
use std::process::ExitCode;

/// Enqueue today's fee-renewal reminders now (the same SQL function the schedule runs).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wecom-outbox enqueue-reminders --date 2026-11-27\n\
Run it twice the same day: the second run enqueues nothing. `wecom-outbox preview` shows the messages first."
)]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// The local day to enqueue for (YYYY-MM-DD); default: today in the configured zone.
    #[arg(long)]
    date: Option<NaiveDate>,
}

/// Enqueue, then print the count per destination and anything that could not be enqueued.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.db.url()?).await?;
    store.check_schema().await?;
    let report = store
        .enqueue_reminders(args.date)
        .await
        .map_err(|e| anyhow::anyhow!("wecom_enqueue_fee_reminders failed: {e}"))?;
    let plan = &report.plan;
    crate::outln!(
        "enqueued {} reminder(s) for {} ({})",
        report.enqueued,
        plan.date,
        plan.zone
    )?;
    for (destination, n) in &report.per_destination {
        crate::outln!("  {destination}: {n}")?;
    }
    let already = plan.reminders.iter().filter(|r| r.already_enqueued).count();
    if already > 0 {
        crate::outln!("{already} already enqueued for this day (not enqueued again)")?;
    }
    for r in plan.reminders.iter().filter(|r| r.problem.is_some()) {
        crate::outln!(
            "not enqueued: enrollment {} ({}): {}",
            r.enrollment_key,
            r.student_name.as_deref().unwrap_or("?"),
            r.problem.as_deref().unwrap_or_default()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
