//! Drives the WeCom stand-in over real HTTP with reqwest, as the worker will.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wecom_outbox::standin::{Behaviour, Standin, StandinConfig};

const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";

async fn start(limit: usize, window_ms: u64) -> Standin {
    let config = StandinConfig {
        limit,
        window: Duration::from_millis(window_ms),
    };
    Standin::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("stand-in starts")
}

fn text(content: &str) -> Value {
    json!({"msgtype": "text", "text": {"content": content}})
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = client.post(url).json(body).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON answer")
}

async fn get_json(client: &reqwest::Client, standin: &Standin, path: &str) -> Value {
    let url = format!("http://{}{path}", standin.local_addr());
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn set_over_http(client: &reqwest::Client, standin: &Standin, body: Value) -> u16 {
    let url = format!("http://{}/_behaviour?key={KEY}", standin.local_addr());
    let response = client.post(url).json(&body).send().await.unwrap();
    response.status().as_u16()
}

fn errcode(answer: &Value) -> i64 {
    answer["errcode"].as_i64().expect("errcode")
}

#[tokio::test]
async fn accepts_a_text_message() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        url.ends_with(&format!("/cgi-bin/webhook/send?key={KEY}")),
        "{url}"
    );

    let response = client.post(&url).json(&text("hello")).send().await.unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"errcode": 0, "errmsg": "ok"}));

    let received = standin.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].key, KEY);
    assert_eq!(received[0].body, text("hello"));
    assert_eq!(standin.stats().accepted, 1);
}

#[tokio::test]
async fn enforces_the_sliding_window_on_arrival() {
    let standin = start(3, 500).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);
    let first = Instant::now();
    for i in 0..3 {
        assert_eq!(
            errcode(&post(&client, &url, &text(&format!("m{i}"))).await),
            0
        );
    }
    let limited = post(&client, &url, &text("m3")).await;
    assert_eq!(errcode(&limited), 45009);
    assert!(limited["errmsg"]
        .as_str()
        .unwrap()
        .starts_with("api freq out of limit"));
    // Another key has its own window.
    assert_eq!(
        errcode(&post(&client, &standin.url_for("other"), &text("x")).await),
        0
    );

    tokio::time::sleep_until((first + Duration::from_millis(550)).into()).await;
    assert_eq!(errcode(&post(&client, &url, &text("m4")).await), 0);

    let stats = standin.stats();
    assert_eq!((stats.accepted, stats.rejected_45009), (5, 1));
    assert_eq!(stats.per_key[KEY].accepted, 4);
    assert_eq!(stats.per_key[KEY].rejected_45009, 1);
    let bodies: Vec<_> = standin.received().iter().map(|r| r.body.clone()).collect();
    assert!(
        !bodies.contains(&text("m3")),
        "a refused message is not recorded"
    );
}

#[tokio::test]
async fn errcode_behaviour_and_bad_urls_answer_93000() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    standin.set_behaviour(KEY, Behaviour::Errcode(93000));
    let answer = post(&client, &standin.url_for(KEY), &text("hi")).await;
    assert_eq!(errcode(&answer), 93000);
    let errmsg = answer["errmsg"].as_str().unwrap();
    assert!(
        errmsg.starts_with("invalid webhook url, hint: ["),
        "{errmsg}"
    );
    assert_eq!(
        errcode(&post(&client, &standin.url_for("other"), &text("hi")).await),
        0
    );

    let base = format!("http://{}", standin.local_addr());
    let no_key = format!("{base}/cgi-bin/webhook/send");
    assert_eq!(errcode(&post(&client, &no_key, &text("hi")).await), 93000);
    let wrong_path = format!("{base}/cgi-bin/webhook/sendx?key={KEY}");
    assert_eq!(
        errcode(&post(&client, &wrong_path, &text("hi")).await),
        93000
    );
    assert_eq!(standin.stats().other_errors, 3);
}

#[tokio::test]
async fn http_status_behaviour_answers_a_non_json_502() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    standin.set_behaviour(KEY, Behaviour::HttpStatus(502));
    let response = client
        .post(standin.url_for(KEY))
        .json(&text("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    assert!(standin.received().is_empty());
}

#[tokio::test]
async fn delay_behaviour_answers_late_but_normally() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    standin.set_behaviour(KEY, Behaviour::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let answer = post(&client, &standin.url_for(KEY), &text("slow")).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(errcode(&answer), 0);
    assert_eq!(standin.received().len(), 1);
}

#[tokio::test]
async fn drop_behaviour_closes_the_connection_without_an_answer() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);
    assert_eq!(
        errcode(&post(&client, &url, &text("warm up keep-alive")).await),
        0
    );
    standin.set_behaviour(KEY, Behaviour::Drop);
    let result = client.post(&url).json(&text("lost")).send().await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    standin.set_behaviour(KEY, Behaviour::Normal);
    assert_eq!(errcode(&post(&client, &url, &text("back")).await), 0);
    assert_eq!(standin.received().len(), 2);
}

