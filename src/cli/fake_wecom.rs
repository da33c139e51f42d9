//! `fake-wecom`: the WeCom stand-in as a server, for staging and demos.

use crate::wecom::standin::{Standin, StandinConfig};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Answer like WeCom's robot API (limits, error codes) without reaching WeCom.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wecom-outbox fake-wecom --listen 127.0.0.1:8080 --limit 20 --window 60s\n\
  then point a robot at http://127.0.0.1:8080/cgi-bin/webhook/send?key=anything\n\
  and set WECOM_ALLOWED_HOSTS=127.0.0.1:8080 for the worker.\n\
  GET / lists received messages; GET /_stats counts; POST /_behaviour?key=K sets failures."
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Messages accepted per key per window (WeCom: 20); 0 = unlimited.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// The sliding window (WeCom: 60s).
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    window: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = StandinConfig {
        limit: args.limit,
        window: args.window,
    };
    let standin = Standin::start(args.listen, config).await?;
    println!(
        "fake WeCom listening on http://{} (limit {} per {:?}); robot URL: {}",
        standin.local_addr(),
        args.limit,
        args.window,
        standin.url_for("KEY")
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(stop.clone()));
    stop.cancelled().await;
    standin.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
