//! WeCom group robots: message validation, the HTTP client, the hosts it may reach, and key
//! redaction. The stand-in that plays WeCom in tests and demos lives apart, in `crate::standin`
//! (feature `fake-wecom`), so the worker never links it.
pub mod allowed_hosts;
pub mod client;
pub mod message;
pub mod redact;
pub mod robot_url;
