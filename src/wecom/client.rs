//! The one way this project talks to WeCom: POST a body to a robot URL and say what came back.
//! Used by the worker and by `send-test`, so a manual test exercises the real path.

use super::redact::redact;
use super::robot_url::RobotUrl;
use crate::rules::outcome::Reply;
use serde::Deserialize;
use std::time::Duration;

/// An HTTP client for robot webhooks. Cheap to clone; connections are pooled per host.
#[derive(Debug, Clone)]
pub struct WeComClient {
    http: reqwest::Client,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Answer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

impl WeComClient {
    /// A client whose every request gives up after `timeout`. Redirects are not followed:
    /// a redirect would carry the key to a host nobody allowed.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wecom-outbox/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WeComClient { http, timeout })
    }

    /// The longest a request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POST `body` to the robot at `url`. Never fails: every way it can go wrong is a [`Reply`],
    /// and no reply ever contains the key.
    pub async fn send(&self, url: &RobotUrl, body: &serde_json::Value) -> Reply {
        self.send_within(url, body, self.timeout).await
    }

    /// [`send`](Self::send), giving up after `limit` if that is sooner than the client's own
    /// timeout: the worker never lets a request outlive the lease on its row.
    #[tracing::instrument(name = "wecom.send", skip_all)]
    pub async fn send_within(
        &self,
        url: &RobotUrl,
        body: &serde_json::Value,
        limit: Duration,
    ) -> Reply {
        let request = self
            .http
            .post(url.expose_secret())
            .json(body)
            .timeout(limit.min(self.timeout));
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Reply::NoAnswer(describe_error(e)),
        };
        let status = response.status();
        if !status.is_success() {
            return Reply::HttpStatus(status.as_u16());
        }
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return Reply::NoAnswer(describe_error(e)),
        };
        match serde_json::from_str::<Answer>(&text) {
            Ok(a) => Reply::WeCom {
                errcode: a.errcode,
                errmsg: redact(&a.errmsg).into_owned(),
            },
            Err(_) => Reply::Unreadable(redact(&truncate(&text, 200)).into_owned()),
        }
    }
}

/// The error and its causes on one line, without the URL.
fn describe_error(e: reqwest::Error) -> String {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if timed_out && !text.contains("timed out") {
        text.push_str(" (timed out)");
    }
    redact(&text).into_owned()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
