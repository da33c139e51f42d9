//! Listening and routing: built directly on hyper so that [`Behaviour::Drop`] can close a
//! connection without answering.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::behaviour::{Behaviour, EXPECTED_SHAPES};
use super::pages::{self, json_answer, Answer};
use super::send::{self, refuse};
use super::state::Shared;
use super::SEND_PATH;
use crate::wecom::redact::redact_key;

/// Largest request body read; larger ones are refused as invalid args.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Accepts connections until the stand-in is told to stop.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let stopped = until_stopped(stop.clone());
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fake WeCom: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Resolves once the stand-in is told to stop (or its handle is gone).
async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let service = service_fn(move |req| route(shared.clone(), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "fake WeCom: connection closed");
            }
        }
        _ = until_stopped(stop) => {}
    }
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
pub(super) struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose by the fake WeCom")
    }
}

impl std::error::Error for DropConnection {}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Answer, DropConnection> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let key = query_param(req.uri().query(), "key").filter(|k| !k.is_empty());
    let answer = match (method.clone(), path.as_str()) {
        (Method::POST, SEND_PATH) => return send::send_route(&shared, key, req).await,
        (Method::GET, "/_stats") => pages::stats_answer(&shared),
        (Method::GET, "/_messages") => pages::messages_answer(&shared),
        (Method::GET, "/") => pages::page_answer(&shared),
        (Method::POST, "/_behaviour") => behaviour_answer(&shared, key, req).await,
        _ => {
            let reply = refuse(&shared, None, 93000);
            return send::finish("-", reply);
        }
    };
    tracing::info!(%method, %path, status = answer.status().as_u16(), "fake WeCom request");
    Ok(answer)
}

/// Reads the request body; `Err(true)` when it is over the limit, `Err(false)` on I/O error.
pub(super) async fn read_body(req: Request<Incoming>) -> Result<Bytes, bool> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(e.downcast_ref::<LengthLimitError>().is_some()),
    }
}

/// `POST /_behaviour?key=K`: sets a behaviour over HTTP, for the CLI's `fake-wecom`.
async fn behaviour_answer(shared: &Shared, key: Option<String>, req: Request<Incoming>) -> Answer {
    let Some(key) = key else {
        return json_answer(StatusCode::BAD_REQUEST, &json!({"error": "missing ?key="}));
    };
    let body = read_body(req).await.unwrap_or_default();
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let Some(behaviour) = parsed.as_ref().and_then(Behaviour::from_json) else {
        return json_answer(StatusCode::BAD_REQUEST, &json!({"error": EXPECTED_SHAPES}));
    };
    tracing::info!(robot = %redact_key(&key), ?behaviour, "fake WeCom behaviour set");
    shared.set_behaviour(key, behaviour);
    json_answer(StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}))
}

/// The first value of `name` in a query string, decoded as browsers and WeCom's clients encode
/// it (`application/x-www-form-urlencoded`: `%XX` escapes, `+` for a space).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_decodes_the_first_value_of_its_name() {
        let param = |q| query_param(Some(q), "key");
        assert_eq!(param("a=1&key=ab%2Dc"), Some("ab-c".into()));
        assert_eq!(param("key=first&key=second"), Some("first".into()));
        assert_eq!(param("key"), Some(String::new()));
        assert_eq!(param("key=100%"), Some("100%".into()));
        assert_eq!(param("a=1"), None);
        assert_eq!(query_param(None, "key"), None);
    }
}
