//! `preview`: the fee reminders a day would send, rendered as parents will read them and
//! with their destination, without enqueuing anything.

use crate::reminders::{self, DayPlan, DueReminder};
use crate::store::Store;
use chrono::NaiveDate;
use std::fmt::Write;
use std::process::ExitCode;

/// Show the fee reminders a day would send, as parents will read them; enqueues nothing.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wecom-outbox preview\n  wecom-outbox preview --date 2026-11-30"
)]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// The local day to preview (YYYY-MM-DD); default: today in the configured zone.
    #[arg(long)]
    date: Option<NaiveDate>,
}

/// Print the day's plan.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::connect(args.db.url()?).await?;
    store.check_schema().await?;
    let plan = store
        .reminder_plan(args.date)
        .await
        .map_err(|e| anyhow::anyhow!("wecom_fee_reminders_due failed: {e}"))?;
    crate::out!("{}", render(&plan))?;
    Ok(ExitCode::SUCCESS)
}

/// The plan as text: each message that would go out (by destination, most urgent first), then
/// what cannot go and why, then a summary.
pub fn render(plan: &DayPlan) -> String {
    let mut out = format!("Fee reminders for {} ({})\n", plan.date, plan.zone);
    let mut sending: Vec<&DueReminder> = plan
        .reminders
        .iter()
        .filter(|r| r.would_enqueue())
        .collect();
    sending.sort_by_key(|r| {
        (
            r.destination.clone(),
            r.days_until_renewal,
            r.enrollment_id,
            r.enrollment_key.clone(),
        )
    });
    for (i, r) in sending.iter().enumerate() {
        let _ = write!(out, "\n── {}/{} ", i + 1, sending.len());
        out.push_str(&message(r));
    }
    let already = plan.reminders.iter().filter(|r| r.already_enqueued).count();
    let blocked: Vec<&DueReminder> = plan
        .reminders
        .iter()
        .filter(|r| r.problem.is_some())
        .collect();
    out.push_str(&problems(&blocked));
    let _ = writeln!(
        out,
        "\n{} would be enqueued{}; {} already enqueued for this day; {} not sendable.",
        sending.len(),
        per_destination(&sending),
        already,
        blocked.len()
    );
    out
}

/// Reminders that cannot go, grouped by the reason (often one: no robot yet).
fn problems(blocked: &[&DueReminder]) -> String {
    let mut by_problem = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for r in blocked {
        let who = format!(
            "{} ({})",
            r.enrollment_key,
            r.student_name.as_deref().unwrap_or("?")
        );
        by_problem
            .entry(r.problem.as_deref().unwrap_or_default())
            .or_default()
            .push(who);
    }
    let mut out = String::new();
    for (problem, who) in by_problem {
        let _ = write!(
            out,
            "\nNot sendable: {problem}\n  enrollments: {}\n",
            who.join(", ")
        );
    }
    out
}

fn message(r: &DueReminder) -> String {
    let kind = r
        .payload
        .as_ref()
        .and_then(|p| p["msgtype"].as_str())
        .unwrap_or("?");
    let mut text = format!(
        "→ {} · {} · enrollment {} · {} day(s) left{} ──\n",
        r.destination.as_deref().unwrap_or("-"),
        kind,
        r.enrollment_key,
        r.days_until_renewal,
        if r.urgent { " · urgent" } else { "" }
    );
    if let Some(payload) = &r.payload {
        text.push_str(&reminders::as_parent_reads(payload));
        text.push('\n');
    }
    text
}

fn per_destination(sending: &[&DueReminder]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for r in sending {
        *counts
            .entry(r.destination.as_deref().unwrap_or("-"))
            .or_default() += 1;
    }
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(d, n)| format!("{d}: {n}")).collect();
    format!(" ({})", parts.join(", "))
}
