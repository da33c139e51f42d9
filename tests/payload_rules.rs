//! One set of WeCom message rules, and proof that every place which checks a body applies it:
//! each case of `tests/payloads/corpus.json` goes through the Rust validator, an INSERT into
//! `wecom_outbox` on a real PostgreSQL, and a real HTTP POST to the WeCom stand-in, and all
//! three must give the corpus's verdict (and, for a refusal, its errcode and rule). Also: the
//! INSERT check counts UTF-8 bytes in a database that is not UTF-8, and `send-test` checks its
//! text before it uses a rate slot.

mod cli_support;

use cli_support::Cli;
use serde_json::{json, Value};
use std::time::Duration;
use wecom_outbox::standin::Standin;
use wecom_outbox::testing::{standin, TestDatabase};
use wecom_outbox::wecom::message;

const MINUTE: Duration = Duration::from_secs(60);
const CORPUS: &str = include_str!("payloads/corpus.json");

/// One corpus case, its payload expanded.
struct Case {
    name: String,
    payload: Value,
    /// `None` when accepted; else the errcode and the rule, word for word.
    refused: Option<(i64, String)>,
}

/// `{"$repeat": [text, n]}` and `{"$concat": [part, …]}`, anywhere in `v`, written out.
fn expand(v: Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("$repeat") => {
            let (text, times) = (&o["$repeat"][0], &o["$repeat"][1]);
            let times = times.as_u64().expect("$repeat: [text, times]") as usize;
            Value::String(text.as_str().expect("$repeat text").repeat(times))
        }
        Value::Object(o) if o.contains_key("$concat") => {
            let parts = o["$concat"].as_array().expect("$concat: [part, …]").clone();
            let text: String = parts
                .into_iter()
                .map(|p| {
                    expand(p)
                        .as_str()
                        .expect("$concat parts are text")
                        .to_owned()
                })
                .collect();
            Value::String(text)
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, expand(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(expand).collect()),
        other => other,
    }
}

fn corpus() -> Vec<Case> {
    let file: Value = serde_json::from_str(CORPUS).expect("corpus.json is JSON");
    let cases = file["cases"].as_array().expect("corpus.json has cases");
    cases
        .iter()
        .map(|c| {
            let name = c["name"].as_str().expect("a case has a name").to_owned();
            let refused = match c["accepted"].as_bool() {
                Some(true) => None,
                Some(false) => {
                    let errcode = c["errcode"]
                        .as_i64()
                        .expect("a refused case has an errcode");
                    let rule = c["rule"].as_str().expect("a refused case has a rule");
                    Some((errcode, rule.to_owned()))
                }
                None => panic!("case {name:?}: accepted must be true or false"),
            };
            let payload = expand(c.get("payload").expect("a case has a payload").clone());
            Case {
                name,
                payload,
                refused,
            }
        })
        .collect()
}

/// What the Rust validator says, if it disagrees with the case.
fn validator_disagrees(case: &Case) -> Option<String> {
    let got = message::validate(&case.payload)
        .err()
        .map(|invalid| (invalid.errcode, invalid.rule));
    (got != case.refused).then(|| format!("validator: {got:?}"))
}

/// What the INSERT check says, if it disagrees with the case; a refused row must leave
/// nothing behind and fail as a check violation with the rule in its message.
async fn insert_disagrees(db: &TestDatabase, case: &Case) -> Option<String> {
    let before = db.count("SELECT count(*) FROM wecom_outbox").await;
    let result =
        sqlx::query("INSERT INTO wecom_outbox (webhook_name, payload) VALUES ('parent_group', $1)")
            .bind(sqlx::types::Json(&case.payload))
            .execute(db.pool())
            .await;
    let stored = db.count("SELECT count(*) FROM wecom_outbox").await - before;
    match (&case.refused, result) {
        (None, Ok(_)) if stored == 1 => None,
        (None, result) => Some(format!("INSERT: {result:?}, {stored} rows stored")),
        (Some(_), Ok(_)) => Some(format!("INSERT accepted it ({stored} rows stored)")),
        (Some((_, rule)), Err(e)) => {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .unwrap_or_default();
            let expected = format!("wecom_outbox: {rule}");
            let agrees = code == "23514" && e.to_string().contains(&expected) && stored == 0;
            (!agrees).then(|| format!("INSERT: SQLSTATE {code}, {stored} rows stored: {e}"))
        }
    }
}

