//! WeCom group robots: message validation, the HTTP client, the hosts it may reach, key
//! redaction, and an HTTP stand-in for tests and demos.
pub mod allowed_hosts;
pub mod client;
pub mod message;
pub mod redact;
pub mod standin;
