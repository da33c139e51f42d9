//! The store's behaviour, written once and run against every backend (as River's driver tests
//! run one suite against every driver). Each case talks to the database only through
//! [`Store`]; the fixture below is the one place that knows a backend's SQL for setting up.
//! A new backend is one more `every_case!` line.

use chrono::Utc;
use std::time::Duration;
use wecom_outbox::rules::decide::{decide, Decision, RobotSnapshot};
use wecom_outbox::store::{
    ClaimResult, Claimed, ClaimedRobot, FailedFilter, Finish, SentRecord, Store,
    FINISHED_WINDOW_DAYS,
};
use wecom_outbox::testing::{MySqlTestDatabase, TestDatabase};

/// A fresh, migrated database of one backend, with the few setup statements the cases need.
enum Fixture {
    Postgres(TestDatabase),
    MySql(MySqlTestDatabase),
}

/// A robot URL nobody is called at: the store never calls WeCom.
const URL: &str = "http://127.0.0.1:9/cgi-bin/webhook/send?key=conformance";

impl Fixture {
    async fn postgres() -> Option<Fixture> {
        Some(Fixture::Postgres(TestDatabase::migrated().await))
    }

    /// `None` (the case SKIPPED) when `MYSQL_DATABASE_URL` is unset.
    async fn mysql() -> Option<Fixture> {
        MySqlTestDatabase::migrated("store_conformance::mysql")
            .await
            .map(Fixture::MySql)
    }

    fn store(&self) -> &Store {
        match self {
            Fixture::Postgres(db) => &db.store,
            Fixture::MySql(db) => &db.store,
        }
    }

    /// A robot allowed `limit` sends per `window`; returns its id.
    async fn robot(&self, name: &str, pool: Option<&str>, limit: u32, window: Duration) -> i32 {
        match self {
            Fixture::Postgres(db) => {
                db.add_robot_at(name, URL, pool, limit, window).await;
                self.count(&format!(
                    "SELECT id::bigint FROM wecom_webhooks WHERE webhook_name = '{name}'"
                ))
                .await as i32
            }
            Fixture::MySql(db) => db.add_robot_at(name, URL, pool, limit, window).await,
        }
    }

    /// Row `content` may not go for an hour.
    async fn hold_back(&self, content: &str) {
        self.exec(&match self {
            Fixture::Postgres(_) => format!(
                "UPDATE wecom_outbox SET not_before = now() + interval '1 hour' WHERE content = '{content}'"
            ),
            Fixture::MySql(_) => format!(
                "UPDATE wecom_outbox SET not_before = UTC_TIMESTAMP(6) + INTERVAL 1 HOUR WHERE content = '{content}'"
            ),
        })
        .await;
    }

    /// Row `content` expires now.
    async fn expire(&self, content: &str) {
        self.exec(&match self {
            Fixture::Postgres(_) => {
                format!("UPDATE wecom_outbox SET expires_at = now() WHERE content = '{content}'")
            }
            Fixture::MySql(_) => format!(
                "UPDATE wecom_outbox SET expires_at = UTC_TIMESTAMP(6) WHERE content = '{content}'"
            ),
        })
        .await;
    }

    /// Seconds from the database's now until the (only) row's `not_before`.
    async fn seconds_until_not_before(&self) -> i64 {
        self.count(match self {
            Fixture::Postgres(_) => {
                "SELECT extract(epoch FROM not_before - now())::bigint FROM wecom_outbox"
            }
            Fixture::MySql(_) => {
                "SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), not_before) FROM wecom_outbox"
            }
        })
        .await
    }

    /// `n` text messages `"{prefix} {i}"` for `destination`, written in one statement.
    async fn enqueue(&self, destination: &str, prefix: &str, n: i64) {
        match self {
            Fixture::Postgres(db) => db.enqueue(destination, prefix, n).await,
            Fixture::MySql(db) => db.enqueue(destination, prefix, n).await,
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Fixture::Postgres(db) => db.exec(sql).await,
            Fixture::MySql(db) => db.exec(sql).await,
        }
    }

    /// One number; the cases' SQL is written in what both backends read alike.
    async fn count(&self, sql: &str) -> i64 {
        match self {
            Fixture::Postgres(db) => db.count(sql).await,
            Fixture::MySql(db) => db.count(sql).await,
        }
    }