/// What the stand-in answers, if it disagrees with the case.
async fn standin_disagrees(client: &reqwest::Client, url: &str, case: &Case) -> Option<String> {
    let answer: Value = client
        .post(url)
        .json(&case.payload)
        .send()
        .await
        .expect("the stand-in answers")
        .json()
        .await
        .expect("a JSON answer");
    let errcode = answer["errcode"].as_i64();
    let errmsg = answer["errmsg"].as_str().unwrap_or_default();
    let agrees = match &case.refused {
        None => errcode == Some(0),
        Some((code, rule)) => errcode == Some(*code) && errmsg.contains(rule.as_str()),
    };
    (!agrees).then(|| format!("stand-in: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_case_gets_the_same_verdict_from_the_validator_the_insert_check_and_the_standin(
) {
    let db = TestDatabase::migrated().await;
    let fake = standin(0, MINUTE).await;
    db.add_robot(&fake, "parent_group", None, 20, MINUTE).await;
    let client = reqwest::Client::new();
    let url = fake.url_for("corpus");
    let cases = corpus();
    assert!(
        cases.len() > 90,
        "the corpus has only {} cases",
        cases.len()
    );

    let mut disagreements = Vec::new();
    for case in &cases {
        let verdicts = [
            validator_disagrees(case),
            insert_disagrees(&db, case).await,
            standin_disagrees(&client, &url, case).await,
        ];
        for verdict in verdicts.into_iter().flatten() {
            let expected = match &case.refused {
                None => "accepted".to_owned(),
                Some((code, rule)) => format!("{code} {rule}"),
            };
            disagreements.push(format!(
                "{}\n    expected {expected}\n    got {verdict}",
                case.name
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements with tests/payloads/corpus.json:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    let accepted = cases.iter().filter(|c| c.refused.is_none()).count();
    assert_eq!(fake.received().len(), accepted);
    assert_eq!(db.status_count("pending").await, accepted as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_euc_cn_database_the_insert_check_counts_utf8_bytes_as_wecom_does() {
    let db = TestDatabase::empty_with_encoding("EUC_CN", "C").await;
    // The tables, the INSERT trigger and the rules (0004's templates hold emoji, which EUC_CN
    // cannot store, so the whole set cannot run here).
    db.migrate_only(&[1, 2, 3, 7]).await;
    db.add_robot_at(
        "parent_group",
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        None,
        20,
        MINUTE,
    )
    .await;
    // In EUC_CN "续" is 2 bytes, in UTF-8 3: 683 of them are 1366 bytes here and 2049 to WeCom.
    assert_eq!(
        db.count("SELECT octet_length(repeat('续', 683))::bigint")
            .await,
        1366
    );

    let insert = |content: &str, msgtype: &str| {
        format!(
            "INSERT INTO wecom_outbox (webhook_name, payload) VALUES ('parent_group',
                 jsonb_build_object('msgtype', '{msgtype}', '{msgtype}', jsonb_build_object('content', {content})))"
        )
    };
    for (content, msgtype, rule) in [
        (
            "repeat('续', 683)",
            "text",
            "text.content is 2049 bytes: WeCom allows at most 2048 UTF-8 bytes",
        ),
        (
            "repeat('续', 1366)",
            "markdown",
            "markdown.content is 4098 bytes: WeCom allows at most 4096 UTF-8 bytes",
        ),
    ] {
        let err = db.exec_err(&insert(content, msgtype)).await;
        assert!(err.contains(rule), "{err}");
    }
    assert_eq!(db.count("SELECT count(*) FROM wecom_outbox").await, 0);
    db.exec(&insert("repeat('续', 682) || 'ab'", "text")).await;
    db.exec(&insert("repeat('续', 1365) || 'a'", "markdown"))
        .await;
    let at_the_limits = "SELECT count(*) FROM wecom_outbox
         WHERE octet_length(convert_to(payload #>> '{text,content}', 'UTF8')) = 2048
            OR octet_length(convert_to(payload #>> '{markdown,content}', 'UTF8')) = 4096";
    assert_eq!(db.count(at_the_limits).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_refuses_an_invalid_text_before_it_uses_a_rate_slot_sends_or_logs() {
    let db = TestDatabase::migrated().await;
    let fake: Standin = standin(20, MINUTE).await;
    // One send a minute: a slot used by a refused text would block the good one below.
    db.add_robot(&fake, "office", None, 1, MINUTE).await;
    let too_long = "陳".repeat(683);
    for (text, rule) in [
        (
            "",
            "text.content is empty: WeCom needs 1 to 2048 UTF-8 bytes",
        ),
        (
            too_long.as_str(),
            "text.content is 2049 bytes: WeCom allows at most 2048 UTF-8 bytes",
        ),
    ] {
        let out = Cli::new(&["send-test", "office", text])
            .db(&db)
            .allow(&fake)
            .output()
            .await;
        let error = out.one_line_error();
        assert!(error.contains(rule), "{out}");
        assert!(!out.stdout.contains("sending"), "{out}");
        assert_eq!(
            db.count("SELECT count(*) FROM wecom_rate_slots").await,
            0,
            "a slot was used"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM wecom_message_log").await,
            0,
            "it was logged"
        );
        let stats = fake.stats();
        let calls = stats.accepted + stats.invalid + stats.other_errors + stats.rejected_45009;
        assert_eq!(calls, 0, "it reached WeCom");
    }
    Cli::new(&["send-test", "office", "now a good one"])
        .db(&db)
        .allow(&fake)
        .output()
        .await
        .ok();
    let received: Vec<Value> = fake.received().into_iter().map(|r| r.body).collect();
    assert_eq!(
        received,
        [json!({"msgtype": "text", "text": {"content": "now a good one"}})]
    );
}
