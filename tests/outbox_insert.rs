//! What a DBA or AppSheet sees when writing to `wecom_outbox`: a row WeCom would refuse fails
//! at INSERT with a message naming the rule and its limit, and nothing is stored; plain
//! columns are enough to build a message; worker-owned columns cannot be preset; workers wake.
//!
//! Tests run on a multi-thread runtime: `TestDatabase`'s drop closes the pool from another
//! thread, which needs this runtime's I/O driver to keep running.

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use std::time::Duration;
use wecom_outbox::testing::TestDatabase;

const ROBOT_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=test-key";

/// A migrated database with one robot, `parent_group`.
async fn with_parent_group() -> TestDatabase {
    let db = TestDatabase::migrated().await;
    db.add_robot_at("parent_group", ROBOT_URL, None, 20, Duration::from_secs(60))
        .await;
    db
}

/// `sql` fails with an error containing every one of `needles`, and the outbox stays empty.
async fn refused(db: &TestDatabase, sql: &str, needles: &[&str]) {
    let err = db.exec_err(sql).await;
    for needle in needles {
        assert!(
            err.contains(needle),
            "error {err:?} does not mention {needle:?}\nfor: {sql}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox").await,
        0,
        "a refused INSERT left a row behind: {sql}"
    );
}

/// An INSERT of `payload` for `parent_group`.
fn insert_payload(payload: &Value) -> String {
    let literal = payload.to_string().replace('\'', "''");
    format!("INSERT INTO wecom_outbox (webhook_name, payload) VALUES ('parent_group', '{literal}')")
}

async fn payload_refused(db: &TestDatabase, payload: Value, needles: &[&str]) {
    refused(db, &insert_payload(&payload), needles).await;
}

async fn payload_accepted(db: &TestDatabase, payload: Value) {
    db.exec(&insert_payload(&payload)).await;
}

async fn stored_payload(db: &TestDatabase) -> Value {
    sqlx::query_scalar("SELECT payload FROM wecom_outbox")
        .fetch_one(db.pool())
        .await
        .expect("one stored row")
}

fn articles(n: usize) -> Value {
    let list: Vec<Value> = (1..=n)
        .map(|i| json!({"title": format!("t{i}"), "url": format!("https://example.com/{i}")}))
        .collect();
    json!({"msgtype": "news", "news": {"articles": list}})
}

fn image(bytes: &[u8], md5_of: &[u8]) -> Value {
    json!({"msgtype": "image", "image": {
        "base64": base64::engine::general_purpose::STANDARD.encode(bytes),
        "md5": format!("{:x}", Md5::digest(md5_of)),
    }})
}

// ----- destinations ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_destination_is_refused() {
    let db = with_parent_group().await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('no_such_group', 'hi')",
        &["unknown destination", "no_such_group"],
    )
    .await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES (NULL, 'hi')",
        &["webhook_name is required"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_name_is_a_destination() {
    let db = TestDatabase::migrated().await;
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name) VALUES
             ('parent_1', '{ROBOT_URL}1', 'parents'), ('parent_2', '{ROBOT_URL}2', 'parents')"
    ))
    .await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parents', 'hi')")
        .await;
    assert_eq!(db.status_count("pending").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_inside_a_pool_is_not_a_destination_of_its_own() {
    // Robots serve coalesce(pool_name, webhook_name): a row addressed to a pooled robot's own
    // name would never be claimed by anyone.
    let db = TestDatabase::migrated().await;
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name) VALUES
             ('parent_1', '{ROBOT_URL}1', 'parents')"
    ))
    .await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_1', 'hi')",
        &["parent_1", "pool parents"],
    )
    .await;
}