    /// Rows `ids` finished `days` days earlier than they did. finished_at is the database's to
    /// set (a trigger keeps it): the test database drops that guard first.
    async fn age_finished(&self, ids: &[uuid::Uuid], days: i64) {
        let list = ids
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            Fixture::Postgres(_) => {
                self.exec("ALTER TABLE wecom_outbox DISABLE TRIGGER wecom_outbox_finished_at")
                    .await;
                self.exec(&format!(
                    "UPDATE wecom_outbox SET finished_at = finished_at - interval '{days} days' WHERE id IN ({list})"
                ))
                .await;
                self.exec("ALTER TABLE wecom_outbox ENABLE TRIGGER wecom_outbox_finished_at")
                    .await;
            }
            Fixture::MySql(_) => {
                self.exec("DROP TRIGGER wecom_outbox_finished_at").await;
                self.exec(&format!(
                    "UPDATE wecom_outbox SET finished_at = finished_at - INTERVAL {days} DAY WHERE id IN ({list})"
                ))
                .await;
            }
        }
    }

    async fn status_count(&self, status: &str) -> i64 {
        match self {
            Fixture::Postgres(db) => db.status_count(status).await,
            Fixture::MySql(db) => db.status_count(status).await,
        }
    }
}

/// Another replica that has the housekeeping turn; dropping it is that replica dying (its
/// connection goes, and the lock with it).
#[allow(dead_code)] // held for its connection only
enum Housekeeper {
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
}

impl Fixture {
    /// Take the housekeeping turn on a connection of its own, as another replica would.
    async fn housekeeper(&self) -> Housekeeper {
        use sqlx::Connection;
        match self {
            Fixture::Postgres(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(wecom_outbox::store::postgres::HOUSEKEEPING_LOCK)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Housekeeper::Postgres(conn)
            }
            Fixture::MySql(db) => {
                let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
                // The lock src/store/mysql/finish.rs (HOUSEKEEPER) takes.
                let got: Option<i64> = sqlx::query_scalar(
                    "SELECT GET_LOCK(CONCAT('wecom_outbox housekeeping ', DATABASE()), 0)",
                )
                .fetch_one(&mut conn)
                .await
                .unwrap();
                assert_eq!(got, Some(1));
                Housekeeper::MySql(conn)
            }
        }
    }
}

/// The worker's planner without its allowed-hosts check.
fn plan(
    snapshot: &RobotSnapshot,
    _url: &wecom_outbox::wecom::robot_url::RobotUrl,
    now: chrono::DateTime<Utc>,
) -> Decision {
    decide(snapshot, now, 20)
}

async fn claim(f: &Fixture, robot_id: i32, lease: Duration) -> ClaimResult {
    f.store()
        .claim(robot_id, "conformance", lease, plan)
        .await
        .expect("claim")
}

