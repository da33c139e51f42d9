//! The MySQL 8 / MariaDB schema (migrations/mysql), talked to in SQL on a real server: the
//! school's migration-023 tables are adopted as they are, the outbox keeps what is written to
//! it (in utf8mb4, in order, once per dedupe_key), and a row that could never be delivered or
//! logged is refused at INSERT with the rule it breaks.

mod mysql_support;

use mysql_support::{phase1, MyDb};

/// The adopted tables' definitions as the server reports them, without our additions.
async fn table_charset(db: &MyDb, table: &str) -> String {
    db.text(&format!(
        "SELECT CCSA.character_set_name FROM information_schema.tables t \
         JOIN information_schema.collation_character_set_applicability CCSA \
           ON CCSA.collation_name = t.table_collation \
         WHERE t.table_schema = DATABASE() AND t.table_name = '{table}'"
    ))
    .await
    .expect("a charset")
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_adopt_the_schools_023_tables_with_their_foreign_keys_and_keep_every_row() {
    let Some(db) = MyDb::empty("adopt023").await else {
        return;
    };
    // An older school: utf8 (3-byte) tables, as MySQL 5.7 made them. Nothing is converted.
    db.exec(&phase1("utf8")).await;
    db.exec(
        "INSERT INTO enrollments (student_name) VALUES ('Amy'), ('Ben');
         INSERT INTO session_log () VALUES ();
         INSERT INTO tutors (name, wecom_userid) VALUES ('Ms Lee', 'lee01');
         INSERT INTO wecom_webhooks (webhook_name, webhook_url, target_description, notes) VALUES
           ('admin_group', 'PLACEHOLDER_UPDATE_AFTER_CREATING_ROBOT', 'Admin team notifications', 'placeholder');
         INSERT INTO wecom_message_log (webhook_name, message_type, message_content, enrollment_id, session_id,
                                        send_status, send_timestamp)
           VALUES ('admin_group', 'announcement', 'Staff meeting at 5pm', 2, 1, 'sent', NOW());",
    )
    .await;

    assert_eq!(
        db.migrate().await.expect("first migrate"),
        migration_files(),
        "every migration runs once"
    );
    assert_eq!(
        db.migrate().await.expect("second migrate"),
        0,
        "a second migrate is a no-op"
    );

    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_webhooks").await,
        1,
        "robots kept"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_message_log").await,
        1,
        "log rows kept"
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM wecom_message_log WHERE enrollment_id = 2 AND session_id = 1"
        )
        .await,
        1,
        "log references kept"
    );
    assert_eq!(
        db.text("SELECT wecom_userid FROM tutors").await.as_deref(),
        Some("lee01")
    );
    let fks = db
        .count(
            "SELECT COUNT(*) FROM information_schema.referential_constraints \
             WHERE constraint_schema = DATABASE() AND table_name = 'wecom_message_log' \
               AND delete_rule = 'SET NULL' AND referenced_table_name IN ('enrollments', 'session_log')",
        )
        .await;
    assert_eq!(fks, 2, "the school's foreign keys are still there");
    assert_eq!(
        table_charset(&db, "wecom_message_log").await,
        "utf8mb3",
        "the school's charset is kept"
    );
    assert_eq!(table_charset(&db, "wecom_outbox").await, "utf8mb4");
    assert_eq!(
        db.text("SELECT destination FROM wecom_webhooks")
            .await
            .as_deref(),
        Some("admin_group"),
        "the generated destination column covers adopted rows"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_robot_state").await,
        1,
        "adopted robots get their worker state"
    );
    // The seed's INSERT and monitoring query still work.
    db.exec(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, target_description, notes)
         VALUES ('parent_group', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=YOUR_PARENT_GROUP_KEY_HERE',
                 'Parent customer group for fee renewal notifications', 'External customer group - max 20 messages per minute');
         SELECT DATE(send_timestamp) AS date, COUNT(*) AS reminders_sent, COUNT(DISTINCT enrollment_id)
         FROM wecom_message_log WHERE webhook_name = 'parent_group' AND message_type = 'fee_reminder'
         GROUP BY DATE(send_timestamp) ORDER BY date DESC;",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_database_gets_every_table_and_a_second_migrate_changes_nothing() {
    let Some(db) = MyDb::migrated("fresh").await else {
        return;
    };
    for table in [
        "wecom_webhooks",
        "wecom_message_log",
        "wecom_outbox",
        "wecom_robot_state",
        "wecom_rate_slots",
        "wecom_settings",
        "wecom_log_columns",
        "wecom_replica_notes",
        "wecom_timezones",
        "wecom_templates",
        "wecom_daily_runs",
    ] {
        let n = db
            .count(&format!(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = '{table}'"
            ))
            .await;
        assert_eq!(n, 1, "table {table}");
    }
    let settings = db.count("SELECT COUNT(*) FROM wecom_settings").await;
    assert_eq!(db.migrate().await.unwrap(), 0);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_settings").await,
        settings
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chinese_name_and_an_emoji_survive_the_outbox_and_the_log() {
    let Some(db) = MyDb::migrated("utf8mb4").await else {
        return;
    };
    db.add_robot("parent_group").await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content, message_type) VALUES ('parent_group', '陳小明 🔴 Not Yet Renewed', 'fee_reminder')").await;
    assert_eq!(
        db.text("SELECT JSON_UNQUOTE(JSON_EXTRACT(payload, '$.text.content')) FROM wecom_outbox")
            .await
            .as_deref(),
        Some("陳小明 🔴 Not Yet Renewed")
    );
    assert_eq!(
        db.text("SELECT content FROM wecom_outbox").await.as_deref(),
        Some("陳小明 🔴 Not Yet Renewed")
    );
    // As the worker records it: the log row carries the same body.
    let mut worker = db.connection().await;
    sqlx::raw_sql(
        "SET @wecom_actor = 'worker';
         UPDATE wecom_outbox SET status = 'sent', sent_at = UTC_TIMESTAMP(6), attempts = 1;
         SET @id = (SELECT id FROM wecom_outbox);
         CALL wecom_write_log(@id);",
    )
    .execute(&mut worker)
    .await
    .unwrap();
    drop(worker);
    assert_eq!(
        db.text("SELECT JSON_UNQUOTE(JSON_EXTRACT(message_content, '$.text.content')) FROM wecom_message_log").await.as_deref(),
        Some("陳小明 🔴 Not Yet Renewed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_dedupe_key_is_a_no_op_for_insert_ignore_and_on_duplicate_key_update() {
    let Some(db) = MyDb::migrated("dedupe").await else {
        return;
    };
    db.add_robot("parent_group").await;
    let insert = "INSERT {ignore} INTO wecom_outbox (webhook_name, content, dedupe_key) VALUES ('parent_group', '{text}', 'k1') {tail}";
    db.exec(
        &insert
            .replace("{ignore}", "")
            .replace("{text}", "first")
            .replace("{tail}", ""),
    )
    .await;
    let id = db.text("SELECT id FROM wecom_outbox").await;
    db.exec(
        &insert
            .replace("{ignore}", "IGNORE")
            .replace("{text}", "second")
            .replace("{tail}", ""),
    )
    .await;
    db.exec(
        &insert
            .replace("{ignore}", "")
            .replace("{text}", "third")
            .replace("{tail}", "ON DUPLICATE KEY UPDATE id = id"),
    )
    .await;
    // Also while the row is being sent: a repeat changes nothing, so it is no change to refuse.
    db.exec("SET @wecom_actor = 'worker'; UPDATE wecom_outbox SET status = 'sending'; SET @wecom_actor = NULL;").await;
    db.exec(
        &insert
            .replace("{ignore}", "")
            .replace("{text}", "fourth")
            .replace("{tail}", "ON DUPLICATE KEY UPDATE id = id"),
    )
    .await;
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_outbox").await, 1);
    assert_eq!(db.text("SELECT id FROM wecom_outbox").await, id);
    assert_eq!(
        db.text("SELECT content FROM wecom_outbox").await.as_deref(),
        Some("first")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insert_cannot_preset_worker_owned_columns_and_rows_keep_the_order_they_were_written_in()
{
    let Some(db) = MyDb::migrated("owned").await else {
        return;
    };
    db.add_robot("parent_group").await;
    db.exec(
        "INSERT INTO wecom_outbox (id, seq, webhook_name, content, status, attempts, last_error, locked_by,
                                   lease_token, created_at, sent_at, robot_name)
         VALUES ('not-a-uuid', 1000, 'parent_group', 'one', 'sent', 9, 'x', 'me', 'tok', '2000-01-01', '2000-01-01', 'r'),
                ('not-a-uuid-2', 5, 'parent_group', 'two', 'failed', 9, 'x', 'me', 'tok', '2000-01-01', '2000-01-01', 'r'),
                ('not-a-uuid-3', 1, 'parent_group', 'three', 'sending', 9, 'x', 'me', 'tok', '2000-01-01', '2000-01-01', 'r');",
    )
    .await;
    let presets = db
        .count(
            "SELECT COUNT(*) FROM wecom_outbox WHERE status <> 'pending' OR attempts <> 0 OR last_error IS NOT NULL
               OR locked_by IS NOT NULL OR lease_token IS NOT NULL OR sent_at IS NOT NULL OR robot_name IS NOT NULL
               OR created_at < UTC_TIMESTAMP() - INTERVAL 1 HOUR OR id NOT REGEXP '^[0-9a-f-]{36}$'",
        )
        .await;
    assert_eq!(presets, 0, "the trigger set every worker-owned column");
    assert_eq!(
        db.text("SELECT GROUP_CONCAT(content ORDER BY seq) FROM wecom_outbox")
            .await
            .as_deref(),
        Some("one,two,three"),
        "seq is the order rows were written in, whatever the INSERT said"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_outbox WHERE not_before <= UTC_TIMESTAMP(6)")
            .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_to_no_destination_or_to_a_pooled_robots_own_name_is_refused_naming_it() {
    let Some(db) = MyDb::migrated("dest").await else {
        return;
    };
    db.exec("INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name) VALUES ('robot_1', 'http://127.0.0.1:9/?key=a', 'parent_group')").await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'to the pool')",
    )
    .await;
    let unknown = db
        .exec_err("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('no_such_group', 'hi')")
        .await;
    assert_eq!(unknown, "wecom_outbox: unknown destination no_such_group: no robot or pool of that name in wecom_webhooks");
    let pooled = db
        .exec_err("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('robot_1', 'hi')")
        .await;
    assert_eq!(
        pooled,
        "wecom_outbox: robot robot_1 belongs to pool parent_group: send to the pool parent_group"
    );
    let missing = db
        .exec_err("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('', 'hi')")
        .await;
    assert!(missing.contains("webhook_name is required"), "{missing}");
    let nothing = db
        .exec_err("INSERT INTO wecom_outbox (webhook_name) VALUES ('parent_group')")
        .await;
    assert_eq!(
        nothing,
        "wecom_outbox: no message: set payload, content, or title and url"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_outbox").await,
        1,
        "nothing refused was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn title_and_url_make_a_news_message_for_writers_that_cannot_build_json() {
    let Some(db) = MyDb::migrated("news").await else {
        return;
    };
    db.add_robot("parent_group").await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, title, url) VALUES ('parent_group', '💰 學費 - 陳小明', 'https://school.example/pay')").await;
    let payload: serde_json::Value =
        serde_json::from_str(&db.text("SELECT payload FROM wecom_outbox").await.unwrap()).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"msgtype": "news", "news": {"articles": [
            {"title": "💰 學費 - 陳小明", "url": "https://school.example/pay"}]}})
    );
    let no_url = db
        .exec_err("INSERT INTO wecom_outbox (webhook_name, title) VALUES ('parent_group', 't')")
        .await;
    assert_eq!(
        no_url,
        "wecom_outbox: news.articles[0].url is required and must not be empty"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn markdown_to_an_external_customer_group_is_refused_with_why() {
    let Some(db) = MyDb::migrated("external").await else {
        return;
    };
    db.exec("INSERT INTO wecom_webhooks (webhook_name, webhook_url, is_external) VALUES ('parent_group', 'http://127.0.0.1:9/?key=a', TRUE)").await;
    let e = db
        .exec_err(r#"INSERT INTO wecom_outbox (webhook_name, payload) VALUES ('parent_group', '{"msgtype":"markdown","markdown":{"content":"**hi**"}}')"#)
        .await;
    assert_eq!(e, "wecom_outbox: markdown does not render in WeChat, and destination parent_group is an external (customer) group: send text or news");
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'plain text is fine')").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_whose_log_entry_the_schools_log_could_not_hold_is_refused_at_insert() {
    let Some(db) = MyDb::empty("logfit").await else {
        return;
    };
    db.exec(&phase1("utf8mb4")).await;
    db.migrate().await.unwrap();
    db.add_robot("parent_group").await;
    let wide = db
        .exec_err(&format!(
            "INSERT INTO wecom_outbox (webhook_name, content, message_type) VALUES ('parent_group', 'hi', '{}')",
            "m".repeat(60)
        ))
        .await;
    assert_eq!(wide, "wecom_outbox: message_type is 60 characters but wecom_message_log.message_type is varchar(50): shorten it");
    let big = db
        .exec_err("INSERT INTO wecom_outbox (webhook_name, content, enrollment_id) VALUES ('parent_group', 'hi', 3000000000)")
        .await;
    assert_eq!(big, "wecom_outbox: enrollment_id 3000000000 does not fit wecom_message_log.enrollment_id (int(11), -2147483648 to 2147483647)");
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_outbox").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_migration_script_can_run_again_over_its_own_result_and_keeps_every_row() {
    // MySQL commits each DDL statement on its own: a migration cut off half-way must be able to
    // run again from the top. Every script is written so (information_schema guards, IF NOT
    // EXISTS, INSERT IGNORE, DROP … IF EXISTS before CREATE).
    let Some(db) = MyDb::empty("rerun").await else {
        return;
    };
    db.exec(&phase1("utf8mb4")).await;
    db.migrate().await.unwrap();
    db.add_robot("parent_group").await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'kept')")
        .await;
    db.exec("UPDATE wecom_settings SET value = 'Asia/Shanghai' WHERE name = 'default_timezone'")
        .await;
    let mut files: Vec<_> = std::fs::read_dir(mysql_support::MIGRATIONS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the migrations are found");
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        if let Err(e) = sqlx::raw_sql(&sql).execute(&db.pool).await {
            panic!("{} cannot run again: {e}", file.display());
        }
    }
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_outbox").await, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_webhooks").await, 1);
    assert_eq!(
        db.text("SELECT value FROM wecom_settings WHERE name = 'default_timezone'")
            .await
            .as_deref(),
        Some("Asia/Shanghai"),
        "a DBA's setting is not put back to the default"
    );
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'still checked')",
    )
    .await;
    assert!(db
        .exec_err("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', '')")
        .await
        .contains("text.content is empty"));
}

/// How many migration files there are (each runs once).
fn migration_files() -> usize {
    std::fs::read_dir(mysql_support::MIGRATIONS)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count()
}
