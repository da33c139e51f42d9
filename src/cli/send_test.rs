//! `send-test`: the seed's Step 3 — one message now, through the worker's own client and
//! within the robot's limit, with WeCom's answer shown plainly.

use crate::rules::outcome::{classify, Outcome};
use crate::store::Store;
use crate::wecom::allowed_hosts::AllowedHosts;
use crate::wecom::client::WeComClient;
use std::process::ExitCode;
use std::time::Duration;

/// Send one text message to a robot (or to the first robot of a pool) right now.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wecom-outbox send-test parent_group\n  wecom-outbox send-test parent_group_2 'Hello from the office'"
)]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// The robot's webhook_name, or a pool_name.
    webhook_name: String,
    /// The text to send.
    #[arg(default_value = "✅ Test from wecom-outbox - Fee reminder bot ready!")]
    text: String,
    /// Hosts (host or host:port, comma-separated) robots may be reached at.
    #[arg(long, value_name = "HOSTS", env = "WECOM_ALLOWED_HOSTS", default_value = crate::wecom::allowed_hosts::DEFAULT)]
    allowed_hosts: String,
    /// Timeout of the request.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_duration)]
    http_timeout: Duration,
}

/// Checks the text first, so a message WeCom would refuse uses no rate slot, sends nothing and
/// logs nothing.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({"msgtype": "text", "text": {"content": args.text}});
    if let Err(invalid) = crate::wecom::message::validate(&body) {
        anyhow::bail!("the test message would be refused by WeCom ({invalid}): nothing was sent");
    }
    let allowed = AllowedHosts::parse(&args.allowed_hosts).map_err(anyhow::Error::msg)?;
    let store = Store::connect(args.db.url()?).await?;
    store.check_schema().await?;
    let Some(robot) = store.find_robot(&args.webhook_name).await? else {
        anyhow::bail!(
            "no robot or pool named {:?} in wecom_webhooks",
            args.webhook_name
        );
    };
    let name = &robot.webhook_name;
    anyhow::ensure!(
        !robot.webhook_url.is_placeholder(),
        "robot {name} still has the placeholder URL: UPDATE wecom_webhooks SET webhook_url = '…' WHERE webhook_name = '{name}'"
    );
    anyhow::ensure!(
        robot.is_active,
        "robot {name} is disabled ({}); to use it again: UPDATE wecom_webhooks SET is_active = true WHERE webhook_name = '{name}'",
        robot.disabled_reason.as_deref().unwrap_or("by an operator")
    );
    allowed
        .check(robot.webhook_url.expose_secret())
        .map_err(|why| anyhow::anyhow!("robot {name} cannot be called: {why}"))?;
    let slot = match store
        .reserve_one(robot.id, |snapshot, now| {
            let rate = snapshot.rate_at(now).map_err(|_| now)?;
            let budget = rate.budget(now, &snapshot.recent_sends);
            if budget.available > 0 {
                Ok(())
            } else {
                Err(budget.next_free_at.unwrap_or(now))
            }
        })
        .await?
    {
        Ok(Some(slot)) => slot,
        Ok(None) => anyhow::bail!(
            "robot {name} is busy (a worker is claiming for it); try again in a moment"
        ),
        Err(when) => {
            anyhow::bail!("robot {name} has used its rate limit; it may send again at {when}")
        }
    };
    crate::outln!(
        "sending to robot {name} ({}) …",
        robot.webhook_url.redacted()
    )?;
    let reply = WeComClient::new(args.http_timeout)?
        .send(&robot.webhook_url, &body)
        .await;
    let described = reply.describe();
    let errcode = reply.errcode();
    let error = (errcode != Some(0)).then_some(described.as_str());
    store
        .record_test_send(&robot, slot, &body, errcode, error)
        .await?;
    crate::outln!("WeCom answered: {described}")?;
    let (code, advice) = match classify(&reply) {
        Outcome::Sent => (ExitCode::SUCCESS, "delivered: the message should now be in the group"),
        Outcome::RateLimited => (ExitCode::FAILURE, "the robot is over WeCom's limit (20/minute); wait a minute"),
        Outcome::RobotGone => (ExitCode::FAILURE, "the robot was removed, disabled or left its group: create a new robot and UPDATE its webhook_url"),
        Outcome::Rejected => (ExitCode::FAILURE, "WeCom refused the message itself"),
        Outcome::Transient => (ExitCode::FAILURE, "WeCom could not be reached or was busy; try again"),
    };
    crate::outln!("{advice}")?;
    Ok(code)
}
