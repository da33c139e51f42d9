//! What the stand-in writes back, and the pages people and scripts read: `GET /` (the last
//! messages as text), `GET /_messages` and `GET /_stats` (JSON); keys always redacted.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::state::Shared;
use crate::wecom::redact::redact_key;

/// How many messages the `GET /` page shows.
const PAGE_MESSAGES: usize = 50;

/// Every answer the stand-in gives: a whole body at once.
pub(super) type Answer = Response<Full<Bytes>>;

/// A JSON answer.
pub(super) fn json_answer(status: StatusCode, value: &impl Serialize) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_default();
    answer(status, "application/json", body)
}

/// An HTTP error status with an HTML body, like a gateway in front of WeCom would give.
pub(super) fn status_answer(status: u16) -> Answer {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!("<html><body><h1>{status}</h1></body></html>");
    answer(status, "text/html", body.into_bytes())
}

/// HTTP 200 with an HTML page instead of WeCom's JSON, as a proxy or captive portal in the
/// way would answer.
pub(super) fn not_json_answer() -> Answer {
    let body = "<html><body>Service temporarily unavailable, please try later</body></html>";
    answer(StatusCode::OK, "text/html", body.as_bytes().to_vec())
}

fn answer(status: StatusCode, content_type: &str, body: Vec<u8>) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// `GET /_stats`: the counters, with keys redacted (see [`super::Stats::redacted`]).
pub(super) fn stats_answer(shared: &Shared) -> Answer {
    json_answer(StatusCode::OK, &shared.lock().stats.redacted())
}

/// `GET /_messages`: accepted messages with redacted keys, for scripts and people.
pub(super) fn messages_answer(shared: &Shared) -> Answer {
    let inner = shared.lock();
    let list: Vec<Value> = inner
        .received
        .iter()
        .map(|r| json!({"key": redact_key(&r.key), "at": r.at_utc.to_rfc3339(), "body": r.body}))
        .collect();
    json_answer(StatusCode::OK, &list)
}

/// `GET /`: the last messages as plain text, newest first, for a person to look at.
pub(super) fn page_answer(shared: &Shared) -> Answer {
    let inner = shared.lock();
    let mut page = format!(
        "fake WeCom: {} accepted, {} refused with 45009, {} invalid, {} other errors\n\n",
        inner.stats.accepted,
        inner.stats.rejected_45009,
        inner.stats.invalid,
        inner.stats.other_errors
    );
    for r in inner.received.iter().rev().take(PAGE_MESSAGES) {
        let msgtype = r.body["msgtype"].as_str().unwrap_or("?");
        let at = r.at_utc.format("%Y-%m-%d %H:%M:%S");
        page.push_str(&format!(
            "{at}Z  {}  {msgtype}  {}\n",
            redact_key(&r.key),
            summary(&r.body)
        ));
    }
    answer(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        page.into_bytes(),
    )
}

/// A one-line summary of a message: its text, or its news titles.
pub(super) fn summary(body: &Value) -> String {
    let msgtype = body["msgtype"].as_str().unwrap_or_default();
    let text = match msgtype {
        "news" => body["news"]["articles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["title"].as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_default(),
        _ => body[msgtype]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    text.replace('\n', " / ").chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_shows_text_and_news_titles() {
        let text = json!({"msgtype": "text", "text": {"content": "a\nb"}});
        assert_eq!(summary(&text), "a / b");
        let news =
            json!({"msgtype": "news", "news": {"articles": [{"title": "x"}, {"title": "y"}]}});
        assert_eq!(summary(&news), "x | y");
    }
}
