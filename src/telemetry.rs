//! Logging to stderr through a writer that redacts robot keys from every line, whatever
//! code (ours, sqlx, reqwest, hyper) produced it; and the commands' own output to stdout,
//! which stops quietly when its reader goes away (`wecom-outbox demo | head -3`) instead of
//! panicking like `println!`.

use crate::wecom::redact::redact;
use std::fmt;
use std::io::{IsTerminal, Write};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber: `RUST_LOG` filters (default `info`), keys redacted.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Hands out one buffer per log event; the event is redacted and written when it is dropped.
#[derive(Debug, Clone, Copy)]
pub struct RedactingStderr;

/// One log event on its way to stderr.
pub struct RedactedEvent(Vec<u8>);

impl Write for RedactedEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedEvent {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().lock().write_all(redact(&text).as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactedEvent;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedEvent(Vec::with_capacity(256))
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
