//! An in-process WeCom group-robot stand-in over real HTTP, for integration tests and the
//! `fake-wecom` subcommand. It answers like WeCom (same errcodes, body validation, a per-key
//! sliding-window rate limit counted on arrival) and can be told to misbehave per key, so the
//! worker's retry, pause and disable paths can be driven without the real service.
//!
//! Built directly on hyper so that [`Behaviour::Drop`] can close a connection without answering.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::message;
use super::redact::percent_decode;
use super::redact::redact_key;

/// The path WeCom serves group-robot sends on.
pub const SEND_PATH: &str = "/cgi-bin/webhook/send";
/// Largest request body read; larger ones are refused as invalid args.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How many messages the `GET /` page shows.
const PAGE_MESSAGES: usize = 50;

/// The rate limit the stand-in enforces per key, like WeCom's 20 messages per minute per robot.
/// Tests shrink it (e.g. 3 per 500 ms) to exercise 45009 quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandinConfig {
    /// Accepted messages allowed per key within any `window`; 0 means unlimited.
    pub limit: usize,
    /// The sliding window the limit applies to.
    pub window: Duration,
}

impl Default for StandinConfig {
    /// WeCom's documented limit: 20 messages per 60 s per robot.
    fn default() -> Self {
        StandinConfig {
            limit: 20,
            window: Duration::from_secs(60),
        }
    }
}

/// How the stand-in treats the next sends to one key, so tests can reproduce WeCom's failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Validate, rate-limit and accept like WeCom.
    Normal,
    /// Answer HTTP 200 `{"errcode":n,"errmsg":…}` (e.g. 93000 robot removed, -1 busy).
    Errcode(i64),
    /// Answer this HTTP status with a non-JSON body, like a gateway failure (e.g. 502).
    HttpStatus(u16),
    /// Wait, then handle the request as if it arrived only now (a slow path to WeCom).
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer errcode `n` (second field) for the next `k` (first field) sends, then `Normal`.
    FailTimes(u32, i64),
}

impl Behaviour {
    /// Reads the JSON the `POST /_behaviour` endpoint takes: `{"normal":true}`,
    /// `{"errcode":93000}`, `{"http_status":502}`, `{"delay_ms":3000}`, `{"drop":true}` or
    /// `{"fail_times":3,"errcode":-1}` (errcode defaults to -1). `None` if it is none of these.
    pub fn from_json(v: &Value) -> Option<Behaviour> {
        let o = v.as_object()?;
        let flag = |k: &str| o.get(k) == Some(&Value::Bool(true));
        let errcode = o.get("errcode").and_then(Value::as_i64);
        if flag("normal") {
            Some(Behaviour::Normal)
        } else if flag("drop") {
            Some(Behaviour::Drop)
        } else if let Some(k) = o.get("fail_times").and_then(Value::as_u64) {
            Some(Behaviour::FailTimes(
                u32::try_from(k).ok()?,
                errcode.unwrap_or(-1),
            ))
        } else if let Some(n) = errcode {
            Some(Behaviour::Errcode(n))
        } else if let Some(s) = o.get("http_status").and_then(Value::as_u64) {
            Some(Behaviour::HttpStatus(u16::try_from(s).ok()?))
        } else {
            let ms = o.get("delay_ms").and_then(Value::as_u64)?;
            Some(Behaviour::Delay(Duration::from_millis(ms)))
        }
    }
}

/// One message the stand-in accepted, so tests can check what was delivered and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The robot key it was sent to (full: this is the stand-in's own test key).
    pub key: String,
    /// Arrival time on the monotonic clock, for measuring rates and gaps.
    pub at: Instant,
    /// Arrival time on the wall clock, for display.
    pub at_utc: DateTime<Utc>,
    /// The JSON body as received.
    pub body: Value,
}

/// Counters over all requests to the send path, so tests can assert that WeCom "never had to
/// say 45009" and nothing invalid was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Messages answered errcode 0.
    pub accepted: u64,
    /// Sends refused with 45009 (over the rate limit, or a 45009 behaviour).
    pub rejected_45009: u64,
    /// Sends refused because the body was not JSON or broke a message rule.
    pub invalid: u64,
    /// Every other failure: bad URL (93000), errcode behaviours, HTTP errors, drops.
    pub other_errors: u64,
    /// Accepted and 45009 counts per key: full keys in [`Standin::stats`] (the test that holds
    /// the stand-in knows its keys), redacted in `GET /_stats` (see [`Stats::redacted`]).
    pub per_key: BTreeMap<String, KeyStats>,
}

