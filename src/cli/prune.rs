//! `prune`: delete finished messages (and their log rows) older than a cutoff, a small batch
//! per transaction, so it is safe while workers run. The loop lives in the library
//! (`worker::prune`), shared with the workers' daily prune.

use crate::store::{Pruned, Store};
use crate::worker::prune::prune_before;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The shortest `--older-than`: anything younger is still being looked at (a failure to
/// retry, today's delivery), so a shorter cutoff is taken for a typo.
pub const MIN_AGE: Duration = Duration::from_secs(24 * 3600);
/// Progress lines at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Delete sent, failed, cancelled and expired messages that finished before a cutoff,
/// with their wecom_message_log rows. Pending and sending rows are never touched.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
wecom-outbox prune --older-than 90d --dry-run   # how many would go\n  \
wecom-outbox prune --older-than 90d             # delete them, 1000 rows per transaction\n\
Safe while workers run: each batch is its own short transaction and skips rows in use.\n\
Ctrl-C stops between batches (what was deleted stays deleted). A message's age is counted\n\
from when it finished (finished_at). The workers can do this daily: set prune_after_days\n\
in wecom_settings (e.g. UPDATE wecom_settings SET value = '90' WHERE name = 'prune_after_days').")]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// Delete what finished longer ago than this, e.g. 90d, 12w (at least 1d).
    #[arg(long, value_name = "AGE", value_parser = super::parse_duration)]
    older_than: Duration,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rows per transaction (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    batch_size: i64,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.older_than < MIN_AGE {
        anyhow::bail!(
            "--older-than {} is less than a day: rows that recent may still be wanted (a failure \
             to retry, today's record); give 1d or more, e.g. --older-than 90d",
            humantime::format_duration(args.older_than)
        );
    }
    let store = Store::connect(args.db.url()?).await?;
    store.check_schema().await?;
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(args.older_than)?;
    if args.dry_run {
        let p = store.prune_count(cutoff).await?;
        crate::outln!(
            "dry run: would delete {} message(s) and {} log row(s) finished before {cutoff}; nothing deleted",
            p.messages,
            p.log_rows
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let stop = CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(stop.clone()));
    let mut last = Instant::now();
    let mut said: Result<(), crate::telemetry::OutputError> = Ok(());
    let total = prune_before(
        &store,
        cutoff,
        args.batch_size,
        Duration::ZERO,
        &stop,
        |p| {
            if said.is_ok() && last.elapsed() >= PROGRESS_EVERY {
                said = progress(p);
                last = Instant::now();
            }
        },
    )
    .await?;
    said?;
    crate::outln!(
        "deleted {} message(s) and {} log row(s) finished before {cutoff}{}",
        total.messages,
        total.log_rows,
        if stop.is_cancelled() {
            " (stopped early)"
        } else {
            ""
        }
    )?;
    Ok(ExitCode::SUCCESS)
}

fn progress(p: Pruned) -> Result<(), crate::telemetry::OutputError> {
    crate::outln!(
        "… {} message(s), {} log row(s) deleted so far",
        p.messages,
        p.log_rows
    )
}
