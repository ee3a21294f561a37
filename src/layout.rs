//! Where each slice of slices.toml lives in the cgroup tree, under each
//! driver. Pure naming, depended on by config and by the drivers, so
//! neither depends on the other.
//!
//! Under the systemd driver a slice is a slice unit, and a unit's name
//! spells out its parents (`app-web.slice` is below `app.slice`). A
//! top-level slice that names its user (`users = ["app"]`) is that user's
//! own `user-UID.slice`, which logind always puts below `user.slice` and
//! where it places the user's sessions and user manager: its children are
//! `user-UID-web.slice` and so on, so everything the user runs shares its
//! cap.

use std::fmt::{self, Write as _};

/// Who writes the cgroup tree, as kubelet and runc have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// memslice writes the tree under --cgroup-root itself.
    #[default]
    Cgroupfs,
    /// systemd owns the tree; memslice writes slice units and drop-ins.
    Systemd,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Cgroupfs => "cgroupfs",
            Driver::Systemd => "systemd",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `[node] driver` or `--driver` asks for: a driver, or `auto`, which
/// the host decides (see `driver::resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverSetting {
    /// systemd where systemd owns the tree, cgroupfs elsewhere.
    #[default]
    Auto,
    Cgroupfs,
    Systemd,
}

impl DriverSetting {
    pub const ALL: [DriverSetting; 3] = [
        DriverSetting::Auto,
        DriverSetting::Cgroupfs,
        DriverSetting::Systemd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DriverSetting::Auto => "auto",
            DriverSetting::Cgroupfs => "cgroupfs",
            DriverSetting::Systemd => "systemd",
        }
    }

    pub fn parse(name: &str) -> Option<DriverSetting> {
        DriverSetting::ALL
            .into_iter()
            .find(|setting| setting.name() == name)
    }

    /// Whether the systemd driver's rules (unit names, one user per user
    /// slice) apply to a config with this setting: `auto` may pick systemd,
    /// so a config checked under it works on either kind of host.
    pub fn may_be_systemd(self) -> bool {
        self != DriverSetting::Cgroupfs
    }
}

impl fmt::Display for DriverSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Under the cgroupfs driver, the leaf group of a slice with users that
/// holds their sessions: cgroup v2 lets no process sit in a group whose
/// children have controllers enabled.
pub const SESSIONS: &str = "sessions";

/// A top-level slice that is a user's own slice, and the user's uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSlice {
    pub slice: String,
    pub uid: u32,
}

/// How a slice relates to a user's own slice under the systemd driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSliceRole {
    /// It is the user's `user-UID.slice`, which logind owns.
    Own,
    /// It is below one (`user-UID-web.slice`).
    Below,
}

/// Where every slice lives for one driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    driver: Driver,
    /// systemd driver only: the top-level slices that are `user-UID.slice`.
    user_slices: Vec<UserSlice>,
}

impl Layout {
    pub fn cgroupfs() -> Layout {
        Layout::default()
    }

