//! Which driver writes the tree on this host. `auto` picks systemd where
//! systemd is PID 1 and the cgroup root is its tree, cgroupfs elsewhere;
//! the cgroupfs driver on a tree systemd owns and has not delegated to
//! memslice breaks cgroup v2's single-writer rule, so writes are refused
//! there (plan and doctor warn).
//!
//! The choice is pure, facts in and choice out ([`resolve`]); [`facts`]
//! is the thin reading of the host.

use std::fmt;
use std::path::Path;

use crate::cgroupfs::{Delegation, Root};
use crate::layout::{Driver, DriverSetting};

/// What the host says about who owns the cgroup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// systemd is PID 1 (sd_booted(3): /run/systemd/system exists).
    pub systemd_booted: bool,
    pub root: RootFacts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootFacts {
    /// No cgroup2 directory (a hybrid host's tmpfs, a plain directory, a
    /// missing path): nobody's tree, and nothing memslice can use either.
    NotCgroup2,
    /// A cgroup2 directory, delegated when it or a cgroup above it carries
    /// systemd's delegation marker.
    Cgroup2 { delegation: Option<Delegation> },
}

/// How the tree is written once the driver is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// No systemd runs here: memslice is the tree's only writer.
    NoSystemd,
    /// The systemd driver on a host systemd runs: systemd writes the tree.
    SystemdWrites,
    /// A subtree systemd delegated to memslice: memslice writes it alone.
    Delegated(Delegation),
    /// The root is no cgroup2 directory; using it fails with the host's
    /// own explanation (hybrid layout, no memory controller).
    NotCgroup2,
    /// The cgroupfs driver on systemd's own tree: writes are refused.
    SystemdsTree,
    /// The systemd driver where systemd is not PID 1: nothing would act
    /// on the units.
    NoSystemdToApply,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What was asked for, `--driver` over `[node] driver`.
    pub setting: DriverSetting,
    pub driver: Driver,
    pub fit: Fit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error(
        "{root} is systemd's tree (systemd is PID 1 and has not delegated it to memslice), so the cgroupfs driver ({why}) may not write there: cgroup v2 allows one writer per tree, and systemd moves, trims and resets what it does not know about. Set driver = \"auto\" or \"systemd\" in [node] (or pass --driver systemd), and memslice writes slice units for systemd to apply; or point --cgroup-root at a subtree systemd delegated to memslice (a service or scope with Delegate=yes, which systemd marks with the trusted.delegate attribute)"
    )]
    SystemdsTree { root: String, why: String },
    #[error("--driver (or MEMSLICE_DRIVER) {0:?}: use auto, cgroupfs or systemd")]
    Unknown(String),
    #[error(
        "the systemd driver ({why}) needs systemd as PID 1 to apply its units, and it is not here (no /run/systemd/system): use driver = \"auto\" or \"cgroupfs\""
    )]
    NoSystemd { why: String },
}

/// Settles the driver. Pure.
pub fn resolve(setting: DriverSetting, facts: &Facts) -> Resolved {
    let systemds_tree =
        facts.systemd_booted && matches!(facts.root, RootFacts::Cgroup2 { delegation: None });
    let driver = match setting {
        DriverSetting::Cgroupfs => Driver::Cgroupfs,
        DriverSetting::Systemd => Driver::Systemd,
        DriverSetting::Auto if systemds_tree => Driver::Systemd,
        DriverSetting::Auto => Driver::Cgroupfs,
    };
    let fit = match (driver, &facts.root) {
        (Driver::Systemd, _) if facts.systemd_booted => Fit::SystemdWrites,
        (Driver::Systemd, _) => Fit::NoSystemdToApply,
        (Driver::Cgroupfs, RootFacts::NotCgroup2) => Fit::NotCgroup2,
        (
            Driver::Cgroupfs,
            RootFacts::Cgroup2 {
                delegation: Some(d),
            },
        ) => Fit::Delegated(d.clone()),
        (Driver::Cgroupfs, RootFacts::Cgroup2 { delegation: None }) if systemds_tree => {
            Fit::SystemdsTree
        }
        (Driver::Cgroupfs, RootFacts::Cgroup2 { delegation: None }) => Fit::NoSystemd,
    };
    Resolved {
        setting,
        driver,
        fit,
    }
}

impl Resolved {
    /// Whether the driver may change the host: refused where it would
    /// break the single-writer rule, or where nothing would apply it.
    pub fn check_writes(&self, root: &Path) -> Result<(), DriverError> {
        match self.fit {
            Fit::SystemdsTree => Err(DriverError::SystemdsTree {
                root: root.display().to_string(),
                why: self.why(),
            }),
            Fit::NoSystemdToApply => Err(DriverError::NoSystemd { why: self.why() }),
            _ => Ok(()),
        }
    }

    /// Where the choice came from, for messages.
    fn why(&self) -> String {
        match self.setting {
            DriverSetting::Auto => "picked by driver = \"auto\"".to_string(),
            asked => format!("asked for with \"{asked}\""),
        }
    }
}