impl Stats {
    /// The counters as `GET /_stats` shows them: keys as [`redact_key`] shows them (the page
    /// is for people and scripts, who must not learn a key from it). Keys that look alike
    /// there are counted together.
    pub fn redacted(&self) -> Stats {
        let mut per_key: BTreeMap<String, KeyStats> = BTreeMap::new();
        for (key, counts) in &self.per_key {
            let shown = per_key.entry(redact_key(key)).or_default();
            shown.accepted += counts.accepted;
            shown.rejected_45009 += counts.rejected_45009;
        }
        Stats {
            per_key,
            ..self.clone()
        }
    }
}

/// Per-key counters within [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeyStats {
    /// Messages to this key answered errcode 0.
    pub accepted: u64,
    /// Sends to this key refused with 45009.
    pub rejected_45009: u64,
}

/// A running stand-in. It stops accepting when [`Standin::shutdown`] is called or it is dropped;
/// its methods take `&self`, so it can be shared behind an `Arc`.
pub struct Standin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Standin {
    /// Binds `addr` (port 0 picks a free port) and starts serving in the background.
    pub async fn start(addr: SocketAddr, config: StandinConfig) -> std::io::Result<Standin> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        tracing::info!(%addr, limit = config.limit, window = ?config.window, "fake WeCom listening");
        Ok(Standin {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The address actually bound, to learn the port when started on port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook URL for a robot key, as WeCom would hand it out, pointing at this stand-in.
    pub fn url_for(&self, key: &str) -> String {
        let host = if self.addr.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.addr.port())
        } else {
            self.addr
        };
        format!("http://{host}{SEND_PATH}?key={key}")
    }

    /// Sets how the next sends to `key` are treated (see [`Behaviour`]).
    pub fn set_behaviour(&self, key: &str, behaviour: Behaviour) {
        self.shared
            .lock()
            .behaviours
            .insert(key.to_owned(), behaviour);
    }

    /// The accepted messages, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Stops accepting and closes open connections, waiting for the listener to close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// State shared by all connections.
struct Shared {
    config: StandinConfig,
    inner: Mutex<Inner>,
    hints: AtomicU64,
}

#[derive(Default)]
struct Inner {
    behaviours: HashMap<String, Behaviour>,
    arrivals: HashMap<String, VecDeque<Instant>>,
    received: Vec<Received>,
    stats: Stats,
}

impl Shared {
    fn new(config: StandinConfig) -> Self {
        Shared {
            config,
            inner: Mutex::new(Inner::default()),
            hints: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A WeCom-like `hint: […]` so errmsg looks like the real one.
    fn next_hint(&self) -> String {
        let n = self.hints.fetch_add(1, Ordering::Relaxed);
        format!("{}_{n:06}", Utc::now().timestamp())
    }
}

impl Inner {
    /// The behaviour for this request, consuming one failure of a `FailTimes`.
    fn next_behaviour(&mut self, key: &str) -> Behaviour {
        let Some(b) = self.behaviours.get_mut(key) else {
            return Behaviour::Normal;
        };
        let Behaviour::FailTimes(left, code) = *b else {
            return b.clone();
        };
        *b = match left {
            0 | 1 => Behaviour::Normal,
            _ => Behaviour::FailTimes(left - 1, code),
        };
        if left == 0 {
            Behaviour::Normal
        } else {
            Behaviour::Errcode(code)
        }
    }

    /// Counts an error answer: 45009 on its own counters, the rest as other errors.
    fn count_error(&mut self, key: Option<&str>, code: i64) {
        if code != 45009 {
            self.stats.other_errors += 1;
            return;
        }
        self.stats.rejected_45009 += 1;
        if let Some(key) = key {
            self.stats
                .per_key
                .entry(key.to_owned())
                .or_default()
                .rejected_45009 += 1;
        }
    }

    /// Applies the rate limit on arrival; records and counts the message if it is admitted.
    fn admit(&mut self, key: &str, body: Value, config: StandinConfig) -> bool {
        let now = Instant::now();
        let arrivals = self.arrivals.entry(key.to_owned()).or_default();
        if !window_admits(arrivals, now, config) {
            self.count_error(Some(key), 45009);
            return false;
        }
        self.stats.accepted += 1;
        self.stats
            .per_key
            .entry(key.to_owned())
            .or_default()
            .accepted += 1;
        let at_utc = Utc::now();
        let key = key.to_owned();
        self.received.push(Received {
            key,
            at: now,
            at_utc,
            body,
        });
        true
    }
}

/// The sliding window, counted on arrival like WeCom: an arrival is admitted when fewer than
/// `limit` admitted arrivals lie within the last `window` (strictly `now - t < window`), and
/// only admitted arrivals are remembered.
fn window_admits(arrivals: &mut VecDeque<Instant>, now: Instant, config: StandinConfig) -> bool {
    if config.limit == 0 {
        return true;
    }
    while arrivals
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= config.window)
    {
        arrivals.pop_front();
    }
    if arrivals.len() >= config.limit {
        return false;
    }
    arrivals.push_back(now);
    true
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
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
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose by the fake WeCom")
    }
}

impl std::error::Error for DropConnection {}

type Answer = Response<Full<Bytes>>;

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Answer, DropConnection> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let key = query_param(req.uri().query(), "key").filter(|k| !k.is_empty());
    let answer = match (method.clone(), path.as_str()) {
        (Method::POST, SEND_PATH) => return send_route(&shared, key, req).await,
        (Method::GET, "/_stats") => json_answer(StatusCode::OK, &shared.lock().stats.redacted()),
        (Method::GET, "/_messages") => messages_answer(&shared),
        (Method::GET, "/") => page_answer(&shared),
        (Method::POST, "/_behaviour") => behaviour_answer(&shared, key, req).await,
        _ => {
            let reply = refuse(&shared, None, 93000);
            return finish("-", reply);
        }
    };
    tracing::info!(%method, %path, status = answer.status().as_u16(), "fake WeCom request");
    Ok(answer)
}