async fn claimed(f: &Fixture, robot_id: i32) -> (ClaimedRobot, Vec<Claimed>) {
    match claim(f, robot_id, Duration::from_secs(60)).await {
        ClaimResult::Claimed(robot, rows) => (robot, rows),
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn text(row: &Claimed) -> String {
    row.payload["text"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

mod cases {
    use super::*;

    pub async fn prune_removes_only_finished_rows_older_than_the_cutoff(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 6).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        let failed = Finish::Failed {
            errcode: Some(40058),
            error: "bad".into(),
        };
        let store = f.store();
        assert!(store.finish(&robot, &rows[0], &Finish::Sent).await.unwrap());
        assert!(store.finish(&robot, &rows[1], &failed).await.unwrap());
        assert!(store.finish(&robot, &rows[4], &Finish::Sent).await.unwrap());
        store.release(&rows[3..4]).await.unwrap();
        store.release(&rows[5..6]).await.unwrap();
        f.exec(&format!(
            "UPDATE wecom_outbox SET status = 'cancelled' WHERE id = '{}'",
            rows[5].id
        ))
        .await;
        // rows 0, 1 and 5 finished 10 days ago; 4 just now; 2 is sending; 3 is pending.
        f.age_finished(&[rows[0].id, rows[1].id, rows[5].id], 10)
            .await;
        let cutoff = Utc::now() - chrono::Duration::days(5);

        let would = store.prune_count(cutoff).await.unwrap();
        assert_eq!((would.messages, would.log_rows), (3, 2));
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_outbox").await,
            6,
            "a count deletes nothing"
        );

        let first = store.prune_batch(cutoff, 2).await.unwrap();
        assert_eq!(first.messages, 2, "at most a batch");
        let second = store.prune_batch(cutoff, 2).await.unwrap();
        assert_eq!(second.messages, 1);
        assert_eq!(first.log_rows + second.log_rows, 2);
        assert_eq!(store.prune_batch(cutoff, 2).await.unwrap().messages, 0);

        assert_eq!(f.status_count("sending").await, 1);
        assert_eq!(f.status_count("pending").await, 1);
        assert_eq!(f.status_count("sent").await, 1, "the recent one stays");
        assert_eq!(
            f.status_count("failed").await + f.status_count("cancelled").await,
            0
        );
        assert_eq!(
            f.count(&format!(
                "SELECT count(*) FROM wecom_message_log WHERE outbox_id = '{}'",
                rows[4].id
            ))
            .await,
            1,
            "the recent row keeps its log row"
        );
        assert_eq!(f.count("SELECT count(*) FROM wecom_message_log").await, 1);
    }

    pub async fn retry_requeues_only_failed_rows_and_a_requeued_row_is_delivered_once(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 3).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        let failed = Finish::Failed {
            errcode: Some(-1),
            error: "gave up".into(),
        };
        let store = f.store();
        assert!(store.finish(&robot, &rows[0], &failed).await.unwrap());
        assert!(store.finish(&robot, &rows[1], &Finish::Sent).await.unwrap());
        assert!(store.finish(&robot, &rows[2], &failed).await.unwrap());
        let unknown = uuid::Uuid::new_v4();
        let filter = FailedFilter {
            ids: vec![rows[0].id, rows[1].id, unknown],
            ..FailedFilter::default()
        };

        let listed = store.failed_rows(&filter).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, rows[0].id);
        assert_eq!(listed[0].last_error.as_deref(), Some("gave up"));
        assert!(listed[0].failed_at.is_some());
        assert_eq!(f.status_count("failed").await, 2, "listing changes nothing");

        let requeued = store.requeue_failed(&filter).await.unwrap();
        assert_eq!(
            requeued.iter().map(|r| r.id).collect::<Vec<_>>(),
            [rows[0].id]
        );
        let statuses = store.statuses_of(&[rows[1].id, unknown]).await.unwrap();
        assert_eq!(statuses, [(rows[1].id, "sent".to_string())]);
        assert_eq!(f.status_count("pending").await, 1);
        assert_eq!(
            f.status_count("failed").await,
            1,
            "the other failed row stays"
        );

        let (robot, again) = claimed(&f, robot_id).await;
        assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), [rows[0].id]);
        assert_eq!(again[0].attempts, 1, "a requeue starts the attempts afresh");
        assert!(store
            .finish(&robot, &again[0], &Finish::Sent)
            .await
            .unwrap());
        assert_eq!(f.status_count("sent").await, 2);
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent'")
                .await,
            2
        );
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_message_log").await,
            3,
            "one log row each"
        );
        assert!(store
            .requeue_failed(&FailedFilter {
                destination: Some("elsewhere".into()),
                ..FailedFilter::default()
            })
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn the_daily_prune_runs_once_a_day_and_only_when_set(f: Fixture) {
        use tokio_util::sync::CancellationToken;
        use wecom_outbox::worker::prune::run_daily_once;
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 2).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        let store = f.store();
        assert!(store.finish(&robot, &rows[0], &Finish::Sent).await.unwrap());
        assert!(store.finish(&robot, &rows[1], &Finish::Sent).await.unwrap());
        f.age_finished(&[rows[0].id], 3).await;
        let stop = CancellationToken::new();

        assert_eq!(
            run_daily_once(store, "r1", &stop).await.unwrap(),
            None,
            "off when empty"
        );
        f.exec("UPDATE wecom_settings SET value = '2' WHERE name = 'prune_after_days'")
            .await;
        let pruned = run_daily_once(store, "r1", &stop)
            .await
            .unwrap()
            .expect("ran");
        assert_eq!((pruned.messages, pruned.log_rows), (1, 1));
        assert_eq!(
            run_daily_once(store, "r2", &stop).await.unwrap(),
            None,
            "once a day"
        );
        assert_eq!(f.status_count("sent").await, 1, "the recent row stays");
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_daily_runs WHERE job = 'prune' AND runner = 'r1' AND enqueued = 1")
                .await,
            1
        );
    }

    pub async fn a_claim_takes_no_more_than_the_rate_limit_allows(f: Fixture) {
        let robot = f
            .robot("parent_group", None, 3, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 5).await;
        let (_, rows) = claimed(&f, robot).await;
        assert_eq!(rows.len(), 3);
        match claim(&f, robot, Duration::from_secs(60)).await {
            ClaimResult::Waiting(until) => {
                assert!(until > Utc::now() + chrono::Duration::seconds(50))
            }
            other => panic!("the budget is spent, expected Waiting, got {other:?}"),
        }
        assert_eq!(f.status_count("sending").await, 3);
        assert_eq!(f.status_count("pending").await, 2);
    }

    pub async fn rows_go_by_priority_then_in_the_order_they_were_written(f: Fixture) {
        let robot = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "normal", 3).await;
        f.exec("INSERT INTO wecom_outbox (webhook_name, content, priority) VALUES ('parent_group', 'urgent', 5)")
            .await;
        let (_, rows) = claimed(&f, robot).await;
        let order: Vec<String> = rows.iter().map(text).collect();
        assert_eq!(order, ["urgent", "normal 1", "normal 2", "normal 3"]);
    }

    pub async fn a_robot_in_a_zone_of_its_own_is_claimed(f: Fixture) {
        let robot = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.exec("UPDATE wecom_webhooks SET timezone = 'Asia/Hong_Kong'")
            .await;
        f.enqueue("parent_group", "m", 2).await;
        let (_, rows) = claimed(&f, robot).await;
        assert_eq!(rows.len(), 2);
    }

    pub async fn robots_of_one_pool_never_claim_the_same_row(f: Fixture) {
        let a = f
            .robot("a", Some("pool"), 20, Duration::from_secs(60))
            .await;
        let b = f
            .robot("b", Some("pool"), 20, Duration::from_secs(60))
            .await;
        f.enqueue("pool", "m", 30).await;
        let (first, second) = tokio::join!(claimed(&f, a), claimed(&f, b));
        let mut ids: Vec<_> = first.1.iter().chain(&second.1).map(|r| r.id).collect();
        assert_eq!(ids.len(), 30);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 30, "a row was claimed twice");
    }

    pub async fn a_sent_row_gets_its_status_and_exactly_one_log_row(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 2).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        assert!(f
            .store()
            .finish(&robot, &rows[0], &Finish::Sent)
            .await
            .unwrap());
        let together = [SentRecord::of(&robot, &rows[1])];
        assert_eq!(
            f.store().record_sent(&together).await.unwrap(),
            [rows[1].id]
        );
        assert_eq!(f.status_count("sent").await, 2);
        assert_eq!(
            f.count(
                "SELECT count(*) FROM wecom_message_log WHERE send_status = 'sent' AND errcode = 0"
            )
            .await,
            2
        );
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_webhooks WHERE total_messages_sent = 2")
                .await,
            1,
            "the Phase-1 counter moves"
        );
    }

    pub async fn a_failed_row_gets_its_status_and_one_log_row_with_the_error(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 1).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        let failed = Finish::Failed {
            errcode: Some(40058),
            error: "invalid parameter".into(),
        };
        assert!(f.store().finish(&robot, &rows[0], &failed).await.unwrap());
        assert_eq!(f.status_count("failed").await, 1);
        assert_eq!(
            f.count(
                "SELECT count(*) FROM wecom_message_log
                 WHERE send_status = 'failed' AND errcode = 40058 AND error_message = 'invalid parameter'"
            )
            .await,
            1
        );
    }

    pub async fn a_retry_uses_the_attempt_and_waits_on_the_database_clock(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 1).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        let retry = Finish::RetryAfter {
            retry_in: Duration::from_secs(30),
            errcode: Some(-1),
            error: "system busy".into(),
        };
        assert!(f.store().finish(&robot, &rows[0], &retry).await.unwrap());
        assert_eq!(f.status_count("pending").await, 1);
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_outbox WHERE attempts = 1")
                .await,
            1
        );
        let wait = f.seconds_until_not_before().await;
        assert!((25..=30).contains(&wait), "not_before is {wait} s away");
        assert_eq!(f.count("SELECT count(*) FROM wecom_message_log").await, 0);
    }

    pub async fn rate_limited_pauses_the_robot_and_gives_the_attempt_back(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 2).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        let limited = Finish::RateLimited {
            pause: Duration::from_secs(60),
            error: "45009 api freq out of limit".into(),
            unsent_slots: rows[1..].iter().map(|r| r.slot_id).collect(),
        };
        assert!(f.store().finish(&robot, &rows[0], &limited).await.unwrap());
        f.store().release(&rows[1..]).await.unwrap();
        assert_eq!(f.status_count("pending").await, 2);
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_outbox WHERE attempts = 0")
                .await,
            2
        );
        match claim(&f, robot_id, Duration::from_secs(60)).await {
            ClaimResult::Waiting(until) => {
                assert!(until > Utc::now() + chrono::Duration::seconds(50))
            }
            other => panic!("a paused robot waits, got {other:?}"),
        }
    }

    pub async fn a_45009_under_the_limit_learns_what_was_accepted_and_claims_hold_to_it(
        f: Fixture,
    ) {
        let robot_id = f
            .robot("parent_group", None, 10, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 12).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        assert_eq!(rows.len(), 10, "the configured limit");
        for row in &rows[..5] {
            assert!(f.store().finish(&robot, row, &Finish::Sent).await.unwrap());
        }
        let limited = Finish::RateLimited {
            pause: Duration::from_secs(60),
            error: "45009 api freq out of limit".into(),
            unsent_slots: rows[6..].iter().map(|r| r.slot_id).collect(),
        };
        assert!(f.store().finish(&robot, &rows[5], &limited).await.unwrap());
        f.store().release(&rows[6..]).await.unwrap();
        let learned = "SELECT count(*) FROM wecom_robot_state WHERE learned_rate_limit = 5";
        let any = "SELECT count(*) FROM wecom_robot_state WHERE learned_rate_limit IS NOT NULL";
        assert_eq!(
            f.count(learned).await,
            1,
            "WeCom accepted 5 before its 45009"
        );

        // A window later (its sends and its pause gone), the claim takes what WeCom allows.
        f.exec("DELETE FROM wecom_rate_slots").await;
        f.exec("UPDATE wecom_robot_state SET paused_until = NULL")
            .await;
        let (_, rows) = claimed(&f, robot_id).await;
        assert_eq!(rows.len(), 5, "the learned limit, not the configured 10");
        f.store().release(&rows).await.unwrap();

        // A 45009 before anything was accepted teaches nothing.
        let (robot, rows) = claimed(&f, robot_id).await;
        let limited = Finish::RateLimited {
            pause: Duration::from_secs(1),
            error: "45009 api freq out of limit".into(),
            unsent_slots: rows[1..].iter().map(|r| r.slot_id).collect(),
        };
        f.exec("DELETE FROM wecom_rate_slots").await;
        assert!(f.store().finish(&robot, &rows[0], &limited).await.unwrap());
        f.store().release(&rows[1..]).await.unwrap();
        assert_eq!(
            f.count(learned).await,
            1,
            "nothing accepted: nothing new learned"
        );

        // The operator changes the configured limit: what was learned is forgotten.
        f.exec("UPDATE wecom_webhooks SET rate_limit = 12").await;
        assert_eq!(f.count(any).await, 0, "reset by a new rate_limit");
    }

    pub async fn a_gone_robot_is_disabled_and_its_row_waits_for_the_pool(f: Fixture) {
        let gone = f
            .robot("a", Some("pool"), 20, Duration::from_secs(60))
            .await;
        let other = f
            .robot("b", Some("pool"), 20, Duration::from_secs(60))
            .await;
        f.enqueue("pool", "m", 1).await;
        let (robot, rows) = claimed(&f, gone).await;
        let finish = Finish::RobotGone {
            errcode: Some(93000),
            reason: "invalid webhook url".into(),
        };
        assert!(f.store().finish(&robot, &rows[0], &finish).await.unwrap());
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_webhooks WHERE NOT is_active AND disabled_reason = 'invalid webhook url'")
                .await,
            1
        );
        assert!(matches!(
            claim(&f, gone, Duration::from_secs(60)).await,
            ClaimResult::Busy
        ));
        let (_, rows) = claimed(&f, other).await;
        assert_eq!(rows.len(), 1, "the rest of the pool takes the row");
        assert_eq!(
            rows[0].attempts, 1,
            "the gone robot's attempt was given back"
        );
    }

    pub async fn released_rows_and_their_slots_go_back(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 2, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 2).await;
        let (_, rows) = claimed(&f, robot_id).await;
        f.store().release(&rows).await.unwrap();
        assert_eq!(f.status_count("pending").await, 2);
        let (_, again) = claimed(&f, robot_id).await;
        assert_eq!(again.len(), 2, "the released slots count no more");
        assert!(again.iter().all(|r| r.attempts == 1));
    }

    pub async fn housekeeping_rescues_lost_leases_and_expires_old_rows(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 2).await;
        let (_, rows) = match claim(&f, robot_id, Duration::from_millis(200)).await {
            ClaimResult::Claimed(robot, rows) => (robot, rows),
            other => panic!("{other:?}"),
        };
        assert_eq!(rows.len(), 2);
        f.enqueue("parent_group", "stale", 1).await;
        f.expire("stale 1").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (expired, rescued) = f.store().housekeeping().await.unwrap();
        assert_eq!((expired, rescued), (1, 2));
        assert_eq!(f.status_count("pending").await, 2);
        assert_eq!(f.status_count("expired").await, 1);
    }

    pub async fn a_claim_that_lost_its_rows_cannot_finish_them(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 1).await;
        let (robot, first) = match claim(&f, robot_id, Duration::from_millis(200)).await {
            ClaimResult::Claimed(robot, rows) => (robot, rows),
            other => panic!("{other:?}"),
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        f.store().housekeeping().await.unwrap();
        let (_, second) = claimed(&f, robot_id).await;
        assert!(!f
            .store()
            .finish(&robot, &first[0], &Finish::Sent)
            .await
            .unwrap());
        assert!(f
            .store()
            .finish(&robot, &second[0], &Finish::Sent)
            .await
            .unwrap());
        assert_eq!(f.count("SELECT count(*) FROM wecom_message_log").await, 1);
    }

    pub async fn only_robots_with_claimable_rows_are_due(f: Fixture) {
        let busy = f.robot("busy", None, 20, Duration::from_secs(60)).await;
        f.robot("idle", None, 20, Duration::from_secs(60)).await;
        f.enqueue("busy", "m", 1).await;
        assert_eq!(f.store().due_robots(10, &[]).await.unwrap(), [busy]);
        assert!(f.store().due_robots(10, &[busy]).await.unwrap().is_empty());
        f.enqueue("idle", "later", 1).await;
        f.hold_back("later 1").await;
        let wake = f
            .store()
            .next_wake(&[busy])
            .await
            .unwrap()
            .expect("a wake time");
        assert!(wake > Utc::now() + chrono::Duration::minutes(59));
    }

    pub async fn a_destination_with_one_row_offers_one_of_its_robots(f: Fixture) {
        let first = f
            .robot("p1", Some("parents"), 20, Duration::from_secs(60))
            .await;
        f.robot("p2", Some("parents"), 20, Duration::from_secs(60))
            .await;
        f.robot("p3", Some("parents"), 20, Duration::from_secs(60))
            .await;
        let tutor = f.robot("tutor", None, 20, Duration::from_secs(60)).await;
        f.enqueue("parents", "m", 1).await;
        f.enqueue("tutor", "t", 1).await;
        let mut due = f.store().due_robots(10, &[]).await.unwrap();
        due.sort_unstable();
        // One of the pool's robots (all equally overdue here): one row needs no more.
        assert_eq!(due.len(), 2, "one per destination: {due:?}");
        assert!(due.contains(&tutor));
        let pooled = due.iter().find(|id| **id != tutor).copied().unwrap();
        assert!(pooled >= first && pooled <= first + 2, "{due:?}");
        let without = f.store().due_robots(10, &[pooled]).await.unwrap();
        assert_eq!(without.len(), 2, "the next robot of the pool: {without:?}");
        assert!(!without.contains(&pooled));
    }

    pub async fn housekeeping_is_one_replica_at_a_time_and_passes_on_when_it_dies(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 2).await;
        assert!(matches!(
            claim(&f, robot_id, Duration::from_millis(200)).await,
            ClaimResult::Claimed(_, rows) if rows.len() == 2
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let other = f.housekeeper().await;
        let turn = f.store().housekeeping_turn().await.unwrap();
        assert_eq!(turn, None, "two replicas did housekeeping at once");
        assert_eq!(f.status_count("sending").await, 2);
        drop(other);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let run = loop {
            if let Some(run) = f.store().housekeeping_turn().await.unwrap() {
                break run;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the turn never passed on"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!((run.expired, run.rescued, run.next_due), (0, 2, None));
        assert_eq!(f.status_count("pending").await, 2);
    }

    pub async fn a_destination_claim_takes_a_free_due_robot_of_that_destination_only(f: Fixture) {
        let a = f.robot("a", Some("pool"), 1, Duration::from_secs(60)).await;
        let b = f.robot("b", Some("pool"), 1, Duration::from_secs(60)).await;
        let elsewhere = f
            .robot("elsewhere", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("pool", "m", 3).await;
        f.enqueue("elsewhere", "e", 1).await;
        let store = f.store();
        let by = |excluded: Vec<i32>| async move {
            store
                .claim_for_destination(
                    "pool",
                    &excluded,
                    "conformance",
                    Duration::from_secs(60),
                    plan,
                )
                .await
                .unwrap()
        };
        let (first, rows) = match by(vec![]).await {
            Some((id, ClaimResult::Claimed(robot, rows))) => {
                assert_eq!(robot.id, id);
                assert!(robot.more_at.is_some(), "its limit left rows behind");
                (id, rows)
            }
            other => panic!("{other:?}"),
        };
        assert!([a, b].contains(&first) && rows.len() == 1);
        let second = match by(vec![first]).await {
            Some((id, ClaimResult::Claimed(_, rows))) if rows.len() == 1 => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            [first, second]
                .iter()
                .filter(|id| [a, b].contains(id))
                .count(),
            2
        );
        assert_ne!(first, second);
        // Both robots used their budget: neither is due, and the other destination is not
        // this one's business.
        assert!(by(vec![]).await.is_none());
        assert_eq!(f.status_count("pending").await, 2);
        let _ = elsewhere;
    }

    pub async fn send_test_reserves_a_slot_and_logs_its_send(f: Fixture) {
        f.robot("parent_group", None, 1, Duration::from_secs(60))
            .await;
        let robot = f
            .store()
            .find_robot("parent_group")
            .await
            .unwrap()
            .expect("the robot");
        let budget = |s: &RobotSnapshot, now| {
            let rate = s.rate().map_err(|_| now)?;
            match rate.budget(now, &s.recent_sends).available {
                0 => Err(now),
                _ => Ok(()),
            }
        };
        let slot = f.store().reserve_one(robot.id, budget).await.unwrap();
        let slot = slot.expect("budget").expect("not busy");
        let body = serde_json::json!({"msgtype": "text", "text": {"content": "hi"}});
        f.store()
            .record_test_send(&robot, slot, &body, Some(0), None)
            .await
            .unwrap();
        assert!(
            f.store()
                .reserve_one(robot.id, budget)
                .await
                .unwrap()
                .is_err(),
            "the one slot is used"
        );
        assert_eq!(
            f.count("SELECT count(*) FROM wecom_message_log WHERE message_type = 'send_test' AND send_status = 'sent'")
                .await,
            1
        );
    }

    pub async fn the_reports_show_each_destination_and_robot(f: Fixture) {
        let robot_id = f
            .robot("parent_group", None, 20, Duration::from_secs(60))
            .await;
        f.enqueue("parent_group", "m", 3).await;
        let (robot, rows) = claimed(&f, robot_id).await;
        f.store()
            .finish(&robot, &rows[0], &Finish::Sent)
            .await
            .unwrap();
        f.store().release(&rows[1..]).await.unwrap();
        let counts = f.store().destination_counts().await.unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].pending, counts[0].sent), (2, 1));
        let robots = f.store().robot_reports().await.unwrap();
        assert_eq!(robots.len(), 1);
        assert_eq!(robots[0].webhook_name, "parent_group");
        assert!(f.store().settings_problems().await.unwrap().is_empty());
        assert!(f.store().replica_notes().await.unwrap().is_empty());
    }

    /// `status` reads live rows and a window of finished ones, never all history: pending,
    /// sending and failed exactly; sent, cancelled and expired only when they finished in the
    /// last FINISHED_WINDOW_DAYS days; the error shown is a retrying row's, else the latest
    /// failed row's.
    pub async fn status_counts_live_rows_exactly_and_finished_rows_of_the_window(f: Fixture) {
        const {
            assert!(
                FINISHED_WINDOW_DAYS < 30,
                "the aged rows must be outside the window"
            )
        };
        let minute = Duration::from_secs(60);
        let parent = f.robot("parent_group", None, 20, minute).await;
        let office = f.robot("office", None, 20, minute).await;
        f.enqueue("parent_group", "m", 7).await;
        f.enqueue("office", "o", 2).await;
        let store = f.store();
        let failed = |error: &str| Finish::Failed {
            errcode: Some(40058),
            error: error.into(),
        };
        let (robot, rows) = claimed(&f, parent).await;
        assert_eq!(rows.len(), 7);
        assert!(store.finish(&robot, &rows[0], &Finish::Sent).await.unwrap());
        assert!(store.finish(&robot, &rows[1], &Finish::Sent).await.unwrap());
        let old_failure = failed("old failure");
        assert!(store.finish(&robot, &rows[2], &old_failure).await.unwrap());
        let recent_failure = failed("recent failure");
        assert!(store
            .finish(&robot, &rows[3], &recent_failure)
            .await
            .unwrap());
        // rows[4] stays sending; 5 and 6 go back, and 6 is cancelled.
        store.release(&rows[5..7]).await.unwrap();
        f.exec(&format!(
            "UPDATE wecom_outbox SET status = 'cancelled' WHERE id = '{}'",
            rows[6].id
        ))
        .await;
        let (robot, rows_office) = claimed(&f, office).await;
        let retry = Finish::RetryAfter {
            retry_in: Duration::from_secs(3600),
            errcode: Some(-1),
            error: "errcode -1: system busy".into(),
        };
        assert!(store.finish(&robot, &rows_office[0], &retry).await.unwrap());
        let office_failure = failed("office failure");
        assert!(store
            .finish(&robot, &rows_office[1], &office_failure)
            .await
            .unwrap());
        f.enqueue("parent_group", "stale", 1).await;
        f.expire("stale 1").await;
        assert_eq!(store.housekeeping().await.unwrap().0, 1);
        // One sent and one failed row finished a month ago: history outside the window.
        f.age_finished(&[rows[1].id, rows[2].id], 30).await;

        let counts = store.destination_counts().await.unwrap();
        let names: Vec<&str> = counts.iter().map(|c| c.destination.as_str()).collect();
        assert_eq!(names, ["office", "parent_group"]);
        let (office, parent) = (&counts[0], &counts[1]);
        let by_status = |c: &wecom_outbox::store::DestinationCounts| {
            [
                c.pending,
                c.sending,
                c.sent,
                c.failed,
                c.cancelled,
                c.expired,
            ]
        };
        assert_eq!(
            by_status(parent),
            [1, 1, 1, 2, 1, 1],
            "pending, sending, failed exact; the month-old sent row not in the window: {parent:?}"
        );
        assert_eq!(
            f.status_count("sent").await,
            2,
            "the old sent row is still stored"
        );
        assert!(parent.oldest_pending.is_some());
        assert_eq!(parent.last_error.as_deref(), Some("recent failure"));
        assert_eq!(by_status(office), [1, 0, 0, 1, 0, 0], "{office:?}");
        assert_eq!(
            office.last_error.as_deref(),
            Some("errcode -1: system busy"),
            "a row still being retried shows its error before a failed row's"
        );
    }

    pub async fn the_daily_run_is_off_without_the_schools_view(f: Fixture) {
        assert_eq!(
            f.store().run_daily_reminders("conformance").await.unwrap(),
            None
        );
        let plan = f.store().reminder_plan(None).await;
        assert!(plan.is_err(), "no view, no plan: {plan:?}");
    }
}

