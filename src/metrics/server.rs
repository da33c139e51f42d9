//! The small HTTP server of `run --metrics-addr`: `GET /metrics` (Prometheus' text format)
//! and `GET /healthz` (`ok`, or 503 and why); 404 for any other path. Built on hyper rather
//! than the exporter's own listener, which can serve nothing but the metrics.

use super::health::Health;
use super::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Prometheus' text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// Parses `--metrics-addr`: an IP and a port, such as 127.0.0.1:9464 or 0.0.0.0:9464.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "{s:?} is not an address to listen on: write an IP and a port, such as \
             127.0.0.1:9464 (this host only) or 0.0.0.0:9464 (every interface)"
        )
    })
}

/// Listens on `addr`, or says which flag and address could not be used and why.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: cannot listen there: {e}"))
}

/// What the routes need.
struct Served {
    metrics: Metrics,
    health: Health,
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) {
    let served = Arc::new(Served { metrics, health });
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, served.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn connection(stream: TcpStream, served: Arc<Served>, shutdown: CancellationToken) {
    let service = service_fn(move |req| {
        let served = served.clone();
        async move { Ok::<_, Infallible>(route(&served, &req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "metrics: connection closed");
            }
        }
        _ = shutdown.cancelled() => {}
    }
}

async fn route(served: &Served, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz") {
        return answer(
            StatusCode::NOT_FOUND,
            TEXT_TYPE,
            "not found: try /metrics or /healthz\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT_TYPE,
            "use GET\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, "GET, HEAD".parse().expect("a header value"));
        return response;
    }
    if path == "/metrics" {
        let text = served.metrics.render().unwrap_or_default();
        return answer(StatusCode::OK, METRICS_TYPE, text);
    }
    match served.health.check().await {
        Ok(()) => answer(StatusCode::OK, TEXT_TYPE, "ok\n".into()),
        Err(reason) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT_TYPE,
            format!("{reason}\n"),
        ),
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().expect("a header value"));
    response
}
