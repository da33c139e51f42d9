//! Logging to stderr through a writer that redacts robot keys from every line, whatever
//! code (ours, sqlx, reqwest, hyper) produced it, as text for people or as one JSON object a
//! line for log shippers (`--log-format json`); and the commands' own output to stdout, which
//! stops quietly when its reader goes away (`wecom-outbox demo | head -3`) instead of
//! panicking like `println!`.

use crate::wecom::redact::redact;
use serde_json::Value;
use std::fmt;
use std::io::{IsTerminal, Write};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written: text for people, JSON for machines (a log shipper reads one
/// object a line and cannot parse text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO message field=value`, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields` (with `message`), `spans`.
    Json,
}

/// Install the global subscriber: `RUST_LOG` filters (default `info`), keys redacted, lines
/// written in `format`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr { format })
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.with_ansi(false).json().try_init(),
    };
}

/// Writes a command's final error to stderr in the log format, so a log shipper reading a
/// JSON log also gets the line saying why the process stopped. The text is redacted.
pub fn write_error(format: LogFormat, text: &str) {
    let line = match format {
        LogFormat::Text => format!("error: {}\n", redact(text)),
        LogFormat::Json => {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let line = serde_json::json!({
                "timestamp": now,
                "level": "ERROR",
                "fields": { "message": format!("error: {text}") },
            });
            redact_json_line(&format!("{line}\n"))
        }
    };
    // Not eprintln!: a closed stderr must not turn an error into a panic.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Hands out one buffer per log event; the event is redacted and written when it is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr {
    /// How the subscriber formats the events this writer receives.
    pub format: LogFormat,
}

/// One log event on its way to stderr.
pub struct RedactedEvent {
    buffer: Vec<u8>,
    format: LogFormat,
}

impl Write for RedactedEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedEvent {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let shown = match self.format {
            LogFormat::Text => redact(&text).into_owned(),
            LogFormat::Json => redact_json_line(&text),
        };
        let _ = std::io::stderr().lock().write_all(shown.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactedEvent;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedEvent {
            buffer: Vec::with_capacity(256),
            format: self.format,
        }
    }
}

/// Field names whose whole value is a secret, as [`redact`] reads `key=…` in a text line.
const SECRET_FIELDS: [&str; 2] = ["key", "password"];

/// One JSON log line with every string redacted as a text line is. Redacting the serialized
/// line would miss what JSON escapes (`key=\"…\"` has a backslash where text has a quote), so
/// the line is parsed, each string redacted as the text it stands for, and written again; a
/// field named `key` or `password` is hidden whole, as `key=…` is in text. A line that does
/// not parse (never expected) is redacted as text.
pub fn redact_json_line(line: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(line) else {
        return redact(line).into_owned();
    };
    redact_value(&mut value);
    let ending = if line.ends_with('\n') { "\n" } else { "" };
    format!("{value}{ending}")
}

/// Redacts every string in `value`, and hides the values of secret-named fields.
fn redact_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(shown) = redact(s) {
                *s = shown;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if SECRET_FIELDS.contains(&name.to_ascii_lowercase().as_str()) {
                    *field = Value::String("***".into());
                } else {
                    redact_value(field);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Why a command's output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Stdout's reader has gone (a closed pipe): the command stops, cleans up as after any
    /// error, and `cli::main` exits quietly.
    #[error("stdout was closed by its reader")]
    StdoutClosed,
    /// Any other failure (a full disk behind `>`).
    #[error("cannot write to stdout: {0}")]
    Io(#[source] std::io::Error),
}

/// Writes (and flushes) a command's output to stdout.
pub fn write_stdout(args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputError::StdoutClosed),
        Err(e) => Err(OutputError::Io(e)),
    }
}

/// `print!` for a command's output, returning `Result<(), OutputError>` instead of panicking when
/// stdout is closed (see [`telemetry::write_stdout`](crate::telemetry::write_stdout)).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::telemetry::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for a command's output, returning `Result<(), OutputError>` instead of panicking when
/// stdout is closed (see [`telemetry::write_stdout`](crate::telemetry::write_stdout)).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::telemetry::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::telemetry::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_hide_keys_that_json_escapes() {
        // A quoted log field inside a message: JSON writes its quotes as \".
        let line = serde_json::json!({
            "fields": {"message": "calling robot key=\"SECRET-one\" now", "n": 1},
        })
        .to_string();
        let shown = redact_json_line(&format!("{line}\n"));
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.ends_with('\n'), "{shown:?}");
        let parsed: Value = serde_json::from_str(shown.trim_end()).expect("still JSON");
        assert_eq!(parsed["fields"]["message"], "calling robot key=\"***\" now");
        assert_eq!(parsed["fields"]["n"], 1);
    }

    #[test]
    fn json_lines_hide_urls_and_secret_named_fields() {
        let line = serde_json::json!({
            "fields": {
                "url": "http://h/cgi-bin/webhook/send?KEY=SECRET-two&x=1",
                "key": "SECRET-three",
                "Password": "SECRET-four",
            },
            "spans": [{"name": "send", "url": "https://h/?k%65y=SECRET-five"}],
        })
        .to_string();
        let shown = redact_json_line(&line);
        assert!(!shown.contains("SECRET"), "{shown}");
        let parsed: Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(
            parsed["fields"]["url"],
            "http://h/cgi-bin/webhook/send?KEY=***&x=1"
        );
        assert_eq!(parsed["fields"]["key"], "***");
    }

    #[test]
    fn a_line_that_is_not_json_is_redacted_as_text() {
        assert_eq!(redact_json_line("oops ?key=SECRET"), "oops ?key=***");
    }
}