    pub fn systemd(user_slices: Vec<UserSlice>) -> Layout {
        Layout {
            driver: Driver::Systemd,
            user_slices,
        }
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The cgroup (relative to the root) that holds a slice: `app/web`, or
    /// under the systemd driver `app.slice/app-web.slice`, or
    /// `user.slice/user-1000.slice/user-1000-web.slice` when app is the
    /// slice of uid 1000.
    pub fn cgroup_of(&self, slice: &str) -> String {
        match self.driver {
            Driver::Cgroupfs => slice.to_string(),
            Driver::Systemd => self.units_down_to(slice).join("/"),
        }
    }

    /// The slice unit of a slice under the systemd driver: `app-web.slice`,
    /// `user-1000-web.slice`.
    pub fn slice_unit(&self, slice: &str) -> String {
        self.units_down_to(slice).pop().unwrap_or_default()
    }

    /// The uid whose own slice `slice` is: set for a top-level slice with a
    /// user under the systemd driver, whose unit logind owns (memslice
    /// writes a drop-in for it, not a unit file).
    fn user_of(&self, slice: &str) -> Option<u32> {
        self.user_slices
            .iter()
            .find(|user| user.slice == slice)
            .map(|user| user.uid)
    }

    /// Whether `slice` is a user's own slice or below one.
    pub fn user_slice_role(&self, slice: &str) -> Option<UserSliceRole> {
        let top = slice.split('/').next().unwrap_or_default();
        self.user_of(top)?;
        Some(if top == slice {
            UserSliceRole::Own
        } else {
            UserSliceRole::Below
        })
    }

    /// The slice units from the top down to `slice`, each named after its
    /// whole path as systemd requires.
    fn units_down_to(&self, slice: &str) -> Vec<String> {
        let mut segments = slice.split('/');
        let top = segments.next().unwrap_or_default();
        // Plain concatenation: every config load names each slice's units.
        let unit = |name: &str| [name, ".slice"].concat();
        let mut units = Vec::new();
        let mut name = match self.user_of(top) {
            Some(uid) => {
                units.push(unit("user"));
                ["user-", &uid.to_string()].concat()
            }
            None => escape(top),
        };
        units.push(unit(&name));
        for segment in segments {
            name.push('-');
            name.push_str(&escape(segment));
            units.push(unit(&name));
        }
        units
    }
}

/// systemd's escaping of a name segment (systemd-escape): `-` would read
/// as a level of the slice tree. Byte by byte, as systemd does.
fn escape(segment: &str) -> String {
    let mut escaped = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' {
            escaped.push(char::from(byte));
        } else {
            let _ = write!(escaped, "\\x{byte:02x}");
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_names_spell_out_the_path() {
        let layout = Layout::systemd(Vec::new());
        assert_eq!(layout.slice_unit("app"), "app.slice");
        assert_eq!(layout.slice_unit("app/web"), "app-web.slice");
        assert_eq!(layout.slice_unit("app/php-fpm"), "app-php\\x2dfpm.slice");
        assert_eq!(layout.cgroup_of("app/web"), "app.slice/app-web.slice");
        assert_eq!(layout.cgroup_of("ops"), "ops.slice");
        assert_eq!(Layout::cgroupfs().cgroup_of("app/web"), "app/web");
    }

    #[test]
    fn a_user_slice_is_the_users_own_slice_below_user_slice() {
        let layout = Layout::systemd(vec![UserSlice {
            slice: "app".into(),
            uid: 1000,
        }]);
        assert_eq!(layout.slice_unit("app"), "user-1000.slice");
        assert_eq!(layout.cgroup_of("app"), "user.slice/user-1000.slice");
        assert_eq!(layout.slice_unit("app/web"), "user-1000-web.slice");
        assert_eq!(
            layout.cgroup_of("app/web/php-fpm"),
            "user.slice/user-1000.slice/user-1000-web.slice/user-1000-web-php\\x2dfpm.slice"
        );
        assert_eq!(layout.user_of("app"), Some(1000));
        assert_eq!(layout.user_of("app/web"), None);
        assert_eq!(layout.user_slice_role("app"), Some(UserSliceRole::Own));
        assert_eq!(
            layout.user_slice_role("app/web/php-fpm"),
            Some(UserSliceRole::Below)
        );
        assert_eq!(layout.user_slice_role("ops"), None);
        assert_eq!(layout.cgroup_of("ops"), "ops.slice");
        assert_eq!(layout.slice_unit("application"), "application.slice");
    }

    #[test]
    fn settings_parse_by_name() {
        for setting in DriverSetting::ALL {
            assert_eq!(DriverSetting::parse(setting.name()), Some(setting));
        }
        assert_eq!(DriverSetting::parse("docker"), None);
        assert!(DriverSetting::Auto.may_be_systemd());
        assert!(!DriverSetting::Cgroupfs.may_be_systemd());
    }
}
