//! wecom-outbox: SQL decides *what* to send (rows in `wecom_outbox`); this crate decides
//! *when* and *how* — within every robot's rate limit across replicas, inside its send window,
//! with retries — and records each outcome in `wecom_message_log`.
//!
//! Where things are: `rules` (rate limit, send window, retry, answer classification, the
//! per-robot decision), `wecom` (message validation, HTTP client, stand-in), `store` (all
//! SQL), `worker` (the loop), `cli` (one file per subcommand).

pub mod cli;
pub mod demo;
pub mod reminders;
pub mod rules;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod wecom;
pub mod worker;
