//! The product's rules as plain functions over plain values: no database, no HTTP, no clock
//! of their own (every function takes `now`). Each rule lives in the file named after it.

pub mod decide;
pub mod outcome;
pub mod rate_limit;
pub mod retry;
pub mod send_window;
