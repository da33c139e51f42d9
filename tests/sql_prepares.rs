//! Every SQL statement a backend's Rust code sends is prepared against the migrated schema,
//! so a renamed column or a dropped function fails CI here rather than a replica at run time.
//! The statements are found in the backend's source files (every `const NAME: &str = …;`), so
//! a new statement is checked without anyone listing it.

use sqlx::Executor;
use std::path::Path;
use wecom_outbox::testing::{MySqlTestDatabase, TestDatabase};

/// `(file:NAME, sql)` for every string constant in the `.rs` files of `dir`.
fn statements_in(dir: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (constant, sql) in string_constants(&source) {
            found.push((format!("{name}:{constant}"), sql));
        }
    }
    found
}

/// The `const NAME: &str = "…";` and `const NAME: &str = r#"…"#;` of `source`.
fn string_constants(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("const ") {
        rest = &rest[at + "const ".len()..];
        let Some((name, after)) = rest.split_once(": &str =") else {
            continue;
        };
        if name.contains(char::is_whitespace) {
            continue;
        }
        let after = after.trim_start();
        let (sql, tail) = if let Some(raw) = after.strip_prefix("r#\"") {
            raw.split_once("\"#;").expect("a closed raw string")
        } else if let Some(plain) = after.strip_prefix('"') {
            plain.split_once("\";").expect("a closed string")
        } else {
            continue;
        };
        out.push((
            name.to_string(),
            sql.replace("\\\n", "").replace("\\\"", "\""),
        ));
        rest = tail;
    }
    out
}

/// MySQL statements that read a temporary table a procedure makes for the session.
const MYSQL_NOT_PREPARABLE: [&str; 1] = ["reminders.rs:DUE"];

/// MySQL has no array parameters: the store fills `{ids}`-style lists in as it sends a
/// statement. Here each list gets one element of its shape.
fn with_one_of_each_list(sql: &str) -> String {
    sql.replace("{pairs}", "(?, ?)")
        .replace("{values}", "(?, ?)")
        .replace("{names}", "WHEN ? THEN ?")
        .replace("{ids}", "?")
        .replace("{excluded}", "")
        .replace("{keys}", "?")
}

/// Text constants that are not SQL.
const NOT_SQL: [&str; 1] = ["mod.rs:CHANNEL"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_statement_prepares_against_the_migrated_schema() {
    let db = TestDatabase::migrated().await;
    let statements = statements_in("src/store/postgres");
    assert!(
        statements.len() > 40,
        "found only {} statements",
        statements.len()
    );
    let mut failures = Vec::new();
    for (name, sql) in &statements {
        if NOT_SQL.contains(&name.as_str()) {
            continue;
        }
        if let Err(e) = db.pool().prepare(sql.as_str()).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "statements that no longer match the schema:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mysql_statement_prepares_against_the_migrated_schema() {
    let Some(db) = MySqlTestDatabase::migrated("sql_prepares").await else {
        return;
    };
    let statements = statements_in("src/store/mysql");
    assert!(
        statements.len() > 30,
        "found only {} statements",
        statements.len()
    );
    let mut failures = Vec::new();
    for (name, sql) in &statements {
        if MYSQL_NOT_PREPARABLE.contains(&name.as_str()) {
            continue;
        }
        let sql = with_one_of_each_list(sql);
        if let Err(e) = db.pool().prepare(sql.as_str()).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "statements that no longer match the schema:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_statement_finder_sees_raw_and_plain_constants() {
    let source =
        "const A: &str = r#\"\nSELECT 1\n\"#;\nconst B: &str = \"SELECT 2\";\nconst N: usize = 3;";
    let found = string_constants(source);
    assert_eq!(
        found,
        [
            ("A".to_string(), "\nSELECT 1\n".to_string()),
            ("B".to_string(), "SELECT 2".to_string())
        ]
    );
}