#[tokio::test]
async fn fail_times_fails_k_sends_then_accepts() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);
    standin.set_behaviour(KEY, Behaviour::FailTimes(2, -1));
    assert_eq!(errcode(&post(&client, &url, &text("a")).await), -1);
    assert_eq!(errcode(&post(&client, &url, &text("b")).await), -1);
    assert_eq!(errcode(&post(&client, &url, &text("c")).await), 0);
    assert_eq!(errcode(&post(&client, &url, &text("d")).await), 0);
    let stats = standin.stats();
    assert_eq!((stats.accepted, stats.other_errors), (2, 2));
}

#[tokio::test]
async fn invalid_bodies_get_wecoms_errcodes() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);
    let unknown = json!({"msgtype": "video", "video": {}});
    assert_eq!(errcode(&post(&client, &url, &unknown).await), 40008);

    let too_long = post(&client, &url, &text(&"a".repeat(2049))).await;
    assert_eq!(errcode(&too_long), 45002);
    let errmsg = too_long["errmsg"].as_str().unwrap();
    assert!(
        errmsg.contains("2049 bytes") && errmsg.contains("2048"),
        "{errmsg}"
    );

    let not_json = client.post(&url).body("not json").send().await.unwrap();
    let answer: Value = not_json.json().await.unwrap();
    assert_eq!(errcode(&answer), 40035);

    let stats = standin.stats();
    assert_eq!((stats.invalid, stats.accepted), (3, 0));
    assert!(standin.received().is_empty());
}

#[tokio::test]
async fn stats_and_messages_endpoints() {
    let standin = start(1, 60_000).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);
    let news = json!({"msgtype": "news", "news": {"articles": [
        {"title": "续费提醒", "url": "https://example.com/r"}]}});
    assert_eq!(errcode(&post(&client, &url, &news).await), 0);
    assert_eq!(errcode(&post(&client, &url, &text("second")).await), 45009);

    let stats = get_json(&client, &standin, "/_stats").await;
    assert_eq!(stats["accepted"], 1);
    assert_eq!(stats["rejected_45009"], 1);
    assert_eq!(stats["per_key"]["693a…"]["accepted"], 1);
    assert!(
        !stats.to_string().contains("693a91"),
        "/_stats shows a key: {stats}"
    );

    let messages = get_json(&client, &standin, "/_messages").await;
    let list = messages.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["key"], "693a…");
    assert_eq!(list[0]["body"], news);
    let at = list[0]["at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");

    let page_url = format!("http://{}/", standin.local_addr());
    let page = client
        .get(page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("续费提醒") && page.contains("693a…"),
        "{page}"
    );
    assert!(!page.contains(KEY) && !messages.to_string().contains(KEY));
}

#[tokio::test]
async fn behaviour_endpoint_sets_behaviours_over_http() {
    let standin = start(20, 60_000).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);

    assert_eq!(
        set_over_http(&client, &standin, json!({"errcode": 93000})).await,
        200
    );
    assert_eq!(errcode(&post(&client, &url, &text("x")).await), 93000);

    assert_eq!(
        set_over_http(&client, &standin, json!({"fail_times": 1, "errcode": -1})).await,
        200
    );
    assert_eq!(errcode(&post(&client, &url, &text("x")).await), -1);
    assert_eq!(errcode(&post(&client, &url, &text("x")).await), 0);

    assert_eq!(
        set_over_http(&client, &standin, json!({"http_status": 502})).await,
        200
    );
    let response = client.post(&url).json(&text("x")).send().await.unwrap();
    assert_eq!(response.status(), 502);

    assert_eq!(
        set_over_http(&client, &standin, json!({"delay_ms": 200})).await,
        200
    );
    let started = Instant::now();
    assert_eq!(errcode(&post(&client, &url, &text("x")).await), 0);
    assert!(started.elapsed() >= Duration::from_millis(200));

    assert_eq!(
        set_over_http(&client, &standin, json!({"drop": true})).await,
        200
    );
    assert!(client.post(&url).json(&text("x")).send().await.is_err());

    assert_eq!(
        set_over_http(&client, &standin, json!({"normal": true})).await,
        200
    );
    assert_eq!(errcode(&post(&client, &url, &text("x")).await), 0);

    assert_eq!(
        set_over_http(&client, &standin, json!({"nonsense": 1})).await,
        400
    );
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let standin = start(20, 60_000).await;
    let url = standin.url_for(KEY);
    standin.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.post(&url).json(&text("x")).send().await.is_err());
}

/// Collects log output so a test can check that no full key is ever logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime, so the thread-local subscriber also sees the server's tasks.
#[tokio::test(flavor = "current_thread")]
async fn logs_never_contain_a_full_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let standin = start(1, 60_000).await;
    let client = reqwest::Client::new();
    let url = standin.url_for(KEY);
    post(&client, &url, &text("a")).await;
    post(&client, &url, &text("b")).await;
    post(&client, &url, &json!({"msgtype": "nope"})).await;
    set_over_http(&client, &standin, json!({"drop": true})).await;
    let _ = client.post(&url).json(&text("c")).send().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("693a…"), "{logs}");
    assert!(!logs.contains(KEY) && !logs.contains("693a91"), "{logs}");
}
