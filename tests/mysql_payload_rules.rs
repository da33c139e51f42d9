//! One set of WeCom message rules on MySQL / MariaDB too: every case of
//! tests/payloads/corpus.json (the corpus the Rust validator, the PostgreSQL trigger and the
//! WeCom stand-in agree on, tests/payload_rules.rs) goes through an INSERT into wecom_outbox on
//! a real MariaDB, and must be accepted or refused as the corpus says, with its rule word for
//! word, as SQLSTATE 45000.

mod mysql_support;

use mysql_support::{error_text, sqlstate, MyDb};
use serde_json::Value;

const CORPUS: &str = include_str!("payloads/corpus.json");

/// `{"$repeat": [text, n]}` and `{"$concat": [part, …]}`, anywhere in `v`, written out.
fn expand(v: Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("$repeat") => {
            let times = o["$repeat"][1].as_u64().expect("$repeat: [text, times]") as usize;
            Value::String(
                o["$repeat"][0]
                    .as_str()
                    .expect("$repeat text")
                    .repeat(times),
            )
        }
        Value::Object(o) if o.contains_key("$concat") => Value::String(
            o["$concat"]
                .as_array()
                .expect("$concat: [part, …]")
                .iter()
                .map(|p| expand(p.clone()).as_str().expect("text parts").to_owned())
                .collect(),
        ),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, expand(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(expand).collect()),
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_corpus_case_is_accepted_or_refused_at_insert_with_the_corpus_rule() {
    let Some(db) = MyDb::migrated("corpus").await else {
        return;
    };
    db.add_robot("parent_group").await;
    let file: Value = serde_json::from_str(CORPUS).expect("corpus.json is JSON");
    let cases = file["cases"].as_array().expect("cases");
    let mut disagreements = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let payload = expand(case["payload"].clone()).to_string();
        let result = sqlx::query(
            "INSERT INTO wecom_outbox (webhook_name, payload) VALUES ('parent_group', ?)",
        )
        .bind(&payload)
        .execute(&db.pool)
        .await;
        match (case["accepted"].as_bool().unwrap(), result) {
            (true, Ok(_)) => {}
            (true, Err(e)) => disagreements.push(format!("{name}: refused: {}", error_text(&e))),
            (false, Ok(_)) => disagreements.push(format!("{name}: accepted")),
            (false, Err(e)) => {
                let want = format!("wecom_outbox: {}", case["rule"].as_str().unwrap());
                if error_text(&e) != want || sqlstate(&e).as_deref() != Some("45000") {
                    disagreements.push(format!(
                        "{name}: said {:?} ({:?}), the corpus says {want:?}",
                        error_text(&e),
                        sqlstate(&e)
                    ));
                }
            }
        }
    }
    let accepted = cases
        .iter()
        .filter(|c| c["accepted"] == Value::Bool(true))
        .count() as i64;
    assert!(
        disagreements.is_empty(),
        "MariaDB disagrees with the corpus:\n{}",
        disagreements.join("\n")
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_outbox").await,
        accepted,
        "refused rows left nothing"
    );
}