/// What a send gets, before it becomes an HTTP answer.
enum Reply {
    /// Accepted; carries the message's one-line summary for the log.
    Ok(String),
    Error(i64, String),
    Status(u16),
    Drop,
}

async fn send_route(
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

/// Reads the request body; `Err(true)` when it is over the limit, `Err(false)` on I/O error.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, bool> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(e.downcast_ref::<LengthLimitError>().is_some()),
    }
}

/// The send path: behaviour first, then JSON, message rules and the rate limit.
async fn send(shared: &Shared, key: &str, body: Bytes) -> Reply {
    let behaviour = shared.lock().next_behaviour(key);
    match behaviour {
        Behaviour::Normal | Behaviour::FailTimes(..) => {}
        Behaviour::Errcode(code) => return refuse(shared, Some(key), code),
        Behaviour::HttpStatus(status) => return other_error(shared, Reply::Status(status)),
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
fn refuse(shared: &Shared, key: Option<&str>, code: i64) -> Reply {
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
fn finish(key: &str, reply: Reply) -> Result<Answer, DropConnection> {
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
        Reply::Drop => {
            tracing::info!(robot = key, "fake WeCom send dropped without an answer");
            Err(DropConnection)
        }
    }
}

fn json_answer(status: StatusCode, value: &impl Serialize) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_default();
    answer(status, "application/json", body)
}

fn status_answer(status: u16) -> Answer {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!("<html><body><h1>{status}</h1></body></html>");
    answer(status, "text/html", body.into_bytes())
}

fn answer(status: StatusCode, content_type: &str, body: Vec<u8>) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// `GET /_messages`: accepted messages with redacted keys, for scripts and people.
fn messages_answer(shared: &Shared) -> Answer {
    let inner = shared.lock();
    let list: Vec<Value> = inner
        .received
        .iter()
        .map(|r| json!({"key": redact_key(&r.key), "at": r.at_utc.to_rfc3339(), "body": r.body}))
        .collect();
    json_answer(StatusCode::OK, &list)
}

/// `GET /`: the last messages as plain text, newest first, for a person to look at.
fn page_answer(shared: &Shared) -> Answer {
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
fn summary(body: &Value) -> String {
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

/// `POST /_behaviour?key=K`: sets a behaviour over HTTP, for the CLI's `fake-wecom`.
async fn behaviour_answer(shared: &Shared, key: Option<String>, req: Request<Incoming>) -> Answer {
    let Some(key) = key else {
        return json_answer(StatusCode::BAD_REQUEST, &json!({"error": "missing ?key="}));
    };
    let body = read_body(req).await.unwrap_or_default();
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let Some(behaviour) = parsed.as_ref().and_then(Behaviour::from_json) else {
        let error = "expected one of {\"normal\":true}, {\"errcode\":N}, {\"http_status\":N}, \
                     {\"delay_ms\":N}, {\"drop\":true}, {\"fail_times\":K,\"errcode\":N}";
        return json_answer(StatusCode::BAD_REQUEST, &json!({"error": error}));
    };
    tracing::info!(robot = %redact_key(&key), ?behaviour, "fake WeCom behaviour set");
    shared.lock().behaviours.insert(key, behaviour);
    json_answer(StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}))
}

/// The first value of `name` in a query string, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(limit: usize, ms: u64) -> StandinConfig {
        StandinConfig {
            limit,
            window: Duration::from_millis(ms),
        }
    }

    #[test]
    fn window_counts_admitted_arrivals_strictly_within_the_window() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let cfg = config(2, 1000);
        let mut q = VecDeque::new();
        assert!(window_admits(&mut q, at(0), cfg));
        assert!(window_admits(&mut q, at(10), cfg));
        assert!(
            !window_admits(&mut q, at(999), cfg),
            "t0 is still within the window"
        );
        assert!(
            window_admits(&mut q, at(1000), cfg),
            "now - t0 == window: t0 no longer counts"
        );
        assert!(!window_admits(&mut q, at(1009), cfg));
        assert!(window_admits(&mut q, at(1010), cfg));
        assert_eq!(q.len(), 2, "refused arrivals are not remembered");
    }

    #[test]
    fn zero_limit_is_unlimited() {
        let mut q = VecDeque::new();
        let now = Instant::now();
        assert!((0..1000).all(|_| window_admits(&mut q, now, config(0, 1000))));
    }

    #[test]
    fn fail_times_counts_down_to_normal() {
        let mut inner = Inner::default();
        inner
            .behaviours
            .insert("k".into(), Behaviour::FailTimes(2, -1));
        assert_eq!(inner.next_behaviour("k"), Behaviour::Errcode(-1));
        assert_eq!(inner.next_behaviour("k"), Behaviour::Errcode(-1));
        assert_eq!(inner.next_behaviour("k"), Behaviour::Normal);
        inner
            .behaviours
            .insert("z".into(), Behaviour::FailTimes(0, -1));
        assert_eq!(inner.next_behaviour("z"), Behaviour::Normal);
    }

    #[test]
    fn behaviour_from_json() {
        let b = |v: Value| Behaviour::from_json(&v);
        assert_eq!(b(json!({"normal": true})), Some(Behaviour::Normal));
        assert_eq!(
            b(json!({"errcode": 93000})),
            Some(Behaviour::Errcode(93000))
        );
        assert_eq!(
            b(json!({"http_status": 502})),
            Some(Behaviour::HttpStatus(502))
        );
        let delay = Behaviour::Delay(Duration::from_millis(3000));
        assert_eq!(b(json!({"delay_ms": 3000})), Some(delay));
        assert_eq!(b(json!({"drop": true})), Some(Behaviour::Drop));
        let fail = Behaviour::FailTimes(3, -1);
        assert_eq!(b(json!({"fail_times": 3, "errcode": -1})), Some(fail));
        assert_eq!(b(json!({"http_status": 70000})), None);
        assert_eq!(b(json!({"other": 1})), None);
    }

    #[test]
    fn query_param_decodes() {
        assert_eq!(
            query_param(Some("a=1&key=ab%2Dc"), "key"),
            Some("ab-c".into())
        );
        assert_eq!(query_param(Some("key"), "key"), Some(String::new()));
        assert_eq!(query_param(Some("a=1"), "key"), None);
        assert_eq!(query_param(None, "key"), None);
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn summary_shows_text_and_news_titles() {
        let text = json!({"msgtype": "text", "text": {"content": "a\nb"}});
        assert_eq!(summary(&text), "a / b");
        let news =
            json!({"msgtype": "news", "news": {"articles": [{"title": "x"}, {"title": "y"}]}});
        assert_eq!(summary(&news), "x | y");
    }
}
