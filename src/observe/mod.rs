//! What operators look at: the tree with usage against limits and the OOM
//! counters, for people (a table) and for scripts (JSON), and the events
//! as they happen.

pub mod events;
pub mod metrics;
pub mod serve;
mod status;

pub use status::{GroupStatus, Status, limit_json, status, summary};
