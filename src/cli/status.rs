//! `status`: per destination, what is waiting and what happened; per robot, whether it is
//! enabled, how much of its limit is left and when it can send next. Keys are never shown.

use crate::rules::decide::{decide, Decision, RobotSnapshot};
use crate::store::Store;
use crate::store::{DestinationCounts, RobotReport, FINISHED_WINDOW_DAYS};
use crate::wecom::allowed_hosts::AllowedHosts;
use crate::wecom::redact::redact;
use chrono::{DateTime, NaiveTime, Timelike, Utc};
use serde::Serialize;
use std::process::ExitCode;

/// Show the outbox and robots at a glance (or as JSON for scripts and monitoring).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wecom-outbox status\n  wecom-outbox status --json | jq '.destinations[].pending'"
)]
pub struct Args {
    #[command(flatten)]
    db: super::Database,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Hosts robots may be reached at (to flag robots the worker would refuse).
    #[arg(long, value_name = "HOSTS", env = "WECOM_ALLOWED_HOSTS", default_value = crate::wecom::allowed_hosts::DEFAULT)]
    allowed_hosts: String,
}

/// The whole picture, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Status {
    pub now: DateTime<Utc>,
    /// Stored settings the worker or the reminders cannot use, one sentence each.
    pub settings_problems: Vec<String>,
    /// Robots a replica skips because of its own configuration (e.g. WECOM_ALLOWED_HOSTS).
    pub replica_notes: Vec<String>,
    /// Each destination's `sent`, `cancelled` and `expired` count rows finished in this many
    /// days back from `now`, not all history (pending, sending and failed are exact).
    pub finished_window_days: i32,
    pub destinations: Vec<DestinationStatus>,
}

/// One destination: its rows and the robots serving it.
#[derive(Debug, Serialize)]
pub struct DestinationStatus {
    #[serde(flatten)]
    pub counts: DestinationCounts,
    pub robots: Vec<RobotStatus>,
}

