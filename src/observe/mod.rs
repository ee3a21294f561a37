//! What operators look at: the tree with usage against limits and the OOM
//! counters, for people (a table) and for scripts (JSON), and the events
//! as they happen.

pub mod events;
mod status;

pub use status::{GroupStatus, Status, status};