impl fmt::Display for Resolved {
    /// The choice and why, in one line: `systemd (auto: systemd is PID 1
    /// and owns the tree)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.setting {
            DriverSetting::Auto => "auto",
            _ => "asked for",
        };
        let fit = match &self.fit {
            Fit::NoSystemd => "systemd is not PID 1, memslice writes the tree alone".to_string(),
            Fit::SystemdWrites => "systemd is PID 1 and writes the tree".to_string(),
            Fit::Delegated(delegation) => format!(
                "a subtree systemd delegated ({} on {})",
                delegation.marker,
                delegation.at.display()
            ),
            Fit::NotCgroup2 => "the root is no cgroup2 directory".to_string(),
            Fit::SystemdsTree => "on systemd's own tree, not delegated".to_string(),
            Fit::NoSystemdToApply => "but systemd is not PID 1".to_string(),
        };
        write!(f, "{} ({how}: {fit})", self.driver)
    }
}

/// Reads the facts for `cgroup_root`. An attribute that cannot be read
/// counts as no marker: cgroupfs is then refused on systemd's tree, never
/// wrongly allowed.
pub fn facts(cgroup_root: &Path) -> Facts {
    let root = match Root::open(cgroup_root) {
        Ok(root) => RootFacts::Cgroup2 {
            delegation: root.delegation().unwrap_or_default(),
        },
        Err(_) => RootFacts::NotCgroup2,
    };
    Facts {
        systemd_booted: crate::locations::systemd_booted().is_dir(),
        root,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn delegated() -> Option<Delegation> {
        Some(Delegation {
            at: PathBuf::from("/sys/fs/cgroup/system.slice/memslice.service"),
            marker: "trusted.delegate",
        })
    }

    fn facts(systemd_booted: bool, root: RootFacts) -> Facts {
        Facts {
            systemd_booted,
            root,
        }
    }

    const ROOT: &str = "/sys/fs/cgroup";

    #[test]
    fn auto_picks_systemd_only_on_its_own_tree() {
        let owned = facts(true, RootFacts::Cgroup2 { delegation: None });
        let chosen = resolve(DriverSetting::Auto, &owned);
        assert_eq!(
            (chosen.driver, &chosen.fit),
            (Driver::Systemd, &Fit::SystemdWrites)
        );
        assert_eq!(
            chosen.to_string(),
            "systemd (auto: systemd is PID 1 and writes the tree)"
        );
        let sub = resolve(
            DriverSetting::Auto,
            &facts(
                true,
                RootFacts::Cgroup2 {
                    delegation: delegated(),
                },
            ),
        );
        assert_eq!(sub.driver, Driver::Cgroupfs);
        assert!(matches!(sub.fit, Fit::Delegated(_)));
        assert!(
            sub.to_string()
                .contains("trusted.delegate on /sys/fs/cgroup/system.slice/memslice.service")
        );
        let plain = resolve(
            DriverSetting::Auto,
            &facts(false, RootFacts::Cgroup2 { delegation: None }),
        );
        assert_eq!(
            (plain.driver, &plain.fit),
            (Driver::Cgroupfs, &Fit::NoSystemd)
        );
        // A hybrid systemd host: /sys/fs/cgroup is a tmpfs. The cgroupfs
        // driver then explains the layout when it opens the root.
        let hybrid = resolve(DriverSetting::Auto, &facts(true, RootFacts::NotCgroup2));
        assert_eq!(
            (hybrid.driver, &hybrid.fit),
            (Driver::Cgroupfs, &Fit::NotCgroup2)
        );
        for chosen in [sub, plain, hybrid] {
            assert_eq!(chosen.check_writes(Path::new(ROOT)), Ok(()));
        }
    }

    #[test]
    fn cgroupfs_on_systemds_own_tree_may_not_write() {
        let owned = facts(true, RootFacts::Cgroup2 { delegation: None });
        let chosen = resolve(DriverSetting::Cgroupfs, &owned);
        assert_eq!(
            (chosen.driver, &chosen.fit),
            (Driver::Cgroupfs, &Fit::SystemdsTree)
        );
        let message = chosen
            .check_writes(Path::new(ROOT))
            .expect_err("refused")
            .to_string();
        assert!(
            message.starts_with("/sys/fs/cgroup is systemd's tree (systemd is PID 1 and has not delegated it to memslice), so the cgroupfs driver (asked for with \"cgroupfs\") may not write there"),
            "{message}"
        );
        assert!(message.contains("Delegate=yes"), "{message}");
        let delegated = resolve(
            DriverSetting::Cgroupfs,
            &facts(
                true,
                RootFacts::Cgroup2 {
                    delegation: delegated(),
                },
            ),
        );
        assert_eq!(delegated.check_writes(Path::new(ROOT)), Ok(()));
    }

    #[test]
    fn the_systemd_driver_needs_systemd() {
        let chosen = resolve(
            DriverSetting::Systemd,
            &facts(false, RootFacts::Cgroup2 { delegation: None }),
        );
        assert_eq!(
            (chosen.driver, &chosen.fit),
            (Driver::Systemd, &Fit::NoSystemdToApply)
        );
        let message = chosen
            .check_writes(Path::new(ROOT))
            .expect_err("refused")
            .to_string();
        assert!(message.contains("needs systemd as PID 1"), "{message}");
        let fine = resolve(DriverSetting::Systemd, &facts(true, RootFacts::NotCgroup2));
        assert_eq!(fine.fit, Fit::SystemdWrites);
    }
}
