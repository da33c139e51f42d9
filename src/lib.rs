//! wecom-outbox: SQL decides *what* to send (rows in `wecom_outbox`); this crate decides
//! *when* and *how* — within every robot's rate limit across replicas, inside its send window,
//! with retries — and records each outcome in `wecom_message_log`.
//!
//! Where things are: `rules` (rate limit, send window, retry, answer classification, the
//! per-robot decision), `wecom` (message validation, HTTP client), `store` (all SQL), `worker`
//! (the loop), `metrics` (what a replica tells Prometheus, `/healthz`), `cli` (one file per
//! subcommand). Apart from the product, behind the default-on
//! feature `fake-wecom`: `standin` (a fake WeCom over real HTTP, which the worker never imports)
//! and `demo`; behind the off-by-default feature `testing`: the tests' helpers.

pub mod cli;
#[cfg(feature = "fake-wecom")]
pub mod demo;
pub mod metrics;
pub mod reminders;
pub mod rules;
#[cfg(feature = "fake-wecom")]
pub mod standin;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod wecom;
pub mod worker;
