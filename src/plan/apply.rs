//! Carries out a plan, in its order, one file at a time, all or nothing:
//! a plan with blockers is refused before the first write, and when a
//! write fails part-way the changes this run made are undone in reverse
//! order (values written back, controllers disabled, groups removed), so
//! the tree is as it was. One apply at a time: the caller holds the root's
//! lock from observing the tree to the last write.

use super::Value;
use super::diff::{Blocker, Change, Plan};
use crate::cgroupfs::{self, Root};
use crate::config::Controller;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// mkdir and write(2) calls made; zero when the tree already matched.
    pub writes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refusing to apply, nothing was written:{}", blockers.iter().map(|b| format!("\n  - {b}")).collect::<String>())]
    Blocked { blockers: Vec<Blocker> },
    #[error("apply failed at change {} of {total}, `{change}`: {source}; {rollback}", done + 1)]
    Failed {
        done: usize,
        total: usize,
        change: String,
        source: Box<cgroupfs::Error>,
        rollback: Rollback,
    },
}

/// What undoing a failed apply achieved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rollback {
    pub undone: usize,
    /// Undo steps that failed, each with its reason.
    pub failures: Vec<String>,
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.failures.is_empty() {
            write!(
                f,
                "the {} change(s) made before it were undone: the tree is as it was",
                self.undone
            )
        } else {
            write!(
                f,
                "undoing the changes made before it failed too, the tree is left half-changed:"
            )?;
            for failure in &self.failures {
                write!(f, "\n  - {failure}")?;
            }
            Ok(())
        }
    }
}

/// How to take one change back.
#[derive(Debug)]
enum Undo {
    /// The group did not exist before this run.
    Remove(String),
    /// These controllers were enabled by this run.
    Disable(String, Vec<Controller>),
    /// The knob held this value before this run.
    Restore(String, super::Knob, Value),
    /// Nothing to take back: the group already existed, or the knob is
    /// new in a group this run created or opened up (its undo covers it).
    Nothing,
}

pub fn apply(root: &Root, plan: &Plan) -> Result<Report, ApplyError> {
    if !plan.blockers.is_empty() {
        return Err(ApplyError::Blocked {
            blockers: plan.blockers.clone(),
        });
    }
    let total = plan.changes.len();
    let mut made = Vec::with_capacity(total);
    for (done, change) in plan.changes.iter().enumerate() {
        tracing::info!(%change, "apply");
        match perform(root, change) {
            Ok(undo) => made.push(undo),
            Err(source) => {
                tracing::error!(%change, "apply failed: {source}; undoing {done} change(s)");
                return Err(ApplyError::Failed {
                    done,
                    total,
                    change: change.to_string(),
                    source: Box::new(source),
                    rollback: undo_all(root, made),
                });
            }
        }
    }
    Ok(Report { writes: total })
}

fn perform(root: &Root, change: &Change) -> Result<Undo, cgroupfs::Error> {
    match change {
        Change::Create { group } => Ok(if root.create(group)? {
            Undo::Remove(group.clone())
        } else {
            Undo::Nothing
        }),
        Change::Enable { group, controllers } => {
            root.write(
                group,
                "cgroup.subtree_control",
                &subtree_request('+', controllers),
            )?;
            Ok(Undo::Disable(group.clone(), controllers.clone()))
        }
        Change::Set {
            group,
            knob,
            from,
            to,
        } => {
            root.write(group, knob.file(), &to.kernel_text())?;
            Ok(match from {
                Some(value) => Undo::Restore(group.clone(), *knob, *value),
                None => Undo::Nothing,
            })
        }
    }
}

fn subtree_request(sign: char, controllers: &[Controller]) -> String {
    controllers
        .iter()
        .map(|c| format!("{sign}{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Undoes `made` newest first; every step is tried, failures are kept.
fn undo_all(root: &Root, made: Vec<Undo>) -> Rollback {
    let mut rollback = Rollback::default();
    for undo in made.into_iter().rev() {
        let result = match &undo {
            Undo::Nothing => continue,
            Undo::Remove(group) => root.remove(group),
            Undo::Disable(group, controllers) => root.write(
                group,
                "cgroup.subtree_control",
                &subtree_request('-', controllers),
            ),
            Undo::Restore(group, knob, value) => {
                root.write(group, knob.file(), &value.kernel_text())
            }
        };
        match result {
            Ok(()) => rollback.undone += 1,
            Err(err) => rollback.failures.push(err.to_string()),
        }
    }
    rollback
}
