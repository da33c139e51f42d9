//! `wecom-outbox fake-wecom` as a person in staging uses it: the real binary, driven over
//! HTTP; what it received is listed at `GET /` and logged, with keys never shown.
//! (Its rate limit and SIGTERM are covered in `tests/cli.rs`.)

mod cli_support;

use cli_support::{eventually, Cli};
use serde_json::{json, Value};
use std::time::Duration;

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_wecom_lists_and_logs_what_it_received_without_keys() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let fake = Cli::new(&["fake-wecom", "--listen", &listen, "--limit", "0"]).spawn();
    let http = reqwest::Client::new();
    eventually("fake-wecom to listen", Duration::from_secs(20), || async {
        fake.assert_running();
        http.get(format!("{base}/")).send().await.is_ok()
    })
    .await;

    let key = "staging-key-4f1c9a";
    let send = |body: Value| {
        let (http, url) = (
            http.clone(),
            format!("{base}/cgi-bin/webhook/send?key={key}"),
        );
        async move {
            let answer: Value = http
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["errcode"].as_i64().expect("an errcode")
        }
    };
    let text = json!({"msgtype": "text", "text": {"content": "续费提醒 hello page"}});
    let news = json!({"msgtype": "news", "news": {"articles": [
        {"title": "Card title", "description": "d", "url": "https://school.example/1"}]}});
    assert_eq!(send(text).await, 0);
    assert_eq!(send(news).await, 0);
    let empty = json!({"msgtype": "text", "text": {"content": ""}});
    assert_eq!(
        send(empty).await,
        44004,
        "an empty text is refused like WeCom does"
    );

    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert!(page.status().is_success());
    let page = page.text().await.unwrap();
    assert!(page.contains("2 accepted"), "{page}");
    assert!(page.contains("续费提醒 hello page"), "{page}");
    assert!(page.contains("Card title"), "{page}");
    assert!(page.contains("stag…"), "keys appear redacted: {page}");
    assert!(!page.contains(key), "GET / shows the key: {page}");

    let (out, _) = fake.stop("TERM", Duration::from_secs(10)).await;
    out.ok();
    out.never_shows(key);
    assert!(
        out.stderr.contains("hello page"),
        "received messages are logged: {out}"
    );
}

#[tokio::test]
async fn fake_wecom_help_explains_its_options_with_defaults_and_an_example() {
    let out = Cli::new(&["fake-wecom", "--help"]).output().await;
    out.ok();
    for needle in [
        "--listen",
        "--limit",
        "--window",
        "[default: 60s]",
        "GET /",
        "Example",
    ] {
        assert!(out.stdout.contains(needle), "no {needle:?} in {out}");
    }
}