/// One `#[tokio::test]` per case for a backend whose fixture `$fixture` makes (`None`: the
/// backend's server is not configured, and the case is SKIPPED).
macro_rules! conformance {
    ($backend:ident, $fixture:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(fixture) = $fixture {
                        cases::$case(fixture).await;
                    }
                }
            )*
        }
    };
}

/// Every case, once: each backend gets them all.
macro_rules! every_case {
    ($backend:ident, $fixture:expr) => {
        conformance!(
            $backend,
            $fixture,
            [
                a_claim_takes_no_more_than_the_rate_limit_allows,
                rows_go_by_priority_then_in_the_order_they_were_written,
                a_robot_in_a_zone_of_its_own_is_claimed,
                robots_of_one_pool_never_claim_the_same_row,
                a_sent_row_gets_its_status_and_exactly_one_log_row,
                a_failed_row_gets_its_status_and_one_log_row_with_the_error,
                a_retry_uses_the_attempt_and_waits_on_the_database_clock,
                rate_limited_pauses_the_robot_and_gives_the_attempt_back,
                a_45009_under_the_limit_learns_what_was_accepted_and_claims_hold_to_it,
                a_gone_robot_is_disabled_and_its_row_waits_for_the_pool,
                released_rows_and_their_slots_go_back,
                housekeeping_rescues_lost_leases_and_expires_old_rows,
                a_claim_that_lost_its_rows_cannot_finish_them,
                only_robots_with_claimable_rows_are_due,
                a_destination_with_one_row_offers_one_of_its_robots,
                housekeeping_is_one_replica_at_a_time_and_passes_on_when_it_dies,
                a_destination_claim_takes_a_free_due_robot_of_that_destination_only,
                send_test_reserves_a_slot_and_logs_its_send,
                the_reports_show_each_destination_and_robot,
                status_counts_live_rows_exactly_and_finished_rows_of_the_window,
                the_daily_run_is_off_without_the_schools_view,
                prune_removes_only_finished_rows_older_than_the_cutoff,
                retry_requeues_only_failed_rows_and_a_requeued_row_is_delivered_once,
                the_daily_prune_runs_once_a_day_and_only_when_set,
            ]
        );
    };
}

every_case!(postgres, Fixture::postgres().await);
every_case!(mysql, Fixture::mysql().await);
