//! An in-process WeCom group-robot stand-in over real HTTP, for integration tests, the demo and
//! the `fake-wecom` subcommand. It answers like WeCom (same errcodes, body validation, a per-key
//! sliding-window rate limit counted on arrival) and can be told to misbehave per key, so the
//! worker's retry, pause and disable paths can be driven without the real service.
//!
//! It lives in a room of its own, apart from the product's `wecom` module, behind the default-on
//! cargo feature `fake-wecom`: the worker never imports it, and a build without the feature has
//! no HTTP server in it. It checks bodies with the product's own rules
//! ([`crate::wecom::message::validate`]) and shows keys as the product does
//! ([`crate::wecom::redact::redact_key`]), so it cannot drift from what the worker expects.
//!
//! Rooms: [`behaviour`] (how a key misbehaves), `rate_window` (WeCom's sliding window),
//! `state` (what it remembers and counts), `server` (listening and routing), `send` (the send
//! path), `pages` (what people and scripts read: `GET /`, `/_messages`, `/_stats`).

mod behaviour;
mod pages;
mod rate_window;
mod send;
mod server;
mod state;

pub use behaviour::Behaviour;
pub use state::{KeyStats, Received, Stats};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use state::Shared;

/// The path WeCom serves group-robot sends on.
pub const SEND_PATH: &str = "/cgi-bin/webhook/send";

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
        let task = tokio::spawn(server::accept_loop(listener, shared.clone(), stop_rx));
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
        self.shared.set_behaviour(key.to_owned(), behaviour);
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
