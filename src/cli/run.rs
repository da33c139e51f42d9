//! `run`: one worker replica, until SIGTERM or Ctrl-C.

use crate::metrics::{gauges, health::Health, server as metrics_server, Metrics};
use crate::rules::retry::RetryPolicy;
use crate::store::Store;
use crate::wecom::allowed_hosts::AllowedHosts;
use crate::wecom::client::WeComClient;
use crate::worker::{self, WorkerConfig};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Deliver outbox rows: one worker replica (run as many as you like).
///
/// Replicas share every robot's limit through the database. SIGTERM/SIGINT: stop claiming,
/// finish in-flight sends, release the rest, exit 0.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Durations are written like 200ms, 5s, 2m or 1h30m.\n\nExample:\n  DATABASE_URL=postgres://worker@db/school wecom-outbox run --worker-id replica-1"
)]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// Names this replica in logs and in wecom_outbox.locked_by [default: host-pid]
    #[arg(long, value_name = "NAME")]
    worker_id: Option<String>,
    /// First retry delay after a transient failure; doubles per attempt, with jitter.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = super::parse_duration)]
    retry_base_delay: Duration,
    /// Longest retry delay.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = super::parse_duration)]
    retry_max_delay: Duration,
    /// Hosts (host or host:port, comma-separated) robots may be reached at.
    #[arg(long, value_name = "HOSTS", env = "WECOM_ALLOWED_HOSTS", default_value = crate::wecom::allowed_hosts::DEFAULT)]
    allowed_hosts: String,
    /// Robots served at once by this replica.
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: usize,
    /// Rows claimed at a time for one robot (never more than its budget).
    #[arg(long, value_name = "N", default_value_t = 20)]
    batch_size: u32,
    /// How long a claim is held before another replica may take the rows over. A batch
    /// stops before its lease runs out, and no request to WeCom may outlive it.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = super::parse_duration)]
    lease: Duration,
    /// Timeout of one request to WeCom.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_duration)]
    http_timeout: Duration,
    /// On shutdown, how long in-flight sends may take.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = super::parse_duration)]
    shutdown_grace: Duration,
    /// Database connections this replica may open.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_connections: u32,
    /// Serve GET /metrics (Prometheus) and GET /healthz on this IP:PORT, e.g. 127.0.0.1:9464
    /// (port 0: any free port, logged at start). Off when not given.
    #[arg(long, value_name = "IP:PORT", env = "WECOM_METRICS_ADDR", value_parser = crate::metrics::server::parse_addr)]
    metrics_addr: Option<SocketAddr>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let allowed_hosts = AllowedHosts::parse(&args.allowed_hosts).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        args.lease >= MIN_LEASE,
        "--lease {} is too short: a claimed row needs at least {} to be sent and recorded",
        humantime::format_duration(args.lease),
        humantime::format_duration(MIN_LEASE)
    );
    let store = Store::connect_lazy(args.db.url()?, args.max_connections)?;
    // Before the worker starts: a bad address stops `run` here, with nothing claimed.
    let listener = match args.metrics_addr {
        Some(addr) => Some(metrics_server::bind(addr).await?),
        None => None,
    };
    if let Err(e) = store.check_schema().await {
        // A missing schema is fatal; an unreachable database is waited for by the loop.
        if !e.is_transient() {
            return Err(e.into());
        }
        tracing::warn!(error = %e, "database not reachable yet; waiting for it");
    }
    let shutdown = CancellationToken::new();
    let metrics = match listener {
        Some(listener) => serve_metrics(listener, &store, args.db.url()?, &shutdown)?,
        None => Metrics::off(),
    };
    let config = WorkerConfig {
        worker_id: args.worker_id.unwrap_or_else(worker::default_worker_id),
        retry: RetryPolicy {
            base: args.retry_base_delay,
            max: args.retry_max_delay,
        },
        // The lease is what --lease says: a batch stops before it can run out, and no
        // request is allowed to outlive it.
        lease: args.lease,
        batch_size: args.batch_size.max(1),
        concurrency: args.concurrency.max(1),
        shutdown_grace: args.shutdown_grace,
        allowed_hosts,
        metrics,
        ..WorkerConfig::default()
    };
    let client = WeComClient::new(args.http_timeout)?;
    tokio::spawn(super::cancel_on_signal(shutdown.clone()));
    worker::run(store, client, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The shortest lease `run` accepts.
const MIN_LEASE: Duration = Duration::from_secs(1);

/// Starts serving `/metrics` and `/healthz` on `listener` and refreshing the database gauges,
/// both until `shutdown`; returns the metrics the worker records into.
fn serve_metrics(
    listener: tokio::net::TcpListener,
    store: &Store,
    database_url: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Metrics> {
    let addr = listener.local_addr()?;
    let metrics = Metrics::prometheus();
    let health = Health::new(store.clone(), database_url);
    tokio::spawn(metrics_server::serve(
        listener,
        metrics.clone(),
        health,
        shutdown.clone(),
    ));
    tokio::spawn(gauges::refresh_every(
        store.clone(),
        metrics.clone(),
        gauges::DEFAULT_EVERY,
        shutdown.clone(),
    ));
    tracing::info!("serving /metrics and /healthz on http://{addr}");
    Ok(metrics)
}
