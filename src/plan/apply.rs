//! Carries out a plan, in its order, one file at a time. A plan with
//! blockers is refused before the first write.

use super::diff::{Blocker, Change, Plan};
use crate::cgroupfs::{self, Root};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// mkdir and write(2) calls made; zero when the tree already matched.
    pub writes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refusing to apply, nothing was written:{}", blockers.iter().map(|b| format!("\n  - {b}")).collect::<String>())]
    Blocked { blockers: Vec<Blocker> },
    #[error("stopped after {done} of {total} changes at `{change}`: {source}")]
    Failed {
        done: usize,
        total: usize,
        change: String,
        source: cgroupfs::Error,
    },
}

pub fn apply(root: &Root, plan: &Plan) -> Result<Report, ApplyError> {
    if !plan.blockers.is_empty() {
        return Err(ApplyError::Blocked {
            blockers: plan.blockers.clone(),
        });
    }
    let total = plan.changes.len();
    for (done, change) in plan.changes.iter().enumerate() {
        tracing::info!(%change, "apply");
        perform(root, change).map_err(|source| ApplyError::Failed {
            done,
            total,
            change: change.to_string(),
            source,
        })?;
    }
    Ok(Report { writes: total })
}

fn perform(root: &Root, change: &Change) -> Result<(), cgroupfs::Error> {
    match change {
        Change::Create { group } => root.create(group).map(drop),
        Change::Enable { group, controllers } => {
            let request: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
            root.write(group, "cgroup.subtree_control", &request.join(" "))
        }
        Change::Set {
            group, knob, to, ..
        } => root.write(group, knob.file(), &to.kernel_text()),
    }
}
