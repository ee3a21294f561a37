//! Who is asking, and as whom the task runs: the user database and sudo's
//! SUDO_UID/SUDO_GID, turned into the policy's [`Person`] values.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

use super::policy::{Caller, Person};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no user {0:?} in the user database")]
    UnknownUser(String),
    #[error("no user with uid {0} in the user database")]
    UnknownUid(u32),
    #[error("{name}={value:?} set by sudo is not a number")]
    BadSudoVariable { name: &'static str, value: String },
    #[error("cannot read the user database: {0}")]
    Database(#[from] nix::Error),
}

/// The caller as the policy sees it: SUDO_UID is only believed when
/// memslice really runs as root, so an unprivileged user cannot forge it.
pub fn caller() -> Result<Caller, IdentityError> {
    let euid = Uid::effective();
    if !euid.is_root() {
        return Ok(Caller::Unprivileged(person_by_uid(
            Uid::current().as_raw(),
        )?));
    }
    match std::env::var("SUDO_UID") {
        Ok(value) => {
            let uid = value.parse().map_err(|_| IdentityError::BadSudoVariable {
                name: "SUDO_UID",
                value,
            })?;
            if uid == 0 {
                return Ok(Caller::Root);
            }
            let mut person = person_by_uid(uid)?;
            if let Ok(gid) = std::env::var("SUDO_GID") {
                person.gid = gid.parse().map_err(|_| IdentityError::BadSudoVariable {
                    name: "SUDO_GID",
                    value: gid,
                })?;
            }
            Ok(Caller::Sudo(person))
        }
        Err(_) => Ok(Caller::Root),
    }
}

pub fn person_by_name(name: &str) -> Result<Person, IdentityError> {
    let user =
        User::from_name(name)?.ok_or_else(|| IdentityError::UnknownUser(name.to_string()))?;
    person(user)
}

fn person_by_uid(uid: u32) -> Result<Person, IdentityError> {
    let user = User::from_uid(Uid::from_raw(uid))?.ok_or(IdentityError::UnknownUid(uid))?;
    person(user)
}

fn person(user: User) -> Result<Person, IdentityError> {
    let name = CString::new(user.name.clone())
        .map_err(|_| IdentityError::UnknownUser(user.name.clone()))?;
    let gids = getgrouplist(&name, user.gid)?;
    let groups = gids
        .iter()
        .filter_map(|gid| Group::from_gid(*gid).ok().flatten().map(|group| group.name))
        .collect();
    Ok(Person {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        gids: gids.into_iter().map(Gid::as_raw).collect(),
    })
}
