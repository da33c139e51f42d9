//! Every SQL example in `docs/guide.md` works as written: the ```sql blocks run in order
//! against a freshly migrated database; a block whose first line is `-- error: TEXT` must
//! fail with an error containing TEXT (and store nothing).

use wecom_outbox::testing::TestDatabase;

const GUIDE: &str = include_str!("../docs/guide.md");

/// The contents of the ```sql blocks, in order.
fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sql") => current = Some(Vec::new()),
            (Some(lines), "```") => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            (Some(lines), _) => lines.push(line),
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_example_in_the_guide_works_as_written() {
    let db = TestDatabase::migrated().await;
    // Roles belong to the whole server: each run gets its own names, dropped at the end.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let roles = [
        ("appsheet_writer", format!("appsheet_writer_{suffix}")),
        ("wecom_worker", format!("wecom_worker_{suffix}")),
        ("school_dba", format!("school_dba_{suffix}")),
    ];
    let blocks: Vec<String> = sql_blocks(GUIDE)
        .into_iter()
        .map(|b| roles.iter().fold(b, |b, (from, to)| b.replace(from, to)))
        .collect();
    assert!(blocks.len() > 20, "found only {} SQL blocks", blocks.len());
    for block in &blocks {
        let expected_error = block
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- error: "));
        match expected_error {
            Some(want) => {
                let rows_before = db.count("SELECT count(*) FROM wecom_outbox").await;
                let got = db.exec_err(block).await;
                assert!(
                    got.contains(want),
                    "expected {want:?}, got {got:?}\nin:\n{block}"
                );
                let rows_after = db.count("SELECT count(*) FROM wecom_outbox").await;
                assert_eq!(
                    rows_before, rows_after,
                    "a refused block stored rows:\n{block}"
                );
            }
            None => db.exec(block).await,
        }
    }
    // The examples left the database in the state the guide describes.
    let pending = db.status_count("pending").await;
    assert_eq!(pending, 7, "nine example messages, two of them cancelled");
    let cancelled = db.status_count("cancelled").await;
    assert_eq!(
        cancelled, 2,
        "the cancel examples cancel the announcement and the reminder"
    );
    for (_, role) in &roles {
        // Only school_dba is created by the guide's SQL now (the others by sql/roles.sql).
        let created = db
            .count(&format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
            ))
            .await;
        if created == 1 {
            db.exec(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_appsheet_role_can_add_rows_without_reading_robot_keys() {
    let db = TestDatabase::migrated().await;
    // The guide's AppSheet section gives AppSheet's user the writer role of sql/roles.sql.
    assert!(
        GUIDE.contains("IN ROLE appsheet_writer\"") && GUIDE.contains("sql/roles.sql"),
        "the AppSheet guide points at sql/roles.sql"
    );
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let role = format!("appsheet_{suffix}");
    let others = [format!("worker_{suffix}"), format!("dashboard_{suffix}")];
    let grants = include_str!("../sql/roles.sql")
        .replace(":= 'appsheet_writer';", &format!(":= '{role}';"))
        .replace(":= 'wecom_worker';", &format!(":= '{}';", others[0]))
        .replace(":= 'wecom_dashboard';", &format!(":= '{}';", others[1]));
    db.exec(&grants).await;
    db.exec(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, is_external)
         VALUES ('parent_group', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET', true)",
    )
    .await;
    db.exec(&format!(
        "SET ROLE {role};
         INSERT INTO wecom_outbox (webhook_name, title, description, url, message_type, enrollment_id, dedupe_key)
         VALUES ('parent_group', 'T', 'D', 'https://school.example/1', 'fee_reminder', 1, 'fee-1-2026-11-27');
         RESET ROLE;"
    ))
    .await;
    let refused = db
        .exec_err(&format!(
            "SET ROLE {role}; SELECT webhook_url FROM wecom_webhooks"
        ))
        .await;
    assert!(refused.contains("permission denied"), "{refused}");
    for role in others.iter().chain([&role]) {
        db.exec(&format!(
            "RESET ROLE; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .await;
    }
}
