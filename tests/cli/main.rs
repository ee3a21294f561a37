//! The memslice binary end to end on emulated cgroup roots (temp dirs laid
//! out like cgroupfs). What only the kernel decides is in vagrant/scenarios.

mod config;
mod dist;
mod doctor;
mod driver;
mod dropins;
mod events;
mod fixture;
mod footprint;
mod heal;
mod metrics;
mod metrics_attack;
mod plan_apply;
mod refusals;
mod run;
mod status;
mod systemd;
mod tasks;
mod trust;
mod units;
mod watchdog;
