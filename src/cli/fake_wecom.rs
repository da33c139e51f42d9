//! `fake-wecom`: the WeCom stand-in as a server, for staging and demos.

use crate::standin::{Standin, StandinConfig};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// A fake WeCom for staging: answers like WeCom's robot API, lists what it received.
///
/// Same errcodes, message rules and per-key rate limit (counted on arrival) as WeCom; logs
/// every message with its key redacted; nothing reaches WeCom.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wecom-outbox fake-wecom --listen 127.0.0.1:8080 --limit 20 --window 60s\n\
  then point a robot at http://127.0.0.1:8080/cgi-bin/webhook/send?key=anything\n\
  and set WECOM_ALLOWED_HOSTS=127.0.0.1:8080 for the worker.\n\
  GET / lists received messages; GET /_stats counts; POST /_behaviour?key=K sets failures."
)]
pub struct Args {
    /// Address to listen on (workers accept plain http:// only on loopback addresses).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Messages accepted per key per window (WeCom: 20); 0 = unlimited.
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: usize,
    /// The sliding window the limit applies to, like 60s or 500ms (WeCom: 60s).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = super::parse_duration)]
    window: Duration,
}

/// Serves until Ctrl-C or SIGTERM, then closes its connections.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = StandinConfig {
        limit: args.limit,
        window: args.window,
    };
    let standin = Standin::start(args.listen, config).await?;
    crate::outln!(
        "fake WeCom listening on http://{} (limit {} per {:?}); robot URL: {}",
        standin.local_addr(),
        args.limit,
        args.window,
        standin.url_for("KEY")
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(stop.clone()));
    stop.cancelled().await;
    standin.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
