//! The fixed places memslice reads and the programs it runs: absolute
//! paths, never looked up in the caller's PATH or working directory.
//!
//! Test builds (the `emulated-root` feature, which no release or package
//! enables) let the tests move them with `MEMSLICE_TEST_*` variables; a
//! release binary does not contain those names.

use std::path::{Path, PathBuf};

/// The main config; drop-ins would sit beside it.
pub const CONFIG: &str = "/etc/memslice/slices.toml";
/// The cgroup v2 mount.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where the systemd driver writes its units.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// Where the shipped example is, for the message about a missing config.
pub const EXAMPLE: &str = "/usr/share/doc/memslice/examples/slices.toml";

/// The fixed path, or in a test build the variable's value when it is set.
/// A macro, so a release build holds neither the variable's name nor code
/// that reads it.
macro_rules! fixed_or_test_override {
    ($variable:literal, $fixed:expr) => {{
        #[cfg(feature = "emulated-root")]
        if let Some(value) = std::env::var_os($variable) {
            return PathBuf::from(value);
        }
        PathBuf::from($fixed)
    }};
}

pub fn config() -> PathBuf {
    fixed_or_test_override!("MEMSLICE_TEST_CONFIG", CONFIG)
}

pub fn cgroup_root() -> PathBuf {
    fixed_or_test_override!("MEMSLICE_TEST_CGROUP_ROOT", CGROUP_ROOT)
}

pub fn unit_dir() -> PathBuf {
    fixed_or_test_override!("MEMSLICE_TEST_UNIT_DIR", UNIT_DIR)
}

/// Root's locks (see `locks`): a directory only root can open.
pub fn lock_dir() -> PathBuf {
    fixed_or_test_override!("MEMSLICE_TEST_LOCK_DIR", "/run/memslice/locks")
}

/// The PAM stacks, where doctor looks for the session hook.
pub fn pam_dir() -> PathBuf {
    fixed_or_test_override!("MEMSLICE_TEST_PAM_DIR", "/etc/pam.d")
}

/// The system log's socket (journald or syslogd listen there).
pub fn dev_log() -> PathBuf {
    fixed_or_test_override!("MEMSLICE_TEST_DEV_LOG", "/dev/log")
}

/// Exists where systemd is PID 1 (sd_booted(3)).
pub fn systemd_booted() -> PathBuf {
    fixed_or_test_override!("MEMSLICE_TEST_RUN_SYSTEMD", "/run/systemd/system")
}

/// systemctl: /usr/bin on merged-/usr systems, /bin before.
pub fn systemctl() -> PathBuf {
    fixed_or_test_override!(
        "MEMSLICE_TEST_SYSTEMCTL",
        first_present(&["/usr/bin/systemctl", "/bin/systemctl"])
    )
}

/// systemd's private D-Bus socket (root only; see `systemd::bus`).
pub fn systemd_private_socket() -> PathBuf {
    fixed_or_test_override!(
        "MEMSLICE_TEST_SYSTEMD_PRIVATE",
        crate::systemd::bus::PRIVATE_SOCKET
    )
}

/// The system bus, where the private socket is missing.
pub fn system_bus_socket() -> PathBuf {
    fixed_or_test_override!(
        "MEMSLICE_TEST_SYSTEM_BUS",
        crate::systemd::bus::SYSTEM_BUS_SOCKET
    )
}

fn first_present<'a>(candidates: &[&'a str]) -> &'a str {
    candidates
        .iter()
        .copied()
        .find(|path| Path::new(path).exists())
        .unwrap_or(candidates[0])
}
