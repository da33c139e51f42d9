//! Wake-ups on PostgreSQL: one replica at a time listens to the outbox channel.
//!
//! PostgreSQL spends a transaction in every listening session of the database for every
//! NOTIFY (whatever channel the session listens to), so with every replica listening a
//! single-row INSERT cost one transaction per replica before any of them claimed, and each
//! then tried the same destination. Instead the replica whose listening connection holds
//! [`LISTENER_LOCK`] (a session advisory lock: it goes with the connection, so a replica
//! that dies hands it on) hears the outbox channel and claims what it names. The others
//! stand by without listening: every [`STANDBY_LOOK_EVERY`] each offers to take over and,
//! in the same statement, asks whether anything is pending; if so it looks at every robot
//! (and keeps looking while it finds work), so a backlog is shared by all replicas.

use super::CHANNEL;
use sqlx::postgres::{PgListener, PgNotification};
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;

/// The session advisory lock the listening replica holds on its listening connection:
/// "wecom-ls" in ASCII. Public so an operator (or a test) can see in `pg_locks` which
/// replica listens.
pub const LISTENER_LOCK: i64 = 0x7765_636f_6d2d_6c73;

/// How often a standing-by replica offers to take over listening and asks whether anything
/// is pending.
pub const STANDBY_LOOK_EVERY: Duration = Duration::from_secs(5);

/// A standing-by replica's look: take over listening if no one listens, and whether any
/// row is pending and due (the partial index of pending rows by `not_before`: cheap when
/// nothing is).
const STANDBY_LOOK: &str = r#"
SELECT pg_try_advisory_lock($1) AS took_over,
       EXISTS (SELECT 1 FROM wecom_outbox
               WHERE status = 'pending' AND not_before <= clock_timestamp()) AS pending
"#;

/// What a [`PgWakeups`] said.
#[derive(Debug)]
pub enum Heard {
    /// The outbox channel named a destination.
    Destination(String),
    /// Look at every robot: rows are pending while this replica stands by, it has just
    /// taken over listening, or notifications may have been lost.
    Everything,
}

/// This replica's wake-ups: listening, or standing by.
#[derive(Debug)]
pub struct PgWakeups {
    listener: PgListener,
    /// `None` while this replica listens; otherwise when it next offers to take over.
    standing_by: Option<Instant>,
}

impl PgWakeups {
    /// Stand by, and take over listening at once if no replica listens.
    pub(super) async fn connect(pool: &PgPool) -> sqlx::Result<PgWakeups> {
        let listener = PgListener::connect_with(pool).await?;
        let mut wakeups = PgWakeups {
            listener,
            standing_by: Some(Instant::now()),
        };
        wakeups.look().await?;
        Ok(wakeups)
    }

    /// The next thing heard. An error means the connection was lost (and with it the lock,
    /// if this replica listened): the caller makes new wake-ups.
    pub async fn next(&mut self) -> sqlx::Result<Heard> {
        loop {
            let Some(look_at) = self.standing_by else {
                let heard = self.listener.try_recv().await?;
                return heard.map(heard_from).ok_or_else(connection_lost);
            };
            tokio::time::sleep_until(look_at).await;
            if self.look().await? {
                return Ok(Heard::Everything);
            }
        }
    }

    /// Offer to take over listening; `true` if this replica took over or rows are pending.
    async fn look(&mut self) -> sqlx::Result<bool> {
        let (took_over, pending): (bool, bool) = sqlx::query_as(STANDBY_LOOK)
            .bind(LISTENER_LOCK)
            .fetch_one(&mut self.listener)
            .await?;
        if took_over {
            self.listener.listen(CHANNEL).await?;
            self.standing_by = None;
        } else {
            self.standing_by = Some(Instant::now() + STANDBY_LOOK_EVERY);
        }
        Ok(took_over || pending)
    }
}

fn heard_from(n: PgNotification) -> Heard {
    Heard::Destination(n.payload().to_owned())
}

/// The listening connection was replaced: the lock went with the old one.
fn connection_lost() -> sqlx::Error {
    sqlx::Error::Protocol("the listening connection was lost and remade".into())
}
