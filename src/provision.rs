//! `plan` and `apply` for either driver, one call each: the cgroupfs
//! driver diffs and writes the cgroup tree under the root, the systemd
//! driver the slice units and drop-ins in the unit directory. The binary's
//! edge only renders what comes back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroupfs::{self, Root};
use crate::config::{Config, Driver};
use crate::driver::{DriverError, Resolved};
use crate::host::{self, HostError};
use crate::plan::{self, ApplyError, Plan};
use crate::systemd::{self, Foreign, SystemdError, UnitChange};

/// Where the config is provisioned.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub config: &'a Config,
    /// Named in the header of generated unit files.
    pub config_path: &'a Path,
    pub cgroup_root: &'a Path,
    pub unit_dir: &'a Path,
    /// The driver as settled on this host; the config is placed for it.
    pub driver: &'a Resolved,
}

#[derive(Debug)]
pub enum Planned {
    /// The cgroupfs driver's plan. `unusable` says why the root could not be
    /// read: the plan is then against an empty tree (a config can be
    /// reviewed anywhere; `apply` refuses such a root).
    Tree {
        root: PathBuf,
        plan: Plan,
        unusable: Option<HostError>,
    },
    Units {
        dir: PathBuf,
        changes: Vec<UnitChange>,
    },
}

impl Planned {
    /// Whether `apply` would change anything.
    pub fn pending(&self) -> bool {
        match self {
            Planned::Tree { plan, .. } => !plan.changes.is_empty(),
            Planned::Units { changes, .. } => !changes.is_empty(),
        }
    }
}

#[derive(Debug)]
pub enum Applied {
    Tree {
        root: PathBuf,
        plan: Plan,
        writes: usize,
    },
    Units {
        dir: PathBuf,
        changes: Vec<UnitChange>,
        written: usize,
    },
}

/// How long an apply waits for another to finish (configuration
/// management may start several at once).
const APPLY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("another memslice apply still holds {} after {}s; nothing was changed, try again", path.display(), APPLY_WAIT.as_secs())]
    Busy { path: PathBuf },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Files(#[from] crate::files::FileError),
    #[error(transparent)]
    Cgroup(#[from] cgroupfs::Error),
    #[error("cannot read the live tree: {0}")]
    Observe(cgroupfs::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error(transparent)]
    Foreign(#[from] Foreign),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

impl ProvisionError {
    /// The root offers no usable cgroup v2 memory controller.
    pub fn host_unusable(&self) -> bool {
        matches!(self, ProvisionError::Host(err) if err.unusable())
    }

    /// The driver asked for does not fit this host (see `driver`).
    pub fn driver_refused(&self) -> bool {
        matches!(self, ProvisionError::Driver(_))
    }
}

pub fn plan(target: &Target<'_>) -> Result<Planned, ProvisionError> {
    if target.config.layout.driver() == Driver::Systemd {
        return Ok(Planned::Units {
            dir: target.unit_dir.to_path_buf(),
            changes: unit_changes(target)?,
        });
    }
    let (plan, unusable) = match host::open_root(target.cgroup_root) {
        Ok(root) => (observe_and_diff(&root, target.config)?, None),
        Err(err) if err.unusable() => (
            plan::diff(&plan::desired(target.config), &Default::default()),
            Some(err),
        ),
        Err(err) => return Err(err.into()),
    };
    Ok(Planned::Tree {
        root: target.cgroup_root.to_path_buf(),
        plan,
        unusable,
    })
}

/// Makes the tree (or the units) match the config, all or nothing, one
/// apply at a time: the lock is held from reading what is there to the
/// last write. A driver that does not fit the host (cgroupfs on systemd's
/// own tree) is refused before anything is read.
pub fn apply(target: &Target<'_>) -> Result<Applied, ProvisionError> {
    target.driver.check_writes(target.cgroup_root)?;
    if target.config.layout.driver() == Driver::Systemd {
        crate::files::private_dir(target.unit_dir, 0o755)?;
        let _lock = lock_dir(target.unit_dir)?;
        let changes = unit_changes(target)?;
        let slices: Vec<String> = target
            .config
            .slices
            .iter()
            .map(|s| target.config.layout.slice_unit(&s.path))
            .collect();
        let written = systemd::apply(target.unit_dir, &changes, &slices)?;
        return Ok(Applied::Units {
            dir: target.unit_dir.to_path_buf(),
            changes,
            written,
        });
    }
    let root = host::open_root(target.cgroup_root)?;
    let _lock = root
        .lock_tree(APPLY_WAIT)?
        .ok_or_else(|| ProvisionError::Busy {
            path: target.cgroup_root.to_path_buf(),
        })?;
    let plan = observe_and_diff(&root, target.config)?;
    let report = plan::apply(&root, &plan)?;
    for (group, procs) in &plan.unmanaged {
        tracing::debug!(group, procs, "left alone: not named in the config");
    }
    Ok(Applied::Tree {
        root: target.cgroup_root.to_path_buf(),
        plan,
        writes: report.writes,
    })
}

fn lock_dir(dir: &Path) -> Result<crate::locks::Held, ProvisionError> {
    crate::locks::lock(dir, APPLY_WAIT)?.ok_or_else(|| ProvisionError::Busy {
        path: dir.to_path_buf(),
    })
}

fn unit_changes(target: &Target<'_>) -> Result<Vec<UnitChange>, ProvisionError> {
    let desired = systemd::desired_units(target.config, target.config_path);
    let existing = systemd::observe(target.unit_dir, &desired)?;
    Ok(systemd::diff_units(&desired, &existing)?)
}

fn observe_and_diff(root: &Root, config: &Config) -> Result<Plan, ProvisionError> {
    let desired = plan::desired(config);
    let observed = plan::observe(root, &desired).map_err(ProvisionError::Observe)?;
    Ok(plan::diff(&desired, &observed))
}
