//! MySQL has no LISTEN/NOTIFY: the worker learns that something changed by a cheap indexed
//! poll instead. It asks every 100 ms while things change, doubling the pause up to 2 s
//! while nothing does; the worker's own timer still wakes it for robots coming due, so the
//! poll only has to notice new rows (and rows requeued or released), at most 2 s late.

use sqlx::MySqlPool;
use std::time::Duration;

/// The shortest pause between two polls, right after a change.
pub const FASTEST: Duration = Duration::from_millis(100);
/// The longest pause, when nothing has changed for a while.
pub const SLOWEST: Duration = Duration::from_secs(2);

/// What "something changed" is measured by: the newest row's `seq` (the unique index gives
/// it at once) and how many rows are pending (a range of the claim index).
const FINGERPRINT: &str = r#"
SELECT CAST(COALESCE((SELECT MAX(seq) FROM wecom_outbox), 0) AS SIGNED),
       (SELECT COUNT(*) FROM wecom_outbox WHERE status = 'pending')
"#;

/// The poll: a source of "something may have changed" signals, like PostgreSQL's listener.
#[derive(Debug)]
pub struct Poll {
    pool: MySqlPool,
    seen: Option<(i64, i64)>,
    pause: Duration,
}

impl Poll {
    pub(super) fn new(pool: MySqlPool) -> Poll {
        Poll {
            pool,
            seen: None,
            pause: FASTEST,
        }
    }

    /// Wait until the outbox looks different from the last look; an error means the
    /// database is away (the worker makes a new poll once it is back).
    pub async fn next(&mut self) -> sqlx::Result<()> {
        if self.seen.is_none() {
            self.seen = Some(self.look().await?);
        }
        loop {
            tokio::time::sleep(self.pause).await;
            let now = self.look().await?;
            if Some(now) != self.seen {
                self.seen = Some(now);
                self.pause = FASTEST;
                return Ok(());
            }
            self.pause = (self.pause * 2).min(SLOWEST);
        }
    }

    async fn look(&self) -> sqlx::Result<(i64, i64)> {
        sqlx::query_as(FINGERPRINT).fetch_one(&self.pool).await
    }
}
