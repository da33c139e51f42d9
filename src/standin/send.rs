//! The send path, `POST /cgi-bin/webhook/send?key=K`: the key's behaviour first, then WeCom's
//! checks in WeCom's order (JSON, message rules, rate limit), answered with WeCom's errcodes
//! and wording.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::behaviour::Behaviour;
use super::pages::{json_answer, not_json_answer, status_answer, summary, Answer};
use super::server::{read_body, DropConnection};
use super::state::Shared;
use crate::wecom::message;
use crate::wecom::redact::redact_key;

/// What a send gets, before it becomes an HTTP answer.
pub(super) enum Reply {
    /// Accepted; carries the message's one-line summary for the log.
    Ok(String),
    /// A WeCom error answer: errcode and errmsg.
    Error(i64, String),
    /// An HTTP error status with a non-JSON body.
    Status(u16),
    /// HTTP 200 with a body that is not JSON.
    NotJson,
    /// No answer at all: the connection is closed.
    Drop,
}

/// Handles one send: a missing key is WeCom's 93000, a body over the limit its 40035.
pub(super) async fn send_route(
    shared: &Shared,
    key: Option<String>,
    req: Request<Incoming>,
) -> Result<Answer, DropConnection> {
    let Some(key) = key else {
        let reply = refuse(shared, None, 93000);
        return finish("-", reply);
    };
    let reply = match read_body(req).await {
        Ok(body) => send(shared, &key, body).await,
        Err(true) => invalid(shared, 40035, "invalid args: the body is too large"),
        Err(false) => other_error(shared, Reply::Drop),
    };
    finish(&redact_key(&key), reply)
}

/// The send path: behaviour first, then JSON, message rules and the rate limit.
async fn send(shared: &Shared, key: &str, body: Bytes) -> Reply {
    let behaviour = shared.lock().next_behaviour(key);
    match behaviour {
        Behaviour::Normal | Behaviour::FailTimes(..) => {}
        Behaviour::Errcode(code) => return refuse(shared, Some(key), code),
        Behaviour::HttpStatus(status) => return other_error(shared, Reply::Status(status)),
        Behaviour::NotJson => return other_error(shared, Reply::NotJson),
        Behaviour::Delay(delay) => tokio::time::sleep(delay).await,
        Behaviour::Drop => return other_error(shared, Reply::Drop),
    }
    let json: Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(_) => return invalid(shared, 40035, "invalid args: the body is not JSON"),
    };
    if let Err(e) = message::validate(&json) {
        return invalid(shared, e.errcode, &e.rule);
    }
    let seen = format!(
        "{}: {}",
        json["msgtype"].as_str().unwrap_or("?"),
        summary(&json)
    );
    if shared.lock().admit(key, json, shared.config) {
        Reply::Ok(seen)
    } else {
        Reply::Error(45009, errmsg(shared, 45009, "api freq out of limit"))
    }
}

fn other_error(shared: &Shared, reply: Reply) -> Reply {
    shared.lock().stats.other_errors += 1;
    reply
}

fn invalid(shared: &Shared, code: i64, rule: &str) -> Reply {
    shared.lock().stats.invalid += 1;
    Reply::Error(code, errmsg(shared, code, rule))
}

/// Counts and builds a WeCom error answer with WeCom's wording for `code`.
pub(super) fn refuse(shared: &Shared, key: Option<&str>, code: i64) -> Reply {
    shared.lock().count_error(key, code);
    Reply::Error(code, errmsg(shared, code, errmsg_text(code)))
}

/// WeCom's errmsg wording for the errcodes the worker acts on.
fn errmsg_text(code: i64) -> &'static str {
    match code {
        -1 => "system busy",
        40035 => "invalid args",
        45009 => "api freq out of limit",
        45033 => "api concurrent out of limit",
        93000 => "invalid webhook url",
        93004 => "webhook disabled",
        93008 => "robot not in group",
        _ => "error",
    }
}

/// An errmsg shaped like WeCom's: the text, a hint and a "more info" link.
fn errmsg(shared: &Shared, code: i64, text: &str) -> String {
    let hint = shared.next_hint();
    format!("{text}, hint: [{hint}], more info at https://open.work.weixin.qq.com/devtool/query?e={code}")
}

/// Logs the outcome (with the key redacted) and turns it into an HTTP answer.
pub(super) fn finish(key: &str, reply: Reply) -> Result<Answer, DropConnection> {
    match reply {
        Reply::Ok(message) => {
            tracing::info!(robot = key, errcode = 0, %message, "fake WeCom send");
            Ok(json_answer(
                StatusCode::OK,
                &json!({"errcode": 0, "errmsg": "ok"}),
            ))
        }
        Reply::Error(code, msg) => {
            tracing::info!(robot = key, errcode = code, "fake WeCom send refused");
            Ok(json_answer(
                StatusCode::OK,
                &json!({"errcode": code, "errmsg": msg}),
            ))
        }
        Reply::Status(status) => {
            tracing::info!(
                robot = key,
                status,
                "fake WeCom send answered with an HTTP error"
            );
            Ok(status_answer(status))
        }
        Reply::NotJson => {
            tracing::info!(
                robot = key,
                "fake WeCom send answered 200 with a non-JSON body"
            );
            Ok(not_json_answer())
        }
        Reply::Drop => {
            tracing::info!(robot = key, "fake WeCom send dropped without an answer");
            Err(DropConnection)
        }
    }
}
