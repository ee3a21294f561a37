//! memslice: a cgroup v2 memory-slice manager for Linux hosting nodes.
//!
//! The library keeps pure logic (config, plan/diff, parsers) apart from the
//! code with side effects (cgroupfs reads and writes, host detection), so
//! the first is unit-tested and the second runs against an emulated root in
//! tests and against a real kernel in the VM harness (`vagrant/`).

pub mod caller;
pub mod cgroupfs;
pub mod config;
pub mod doctor;
pub mod driver;
pub mod files;
pub mod footprint;
pub mod heal;
pub mod host;
pub mod journal;
pub mod layout;
pub mod locations;
pub mod locks;
pub mod observe;
pub mod plan;
pub mod printable;
pub mod provision;
pub mod signals;
pub mod spawn;
pub mod stderr_log;
mod sys;
/// For memslice's own `main` (see main.rs), which std's start-up does not run.
pub use sys::start_process;
pub mod systemd;
