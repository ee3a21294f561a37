//! Reading and writing the unit directory, and asking systemd to reload
//! (systemctl at its fixed path, see `locations`). Unit files are replaced
//! atomically and never through a symlink (see `files`).

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{DROP_IN, MARKER, UnitChange};
use crate::files::{self, FileError};

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot read {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("cannot write {}: {err}", path.display())]
    Write { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Unit(#[from] FileError),
    #[error("`{command}` failed: {detail}")]
    Systemctl { command: String, detail: String },
}

fn read_optional(path: &Path) -> Result<Option<String>, SystemdError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(SystemdError::Read {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// The files at the paths memslice wants, and every file memslice wrote
/// before (marked), relative to `unit_dir`.
pub fn observe(
    unit_dir: &Path,
    desired: &BTreeMap<PathBuf, String>,
) -> Result<BTreeMap<PathBuf, String>, SystemdError> {
    let mut found = BTreeMap::new();
    for path in desired.keys() {
        if let Some(text) = read_optional(&unit_dir.join(path))? {
            found.insert(path.clone(), text);
        }
    }
    let entries = match fs::read_dir(unit_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(found),
        Err(err) => {
            return Err(SystemdError::Read {
                path: unit_dir.to_path_buf(),
                err,
            });
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let candidate = if name.ends_with(".slice") {
            PathBuf::from(&name)
        } else if name.ends_with(".service.d") || name.ends_with(".slice.d") {
            Path::new(&name).join(DROP_IN)
        } else {
            continue;
        };
        if found.contains_key(&candidate) {
            continue;
        }
        if let Some(text) = read_optional(&unit_dir.join(&candidate))?
            && text.starts_with(MARKER)
        {
            found.insert(candidate, text);
        }
    }
    Ok(found)
}

/// Writes the changes all or nothing, reloads systemd if anything changed,
/// and starts the slices so their settings are in force. Every new file is
/// staged first (a full disk or a bad directory fails there, before any
/// unit changes); then each is put in place, and a failure there puts back
/// what was replaced. Returns the number of files written or removed.
pub fn apply(
    unit_dir: &Path,
    changes: &[UnitChange],
    slices: &[String],
) -> Result<usize, SystemdError> {
    let mut staged = Vec::with_capacity(changes.len());
    for change in changes {
        let path = unit_dir.join(change.path());
        let stage = match change {
            UnitChange::Create { content, .. } | UnitChange::Update { new: content, .. } => {
                files::private_dir(files::parent_dir(&path), 0o755)?;
                Some(files::stage(&path, content.as_bytes(), 0o644)?)
            }
            UnitChange::Remove { .. } => None,
        };
        staged.push((change, path, stage));
    }
    let mut done: Vec<(&UnitChange, PathBuf)> = Vec::with_capacity(staged.len());
    for (change, path, stage) in staged {
        let result = match stage {
            Some(stage) => stage.commit(),
            None => remove_unit_file(&path),
        };
        if let Err(err) = result {
            put_back(&done);
            return Err(err.into());
        }
        tracing::info!(file = %path.display(), "unit file changed");
        done.push((change, path));
    }
    if !changes.is_empty() {
        systemctl(&["daemon-reload"])?;
    }
    let inactive: Vec<&str> = slices
        .iter()
        .map(String::as_str)
        .filter(|unit| systemctl(&["is-active", "--quiet", unit]).is_err())
        .collect();
    if !inactive.is_empty() {
        let mut args = vec!["start"];
        args.extend(inactive);
        systemctl(&args)?;
    }
    Ok(changes.len())
}

fn remove_unit_file(path: &Path) -> Result<(), FileError> {
    fs::remove_file(path).map_err(|source| FileError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = path
        .parent()
        .filter(|d| d.extension().is_some_and(|e| e == "d"))
    {
        // Only if empty: other drop-ins are not ours.
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}

/// Undoes the changes already in place, newest first, after a failure.
fn put_back(done: &[(&UnitChange, PathBuf)]) {
    for (change, path) in done.iter().rev() {
        let result = match change {
            UnitChange::Create { .. } => remove_unit_file(path),
            UnitChange::Update { old, .. } | UnitChange::Remove { old, .. } => {
                files::private_dir(files::parent_dir(path), 0o755)
                    .and_then(|()| files::replace(path, old.as_bytes(), 0o644))
            }
        };
        if let Err(err) = result {
            tracing::error!("could not put back {}: {err}", path.display());
        }
    }
}

fn systemctl(args: &[&str]) -> Result<(), SystemdError> {
    let program = crate::locations::systemctl();
    let command = format!("{} {}", program.display(), args.join(" "));
    let output =
        Command::new(&program)
            .args(args)
            .output()
            .map_err(|err| SystemdError::Systemctl {
                command: command.clone(),
                detail: err.to_string(),
            })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(SystemdError::Systemctl {
            command,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}
