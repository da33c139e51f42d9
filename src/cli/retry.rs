//! `retry`: requeue `failed` messages, chosen by id, destination or when they failed, the way a
//! person requeues one by hand (attempts start afresh). Expired rows are not retried: they
//! expired on purpose (a stale reminder must not reach parents).

use crate::store::{FailedFilter, FailedRow, Store};
use crate::wecom::redact::redact;
use chrono::{DateTime, Utc};
use std::process::ExitCode;
use uuid::Uuid;

/// Requeue failed messages (status failed -> pending, attempts afresh).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
wecom-outbox retry --destination parent_group --failed-since 2h --dry-run\n  \
wecom-outbox retry --id 6f1c…-… --id 0b2e…-…\n  \
wecom-outbox retry --failed-since 2026-05-01T00:00:00+08:00 --failed-before 2026-05-02T00:00:00+08:00\n\
At least one selector is required; all given must match. Only failed rows are requeued: an\n\
--id that is pending, sent, cancelled or expired is reported and left alone (expired rows\n\
expired on purpose; requeue one by hand with UPDATE wecom_outbox SET status = 'pending').\n\
Exit status 1 when an --id given could not be requeued (the others still are).")]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// This message (repeatable).
    #[arg(long = "id", value_name = "UUID")]
    ids: Vec<Uuid>,
    /// Messages of this destination (robot or pool name).
    #[arg(long, value_name = "NAME")]
    destination: Option<String>,
    /// Messages that failed at or after TIME: RFC 3339 (2026-05-01T09:00:00+08:00) or an age (2h, 3d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    failed_since: Option<DateTime<Utc>>,
    /// Messages that failed before TIME: RFC 3339 or an age (2h = two hours ago).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    failed_before: Option<DateTime<Utc>>,
    /// List what would be requeued; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// RFC 3339, or a duration meaning that long ago.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    match humantime::parse_duration(s.trim()) {
        Ok(d) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
            .ok_or_else(|| format!("{s:?} is too long ago")),
        Err(_) => Err(format!(
            "{s:?} is neither an RFC 3339 time (2026-05-01T09:00:00+08:00) nor an age like 2h or 3d"
        )),
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = filter(&args)?;
    let store = Store::connect(args.db.url()?).await?;
    store.check_schema().await?;
    let rows = if args.dry_run {
        store.failed_rows(&filter).await?
    } else {
        store.requeue_failed(&filter).await?
    };
    for row in &rows {
        crate::outln!("{}", line(row))?;
    }
    let missed = report_ids(&store, &args.ids, &rows).await?;
    if args.dry_run {
        crate::outln!(
            "dry run: would requeue {} failed message(s); nothing changed",
            rows.len()
        )?;
    } else {
        crate::outln!("requeued {} failed message(s)", rows.len())?;
    }
    Ok(if missed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The selectors, or an error when none is given or the window is empty.
fn filter(args: &Args) -> anyhow::Result<FailedFilter> {
    if args.ids.is_empty()
        && args.destination.is_none()
        && args.failed_since.is_none()
        && args.failed_before.is_none()
    {
        anyhow::bail!(
            "say which failed messages to retry: --id UUID, --destination NAME, --failed-since TIME \
             or --failed-before TIME (all failed messages: --failed-before 0s)"
        );
    }
    if let (Some(since), Some(before)) = (args.failed_since, args.failed_before) {
        if since >= before {
            anyhow::bail!("--failed-since {since} is not before --failed-before {before}: no message can match");
        }
    }
    Ok(FailedFilter {
        ids: args.ids.clone(),
        destination: args.destination.clone(),
        since: args.failed_since,
        before: args.failed_before,
    })
}

/// One row: id, destination, attempts, when it failed, the error (keys hidden).
fn line(row: &FailedRow) -> String {
    let at = row.failed_at.map_or("?".into(), |t| t.to_rfc3339());
    let error = row.last_error.as_deref().map(redact).unwrap_or_default();
    format!(
        "{}  {}  attempts {}  failed at {}  {}",
        row.id, row.destination, row.attempts, at, error
    )
}

/// Say why each given id that was not requeued was not; how many.
async fn report_ids(store: &Store, ids: &[Uuid], done: &[FailedRow]) -> anyhow::Result<usize> {
    let missing: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| !done.iter().any(|r| r.id == *id))
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let known = store.statuses_of(&missing).await?;
    for id in &missing {
        match known.iter().find(|(k, _)| k == id) {
            None => crate::outln!("{id}: no such message")?,
            Some((_, status)) if status == "failed" => {
                crate::outln!("{id}: failed, but outside the other selectors: not requeued")?
            }
            Some((_, status)) => crate::outln!(
                "{id}: not requeued: it is {status} (only failed messages are retried)"
            )?,
        }
    }
    Ok(missing.len())
}