// ----- text -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_text_is_refused() {
    let db = with_parent_group().await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', '')",
        &["text.content is empty", "2048"],
    )
    .await;
    payload_refused(
        &db,
        json!({"msgtype": "text", "text": {"content": 5}}),
        &["text.content must be a string, not a number"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_over_2048_utf8_bytes_is_refused() {
    let db = with_parent_group().await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', repeat('a', 2049))",
        &["text.content is 2049 bytes", "at most 2048 UTF-8 bytes"],
    )
    .await;
    // 683 Chinese characters are only 683 characters, but 2049 bytes.
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', repeat('续', 683))",
        &["text.content is 2049 bytes", "at most 2048 UTF-8 bytes"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_of_exactly_2048_utf8_bytes_is_accepted() {
    let db = with_parent_group().await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES
             ('parent_group', repeat('a', 2048)),
             ('parent_group', repeat('续', 682) || 'ab'),
             ('parent_group', repeat('💰', 512))",
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox WHERE octet_length(payload #>> '{text,content}') = 2048"
        )
        .await,
        3
    );
}

// ----- message shapes ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_msgtype_is_refused() {
    let db = with_parent_group().await;
    payload_refused(
        &db,
        json!({"msgtype": "fax", "fax": {}}),
        &["unknown msgtype \"fax\"", "text, markdown"],
    )
    .await;
    payload_refused(
        &db,
        json!({"text": {"content": "hi"}}),
        &["msgtype is missing"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_without_its_body_object_is_refused() {
    let db = with_parent_group().await;
    payload_refused(
        &db,
        json!({"msgtype": "text"}),
        &["the message has no \"text\" object"],
    )
    .await;
    payload_refused(
        &db,
        json!({"msgtype": "text", "text": "hi"}),
        &["text must be an object, not a string"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_an_object_is_refused() {
    let db = with_parent_group().await;
    payload_refused(&db, json!("hi"), &["must be a JSON object", "not a string"]).await;
    payload_refused(
        &db,
        json!([1, 2]),
        &["must be a JSON object", "not an array"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_with_no_payload_and_no_content_is_refused() {
    let db = with_parent_group().await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, message_type) VALUES ('parent_group', 'fee_reminder')",
        &["no message", "payload, content, or title and url"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_over_4096_bytes_is_refused_and_4096_is_accepted() {
    let db = with_parent_group().await;
    for msgtype in ["markdown", "markdown_v2"] {
        payload_refused(
            &db,
            json!({"msgtype": msgtype, msgtype: {"content": "a".repeat(4097)}}),
            &[
                &format!("{msgtype}.content is 4097 bytes"),
                "at most 4096 UTF-8 bytes",
            ],
        )
        .await;
        payload_refused(
            &db,
            json!({"msgtype": msgtype, msgtype: {"content": ""}}),
            &[&format!("{msgtype}.content is empty")],
        )
        .await;
    }
    payload_accepted(
        &db,
        json!({"msgtype": "markdown", "markdown": {"content": "续".repeat(1365) + "a"}}),
    )
    .await;
    assert_eq!(db.status_count("pending").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_needs_1_to_8_articles() {
    let db = with_parent_group().await;
    payload_refused(&db, articles(0), &["news has 0 articles", "1 to 8"]).await;
    payload_refused(&db, articles(9), &["news has 9 articles", "1 to 8"]).await;
    payload_refused(
        &db,
        json!({"msgtype": "news", "news": {}}),
        &["news.articles is missing"],
    )
    .await;
    payload_accepted(&db, articles(8)).await;
    assert_eq!(db.status_count("pending").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_news_article_needs_a_title_and_a_url() {
    let db = with_parent_group().await;
    payload_refused(
        &db,
        json!({"msgtype": "news", "news": {"articles": [{"url": "https://example.com"}]}}),
        &["news.articles[0].title is required"],
    )
    .await;
    payload_refused(
        &db,
        json!({"msgtype": "news", "news": {"articles": [
            {"title": "ok", "url": "https://example.com"}, {"title": "no url"}]}}),
        &["news.articles[1].url is required"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_needs_valid_base64_and_the_md5_of_its_bytes() {
    let db = with_parent_group().await;
    let png = b"\x89PNG\r\n\x1a\nnot really a picture, but bytes";
    payload_refused(
        &db,
        json!({"msgtype": "image", "image": {"base64": "not base64!!", "md5": "00"}}),
        &["image.base64 is not valid base64"],
    )
    .await;
    payload_refused(
        &db,
        image(png, b"other bytes"),
        &["image.md5 does not match"],
    )
    .await;
    payload_refused(
        &db,
        json!({"msgtype": "image", "image": {"md5": "00"}}),
        &["image.base64 is required"],
    )
    .await;

    payload_accepted(&db, image(png, png)).await;
    let mut upper = image(png, png);
    upper["image"]["md5"] = json!(upper["image"]["md5"].as_str().unwrap().to_uppercase());
    payload_accepted(&db, upper).await;
    assert_eq!(db.status_count("pending").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_over_2_mb_is_refused() {
    let db = with_parent_group().await;
    refused(
        &db,
        "WITH pic AS (SELECT decode(repeat('00', 2 * 1024 * 1024 + 1), 'hex') AS raw)
         INSERT INTO wecom_outbox (webhook_name, payload)
         SELECT 'parent_group', jsonb_build_object('msgtype', 'image', 'image',
                jsonb_build_object('base64', replace(encode(raw, 'base64'), E'\n', ''), 'md5', md5(raw)))
         FROM pic",
        &["image is 2097153 bytes", "at most 2097152 bytes (2 MB)"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_voice_need_a_media_id() {
    let db = with_parent_group().await;
    for msgtype in ["file", "voice"] {
        payload_refused(
            &db,
            json!({"msgtype": msgtype, msgtype: {}}),
            &[&format!("{msgtype}.media_id is required")],
        )
        .await;
    }
    payload_accepted(
        &db,
        json!({"msgtype": "file", "file": {"media_id": "3a8asd"}}),
    )
    .await;
    assert_eq!(db.status_count("pending").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_card_needs_its_type_title_action_and_image() {
    let db = with_parent_group().await;
    let card = |body: Value| json!({"msgtype": "template_card", "template_card": body});
    let action = json!({"type": 1, "url": "https://example.com/renew"});

    payload_refused(
        &db,
        card(json!({"card_type": "vote_interaction", "main_title": {"title": "t"}, "card_action": action})),
        &["card_type must be text_notice or news_notice"],
    )
    .await;
    payload_refused(
        &db,
        card(json!({"main_title": {"title": "t"}, "card_action": action})),
        &["card_type is required: text_notice or news_notice"],
    )
    .await;
    payload_refused(
        &db,
        card(json!({"card_type": "text_notice", "main_title": {"title": "t"}})),
        &["template_card.card_action is required"],
    )
    .await;
    payload_refused(
        &db,
        card(
            json!({"card_type": "text_notice", "main_title": {"title": "t"},
                    "card_action": {"type": 1}}),
        ),
        &["template_card.card_action.url is required"],
    )
    .await;
    payload_refused(
        &db,
        card(json!({"card_type": "text_notice", "card_action": action})),
        &["template_card needs main_title.title or sub_title_text"],
    )
    .await;
    payload_refused(
        &db,
        card(json!({"card_type": "news_notice", "main_title": {"title": "t"}, "card_action": action})),
        &["template_card.card_image is required", "news_notice"],
    )
    .await;

    payload_accepted(
        &db,
        card(json!({"card_type": "text_notice", "main_title": {"title": "Renewal"}, "card_action": action})),
    )
    .await;
    payload_accepted(
        &db,
        card(
            json!({"card_type": "news_notice", "main_title": {"title": "Renewal"},
                    "card_image": {"url": "https://example.com/p.png"},
                    "card_action": {"type": 2, "appid": "wx123", "pagepath": "/p"}}),
        ),
    )
    .await;
    assert_eq!(db.status_count("pending").await, 2);
}

// ----- external audience ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_to_an_external_group_is_refused_because_wechat_does_not_render_it() {
    let db = with_parent_group().await;
    db.exec("UPDATE wecom_webhooks SET is_external = true WHERE webhook_name = 'parent_group'")
        .await;
    for msgtype in ["markdown", "markdown_v2"] {
        payload_refused(
            &db,
            json!({"msgtype": msgtype, msgtype: {"content": "**renew**"}}),
            &[
                msgtype,
                "does not render in WeChat",
                "parent_group",
                "text or news",
            ],
        )
        .await;
    }
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'renew')")
        .await;
    assert_eq!(db.status_count("pending").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_to_a_pool_with_an_external_robot_is_refused_and_to_an_internal_one_accepted() {
    let db = TestDatabase::migrated().await;
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, pool_name, is_external) VALUES
             ('parent_1', '{ROBOT_URL}1', 'parents', true),
             ('parent_2', '{ROBOT_URL}2', 'parents', false),
             ('tutor_group', '{ROBOT_URL}3', NULL, false)"
    ))
    .await;
    let markdown = r#"{"msgtype":"markdown","markdown":{"content":"**hi**"}}"#;
    refused(
        &db,
        &format!(
            "INSERT INTO wecom_outbox (webhook_name, payload) VALUES ('parents', '{markdown}')"
        ),
        &["does not render in WeChat"],
    )
    .await;
    db.exec(&format!(
        "INSERT INTO wecom_outbox (webhook_name, payload) VALUES ('tutor_group', '{markdown}')"
    ))
    .await;
    assert_eq!(db.status_count("pending").await, 1);
}

// ----- statements -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_fails_the_whole_multi_row_insert() {
    let db = with_parent_group().await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES
             ('parent_group', 'first'), ('parent_group', ''), ('parent_group', 'third')",
        &["text.content is empty"],
    )
    .await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, content)
         SELECT 'parent_group', CASE WHEN i = 500 THEN repeat('x', 3000) ELSE 'ok ' || i END
         FROM generate_series(1, 1000) i",
        &["text.content is 3000 bytes"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_alone_becomes_a_text_message() {
    let db = with_parent_group().await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id)
         VALUES ('parent_group', '💰 Fee Renewal Reminder', 'fee_reminder', 42)",
    )
    .await;
    assert_eq!(
        stored_payload(&db).await,
        json!({"msgtype": "text", "text": {"content": "💰 Fee Renewal Reminder"}})
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox
             WHERE message_type = 'fee_reminder' AND enrollment_id = 42 AND status = 'pending'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn title_and_url_alone_become_a_one_article_news_message() {
    let db = with_parent_group().await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, title, description, url)
         VALUES ('parent_group', 'Fee Renewal - Amy', 'Expires in 3 days', 'https://example.com/pay')",
    )
    .await;
    assert_eq!(
        stored_payload(&db).await,
        json!({"msgtype": "news", "news": {"articles": [{
            "title": "Fee Renewal - Amy",
            "description": "Expires in 3 days",
            "url": "https://example.com/pay",
        }]}})
    );
    db.exec("DELETE FROM wecom_outbox").await;
    refused(
        &db,
        "INSERT INTO wecom_outbox (webhook_name, title) VALUES ('parent_group', 'no link')",
        &["news.articles[0].url is required"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_cannot_preset_worker_owned_columns() {
    let db = with_parent_group().await;
    let given = uuid::Uuid::new_v4();
    db.exec(&format!(
        "INSERT INTO wecom_outbox (id, webhook_name, content, status, attempts, last_errcode, last_error,
                                  robot_name, locked_by, locked_until, created_at, sent_at)
         VALUES ('{given}', 'parent_group', 'hi', 'sent', 7, 93000, 'boom',
                 'parent_group', 'x', now() + interval '1 hour', now() - interval '1 day', now())"
    ))
    .await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM wecom_outbox
             WHERE id <> '{given}' AND status = 'pending' AND attempts = 0
               AND last_errcode IS NULL AND last_error IS NULL AND robot_name IS NULL
               AND locked_by IS NULL AND locked_until IS NULL AND sent_at IS NULL
               AND created_at > now() - interval '1 minute'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_columns_default_even_when_given_as_null() {
    let db = with_parent_group().await;
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'defaults');
         -- AppSheet sends NULL for columns it has no value for.
         INSERT INTO wecom_outbox (webhook_name, content, priority, not_before, max_attempts)
         VALUES ('parent_group', 'nulls', NULL, NULL, NULL);",
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox
             WHERE priority = 0 AND max_attempts = 5 AND expires_at IS NULL
               AND not_before BETWEEN now() - interval '1 minute' AND now() + interval '1 second'"
        )
        .await,
        2
    );
    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content, priority, not_before, max_attempts)
         VALUES ('parent_group', 'chosen', 3, '2030-01-01T09:00:00+08:00', 2)",
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM wecom_outbox WHERE content = 'chosen' AND priority = 3
               AND max_attempts = 2 AND not_before = '2030-01-01T01:00:00Z'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_insert_with_the_same_dedupe_key_is_a_no_op() {
    let db = with_parent_group().await;
    let insert = |content: &str| {
        format!(
            "INSERT INTO wecom_outbox (webhook_name, content, dedupe_key)
             VALUES ('parent_group', '{content}', 'fee:42:2025-03-01')
             ON CONFLICT (dedupe_key) DO NOTHING"
        )
    };
    db.exec(&insert("first")).await;
    db.exec(&insert("second")).await;
    assert_eq!(db.count("SELECT count(*) FROM wecom_outbox").await, 1);
    assert_eq!(
        stored_payload(&db).await,
        json!({"msgtype": "text", "text": {"content": "first"}})
    );
    // Without ON CONFLICT the duplicate is an error, not a second message.
    let err = db
        .exec_err(
            "INSERT INTO wecom_outbox (webhook_name, content, dedupe_key)
             VALUES ('parent_group', 'third', 'fee:42:2025-03-01')",
        )
        .await;
    assert!(err.contains("dedupe_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_wakes_the_workers_once_per_destination_per_statement() {
    let db = with_parent_group().await;
    db.exec(&format!(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url) VALUES ('tutor_group', '{ROBOT_URL}2')"
    ))
    .await;
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener.listen("wecom_outbox").await.expect("LISTEN");

    db.enqueue("parent_group", "reminder", 1000).await;
    let first = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .expect("notification");
    assert_eq!(first.channel(), "wecom_outbox");
    assert_eq!(first.payload(), "parent_group");

    db.exec(
        "INSERT INTO wecom_outbox (webhook_name, content)
         SELECT CASE WHEN i % 2 = 0 THEN 'parent_group' ELSE 'tutor_group' END, 'm ' || i
         FROM generate_series(1, 100) i",
    )
    .await;
    let mut payloads = Vec::new();
    while let Ok(n) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
        payloads.push(n.expect("notification").payload().to_string());
    }
    payloads.sort();
    assert_eq!(
        payloads,
        ["parent_group", "tutor_group"],
        "the 1000-row INSERT sent more than one notification, or the mixed one not one each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_to_a_bad_message_is_refused_too() {
    let db = with_parent_group().await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'good')")
        .await;
    let err = db
        .exec_err(r#"UPDATE wecom_outbox SET payload = '{"msgtype":"text","text":{"content":""}}'"#)
        .await;
    assert!(err.contains("text.content is empty"), "{err}");
    let err = db
        .exec_err("UPDATE wecom_outbox SET webhook_name = 'no_such_group'")
        .await;
    assert!(err.contains("unknown destination"), "{err}");
    assert_eq!(
        stored_payload(&db).await,
        json!({"msgtype": "text", "text": {"content": "good"}})
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE webhook_name = 'parent_group'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_content_changes_the_message_that_will_be_sent() {
    let db = with_parent_group().await;
    db.exec("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', 'typo')")
        .await;
    db.exec("UPDATE wecom_outbox SET content = 'fixed'").await;
    assert_eq!(
        stored_payload(&db).await,
        json!({"msgtype": "text", "text": {"content": "fixed"}})
    );
    let err = db
        .exec_err("UPDATE wecom_outbox SET content = repeat('a', 2049)")
        .await;
    assert!(err.contains("2049 bytes"), "{err}");
    assert_eq!(
        stored_payload(&db).await,
        json!({"msgtype": "text", "text": {"content": "fixed"}})
    );
}