/// One robot, as an operator needs to see it.
#[derive(Debug, Serialize)]
pub struct RobotStatus {
    pub name: String,
    /// The URL with its key hidden.
    pub url: String,
    pub enabled: bool,
    /// Why it does not send (disabled, placeholder, host not allowed, a row the worker skips).
    pub problem: Option<String>,
    pub rate_limit: i32,
    pub rate_window_secs: f64,
    /// The lower limit WeCom was seen to allow (learned from its 45009), in force now in place
    /// of `rate_limit`; `null` when none (see `rules::rate_limit`).
    pub learned_rate_limit: Option<u32>,
    pub budget_left: u32,
    /// When it can send next: now, or when its window opens / budget frees / pause ends.
    pub next_send_at: Option<DateTime<Utc>>,
    pub send_window: Option<String>,
    pub paused_until: Option<DateTime<Utc>>,
    pub last_errcode: Option<i32>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub total_messages_sent: i64,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let allowed = AllowedHosts::parse(&args.allowed_hosts).map_err(anyhow::Error::msg)?;
    let store = Store::connect(args.db.url()?).await?;
    store.check_schema().await?;
    let status = gather(&store, &allowed).await?;
    if args.json {
        crate::outln!("{}", redact(&serde_json::to_string_pretty(&status)?))?;
    } else {
        crate::out!("{}", redact(&render(&status)))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Read everything and apply the rules to each robot. One robot or setting that cannot be
/// read or planned shows its reason; the rest of the report still shows.
pub async fn gather(store: &Store, allowed: &AllowedHosts) -> anyhow::Result<Status> {
    let counts = store.destination_counts().await?;
    let robots = store.robot_reports().await?;
    let settings_problems = store
        .settings_problems()
        .await
        .unwrap_or_else(|e| vec![format!("wecom_settings could not be checked: {e}")]);
    let replica_notes = store
        .replica_notes()
        .await
        .unwrap_or_else(|e| vec![format!("wecom_replica_notes could not be read: {e}")]);
    // Each robot row carries its own clock reading; the latest is "now" for all of them, so
    // a robot that may send at its own reading shows as ready now rather than "next send at"
    // a moment in the past.
    let now = robots.iter().map(|r| r.now).max().unwrap_or_else(Utc::now);
    let destinations = counts
        .into_iter()
        .map(|counts| {
            let robots = robots
                .iter()
                .filter(|r| r.destination == counts.destination)
                .map(|r| robot_status(r, allowed))
                .collect();
            DestinationStatus { counts, robots }
        })
        .collect();
    Ok(Status {
        now,
        settings_problems,
        replica_notes,
        finished_window_days: FINISHED_WINDOW_DAYS,
        destinations,
    })
}

fn robot_status(r: &RobotReport, allowed: &AllowedHosts) -> RobotStatus {
    let snapshot = r.snapshot();
    let budget_left = snapshot
        .rate_at(r.now)
        .map(|rate| rate.budget(r.now, &r.recent_sends).available)
        .unwrap_or(0);
    let learned_rate_limit = snapshot
        .rate()
        .ok()
        .and_then(|rate| rate.learned_limit(snapshot.learned, r.now));
    let (problem, next_send_at) = match why_not(r, &snapshot, allowed) {
        Some(problem) => (Some(problem), None),
        None => (None, next_send(&snapshot, r.now)),
    };
    RobotStatus {
        name: r.webhook_name.clone(),
        url: r.webhook_url.redacted(),
        enabled: r.is_active,
        problem,
        rate_limit: r.settings.rate_limit,
        rate_window_secs: r.settings.rate_window.as_secs_f64(),
        learned_rate_limit,
        budget_left,
        next_send_at,
        send_window: Some(describe_window(r)),
        paused_until: r.paused_until.filter(|p| *p > r.now),
        last_errcode: r.last_errcode,
        last_error: r.last_error.as_deref().map(|e| redact(e).into_owned()),
        last_error_at: r.last_error_at,
        total_messages_sent: r.total_messages_sent,
        last_used_at: r.last_used_at,
    }
}

/// Why the worker will not send with this robot, if it will not.
fn why_not(r: &RobotReport, snapshot: &RobotSnapshot, allowed: &AllowedHosts) -> Option<String> {
    if let Some(why) = &r.unreadable {
        return Some(format!("skipped: {why}"));
    }
    if r.webhook_url.is_placeholder() {
        return Some("placeholder URL: not a robot yet".into());
    }
    if !r.is_active {
        let why = r.disabled_reason.as_deref().unwrap_or("by an operator");
        return Some(format!("disabled: {why}"));
    }
    if let Err(why) = allowed.check(r.webhook_url.expose_secret()) {
        return Some(format!(
            "not served by replicas with this WECOM_ALLOWED_HOSTS: {why}"
        ));
    }
    if let Err(why) = snapshot.rate().and_then(|_| snapshot.send_window()) {
        return Some(format!("skipped: {why}"));
    }
    None
}

/// When a robot whose configuration the rules accept can send next.
fn next_send(snapshot: &RobotSnapshot, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match decide(snapshot, now, u32::MAX) {
        Decision::Claim { .. } => Some(now),
        Decision::Wait { until } => Some(until),
        _ => None,
    }
}

/// The window as stored (also when the rules refuse it), e.g. `09:00-20:00 on ISO days
/// {1,2,3,4,5} Asia/Hong_Kong`.
fn describe_window(r: &RobotReport) -> String {
    let hm = |t: Option<NaiveTime>| t.map_or("NULL".to_string(), clock);
    let hours = match (r.settings.send_window_start, r.settings.send_window_end) {
        (None, None) => "any time".to_string(),
        (start, end) => format!("{}-{}", hm(start), hm(end)),
    };
    let days = match &r.send_days_text {
        Some(d) => format!(" on ISO days {d}"),
        None => String::new(),
    };
    let zone = r
        .settings
        .timezone
        .as_deref()
        .unwrap_or(&r.default_timezone);
    format!("{hours}{days} {zone}")
}

/// `09:00`, or `09:00:30` when the seconds matter.
fn clock(t: NaiveTime) -> String {
    if t.second() == 0 && t.nanosecond() == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S%.f").to_string()
    }
}

/// The text form: one block per destination.
pub fn render(status: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for problem in &status.settings_problems {
        let _ = writeln!(out, "setting problem: {problem}");
    }
    for note in &status.replica_notes {
        let _ = writeln!(out, "{note}");
    }
    if status.destinations.is_empty() {
        out.push_str("no robots and no messages yet: INSERT INTO wecom_webhooks … (see README)\n");
    }
    for d in &status.destinations {
        let c = &d.counts;
        let _ = writeln!(
            out,
            "{}: {} pending, {} sending, {} failed; in the last {} days: {} sent, {} cancelled, {} expired",
            c.destination,
            c.pending,
            c.sending,
            c.failed,
            status.finished_window_days,
            c.sent,
            c.cancelled,
            c.expired
        );
        if let Some(oldest) = c.oldest_pending {
            let _ = writeln!(out, "  oldest pending since {oldest}");
        }
        if let Some(e) = &c.last_error {
            let _ = writeln!(out, "  last error: {e}");
        }
        if d.robots.is_empty() {
            let _ = writeln!(out, "  no robot serves this destination: its rows wait");
        }
        for r in &d.robots {
            let state = match (&r.problem, r.next_send_at) {
                (Some(p), _) => p.clone(),
                (None, Some(at)) if at <= status.now => "ready now".into(),
                (None, Some(at)) => format!("next send at {at}"),
                (None, None) => "idle".into(),
            };
            let learned = match r.learned_rate_limit {
                Some(n) => format!(" (learned {n}/{}s: WeCom allows fewer)", r.rate_window_secs),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  robot {} [{}] {}: budget {}/{} per {}s{}, window {}, sent {} in total",
                r.name,
                if r.enabled { "enabled" } else { "DISABLED" },
                state,
                r.budget_left,
                r.rate_limit,
                r.rate_window_secs,
                learned,
                r.send_window.as_deref().unwrap_or("?"),
                r.total_messages_sent
            );
            if let (Some(e), Some(at)) = (&r.last_error, r.last_error_at) {
                let _ = writeln!(out, "    last error at {at}: {e}");
            }
        }
    }
    out
}
