//! Where each slice of slices.toml lives in the cgroup tree, under each
//! driver. Pure naming, depended on by config and by the drivers, so
//! neither depends on the other.

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
    /// The cgroup (relative to the root) that holds a slice.
    pub fn cgroup_of(self, slice: &str) -> String {
        match self {
            Driver::Cgroupfs => slice.to_string(),
            Driver::Systemd => cgroup_path(slice),
        }
    }

    pub fn parse(name: &str) -> Option<Driver> {
        match name {
            "cgroupfs" => Some(Driver::Cgroupfs),
            "systemd" => Some(Driver::Systemd),
            _ => None,
        }
    }
}

/// systemd's escaping of a name segment (systemd-escape): `-` would read
/// as a level of the slice tree.
fn escape(segment: &str) -> String {
    segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("\\x{:02x}", c as u32)
            }
        })
        .collect()
}

/// `app/web` → `app-web.slice`.
pub fn slice_unit(path: &str) -> String {
    let parts: Vec<String> = path.split('/').map(escape).collect();
    format!("{}.slice", parts.join("-"))
}

/// `app/web` → `app.slice/app-web.slice`, the cgroup systemd makes for it.
pub fn cgroup_path(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    (1..=segments.len())
        .map(|depth| slice_unit(&segments[..depth].join("/")))
        .collect::<Vec<_>>()
        .join("/")
}
