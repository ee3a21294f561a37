//! What the host offers: where cgroup v2 is mounted, whether its memory
//! controller is usable, the node's RAM. Parsers are pure; [`open_root`]
//! and [`node_facts`] read /proc.
//!
//! A hybrid host (systemd's default before v247, and the development
//! machines of this project) mounts cgroup2 at /sys/fs/cgroup/unified with
//! no controllers and binds memory to v1. memslice refuses such a root
//! with a message that says which layout it found and how to change it,
//! before any write.

use std::path::{Path, PathBuf};

use crate::cgroupfs::{self, Root};
use crate::config::{Controller, NodeFacts};
use crate::sys::SignalSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fs_type: String,
    pub super_options: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a cgroup v2 hierarchy (it is {fs_type}). {diagnosis}", path.display())]
    NotCgroup2 {
        path: PathBuf,
        fs_type: String,
        diagnosis: String,
    },
    #[error(
        "the memory controller is not available in {} (its cgroup.controllers lists: {listed}). {diagnosis}",
        path.display()
    )]
    NoMemoryController {
        path: PathBuf,
        listed: String,
        diagnosis: String,
    },
    #[error("cannot tell the node's RAM: {0}")]
    Meminfo(String),
    #[error(transparent)]
    Cgroup(#[from] cgroupfs::Error),
}

impl HostError {
    /// The root is not cgroup v2, or it offers no memory controller: the
    /// host cannot do what memslice is for (exit 3).
    pub fn unusable(&self) -> bool {
        matches!(
            self,
            HostError::NotCgroup2 { .. } | HostError::NoMemoryController { .. }
        )
    }
}

const UNIFIED_HINT: &str = "memslice needs the unified hierarchy: boot with `systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all` on the kernel command line (the default since systemd 247), or point --cgroup-root at a cgroup2 directory whose cgroup.controllers lists memory";

/// /proc/self/mountinfo, see proc(5): fields up to ` - `, then type, source,
/// super options.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let point = head.split(' ').nth(4)?;
            let mut tail = tail.split(' ');
            let fs_type = tail.next()?.to_string();
            let super_options = tail
                .nth(1)
                .unwrap_or("")
                .split(',')
                .map(str::to_string)
                .collect();
            Some(Mount {
                point: PathBuf::from(unescape_octal(point)),
                fs_type,
                super_options,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = field.get(i + 1..i + 4)
            && let Ok(byte) = u8::from_str_radix(octal, 8)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path`: the longest mount point that prefixes it;
/// the last one mounted wins on equal points.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, mount)| path.starts_with(&mount.point))
        .max_by_key(|(index, mount)| (mount.point.components().count(), *index))
        .map(|(_, mount)| mount)
}

/// Says why memory is missing, from what the mount table shows.
pub fn diagnose(mounts: &[Mount]) -> String {
    let v1_memory = mounts.iter().find(|mount| {
        mount.fs_type == "cgroup" && mount.super_options.iter().any(|opt| opt == "memory")
    });
    let v2 = mounts.iter().find(|mount| mount.fs_type == "cgroup2");
    match (v1_memory, v2) {
        (Some(v1), Some(v2)) => format!(
            "This host runs the hybrid cgroup layout: cgroup2 is mounted at {} but the memory controller is bound to cgroup v1 at {}. {UNIFIED_HINT}.",
            v2.point.display(),
            v1.point.display()
        ),
        (Some(v1), None) => format!(
            "This host runs the legacy cgroup v1 layout: the memory controller is mounted at {} and no cgroup2 is mounted. {UNIFIED_HINT}.",
            v1.point.display()
        ),
        (None, Some(v2)) => format!(
            "cgroup2 is mounted at {}; if memory is missing there, the kernel may lack CONFIG_MEMCG or boot with cgroup_disable=memory, and below the top the parent must enable it in cgroup.subtree_control (or delegate it).",
            v2.point.display()
        ),
        (None, None) => format!(
            "No cgroup2 file system is mounted (mount -t cgroup2 none /sys/fs/cgroup). {UNIFIED_HINT}."
        ),
    }
}

/// Opens `path` as memslice's cgroup root: a cgroup2 directory whose
/// cgroup.controllers offers memory. The mount table is read only to
/// explain a refusal.
pub fn open_root(path: &Path) -> Result<Root, HostError> {
    let root = match Root::open(path) {
        Ok(root) => root,
        Err(cgroupfs::Error::NotCgroup2 { .. }) => {
            return Err(not_cgroup2(path, &read_mountinfo().unwrap_or_default()));
        }
        Err(err) => return Err(err.into()),
    };
    let offered = root.controllers("")?;
    if !offered.contains(&Controller::Memory) {
        let listed: Vec<&str> = offered.iter().map(|c| c.name()).collect();
        return Err(HostError::NoMemoryController {
            path: path.to_path_buf(),
            listed: if listed.is_empty() {
                "nothing".into()
            } else {
                listed.join(" ")
            },
            diagnosis: diagnose(&parse_mountinfo(&read_mountinfo().unwrap_or_default())),
        });
    }
    Ok(root)
}

/// The refusal of a directory that is not on cgroup2, naming the file
/// system it is on and what the mount table says about cgroups.
pub fn not_cgroup2(path: &Path, mountinfo: &str) -> HostError {
    let mounts = parse_mountinfo(mountinfo);
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let fs_type = mount_of(&mounts, &canonical).map_or("unknown", |mount| mount.fs_type.as_str());
    HostError::NotCgroup2 {
        path: path.to_path_buf(),
        fs_type: fs_type.to_string(),
        diagnosis: diagnose(&mounts),
    }
}

pub fn read_mountinfo() -> Result<String, HostError> {
    read("/proc/self/mountinfo")
}

fn read(path: &str) -> Result<String, HostError> {
    let fail = |source| HostError::Read {
        path: PathBuf::from(path),
        source,
    };
    read_proc(path).map_err(fail)
}

/// A file of /proc, a page to start with (all but mountinfo fit). Bytes
/// that are not UTF-8 are replaced, not refused: a process names itself
/// (its comm, in stat), and one that picked invalid UTF-8 must not read
/// as gone to the footprint or the doctor.
pub fn read_proc(path: impl AsRef<Path>) -> std::io::Result<String> {
    let bytes = crate::files::read_all(&std::fs::File::open(path)?, 4096)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()))
}

/// The signals this process ignores or catches (SigIgn and SigCgt of
/// /proc/self/status): those a child must set back to their default action
/// before exec. Every signal when /proc cannot tell.
pub fn changed_signal_dispositions() -> SignalSet {
    read_proc("/proc/self/status")
        .ok()
        .and_then(|status| parse_changed_dispositions(&status))
        .unwrap_or(SignalSet::ALL)
}

/// SigIgn | SigCgt of a /proc/PID/status text (SigIgn comes first).
pub fn parse_changed_dispositions(status: &str) -> Option<SignalSet> {
    let mut lines = status.lines();
    let mut mask = |key: &str| {
        let hex = lines.find_map(|line| line.strip_prefix(key))?;
        u64::from_str_radix(hex.trim(), 16).ok()
    };
    Some(SignalSet(mask("SigIgn:")? | mask("SigCgt:")?))
}

/// /proc/self/cgroup's v2 line (`0::/path`) placed under the cgroup2 mount.
pub fn own_cgroup_dir(proc_self_cgroup: &str, cgroup2_mount: &Path) -> Option<PathBuf> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    Some(cgroup2_mount.join(path.trim().trim_start_matches('/')))
}

/// The fields of /proc/PID/stat after the command name (which may hold
/// spaces and parentheses): state first, then ppid, and so on.
pub fn process_stat(pid: u32) -> Option<String> {
    let stat = read_proc(format!("/proc/{pid}/stat")).ok()?;
    stat_after_command(&stat).map(str::to_string)
}

fn stat_after_command(stat: &str) -> Option<&str> {
    stat.rsplit_once(')').map(|(_, rest)| rest.trim_start())
}

/// The command name of `pid` (/proc/PID/comm), for messages.
pub fn process_name(pid: u32) -> Option<String> {
    read_proc(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim_end().to_string())
}

/// Whether `pid` runs: it exists and is no zombie.
pub fn process_runs(pid: u32) -> bool {
    process_stat(pid).is_some_and(|fields| !fields.starts_with('Z'))
}

/// When `pid` started, in clock ticks since boot (field 22 of its stat):
/// tells it from a later process that got the same pid.
pub fn process_start_time(pid: u32) -> Option<u64> {
    process_stat(pid)?.split_whitespace().nth(19)?.parse().ok()
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let kib: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

pub fn node_facts() -> Result<NodeFacts, HostError> {
    let meminfo = read("/proc/meminfo")?;
    let memory = parse_mem_total(&meminfo)
        .ok_or_else(|| HostError::Meminfo("/proc/meminfo has no MemTotal line in kB".into()))?;
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|size| u64::try_from(size).ok())
        .unwrap_or(4096);
    Ok(NodeFacts { memory, page_size })
}

/// `sleep 10` under the name `x\xff\xfe`, which is not UTF-8: a process
/// picks its own comm (its executable's file name), so a hostile one can.
#[cfg(test)]
pub struct NotUtf8Sleeper {
    pub child: std::process::Child,
    _dir: tempfile::TempDir,
}

#[cfg(test)]
impl NotUtf8Sleeper {
    pub fn start() -> NotUtf8Sleeper {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let program = dir.path().join(std::ffi::OsStr::from_bytes(b"x\xff\xfe"));
        std::os::unix::fs::symlink("/bin/sleep", &program).expect("symlink");
        let child = std::process::Command::new(&program)
            .arg("10")
            .spawn()
            .expect("spawn");
        // The parent may see exec succeed before the kernel renames the
        // child (the close-on-exec pipe closes first).
        let comm = format!("/proc/{}/comm", child.id());
        for _ in 0..1000 {
            if std::fs::read(&comm).is_ok_and(|name| name == b"x\xff\xfe\n") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        NotUtf8Sleeper { child, _dir: dir }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
31 26 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
";
    const UNIFIED: &str = "26 25 0:24 / /sys/fs/cgroup rw,nosuid shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn mountinfo_fields() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[3].point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mounts[3].fs_type, "cgroup");
        assert_eq!(mounts[3].super_options, vec!["rw", "memory"]);
        let spaced = parse_mountinfo("1 0 0:1 / /mnt/a\\040b rw - ext4 /dev/x rw\n");
        assert_eq!(spaced[0].point, PathBuf::from("/mnt/a b"));
    }

    #[test]
    fn the_longest_mount_point_holds_a_path() {
        let mounts = parse_mountinfo(HYBRID);
        let found = mount_of(&mounts, Path::new("/sys/fs/cgroup/unified/memslice")).expect("found");
        assert_eq!(found.fs_type, "cgroup2");
        assert_eq!(
            mount_of(&mounts, Path::new("/sys/fs/cgroup")).map(|m| m.fs_type.as_str()),
            Some("tmpfs")
        );
    }

    #[test]
    fn hybrid_hosts_are_named_as_such() {
        let message = diagnose(&parse_mountinfo(HYBRID));
        assert!(message.contains("hybrid cgroup layout"), "{message}");
        assert!(message.contains("/sys/fs/cgroup/memory"), "{message}");
        assert!(
            message.contains("systemd.unified_cgroup_hierarchy=1"),
            "{message}"
        );
        assert!(diagnose(&parse_mountinfo(UNIFIED)).contains("CONFIG_MEMCG"));
        assert!(diagnose(&[]).contains("No cgroup2"));
    }

    #[test]
    fn a_plain_directory_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let canonical = dir.path().canonicalize().expect("canonical");
        let mountinfo = format!(
            "{HYBRID}40 1 0:40 / {} rw - ext4 /dev/vda rw\n",
            canonical.display()
        );
        assert!(matches!(
            open_root(dir.path()),
            Err(HostError::NotCgroup2 { .. })
        ));
        let message = not_cgroup2(dir.path(), &mountinfo).to_string();
        assert!(
            message.contains("is not a cgroup v2 hierarchy (it is ext4)"),
            "{message}"
        );
        assert!(message.contains("hybrid"), "{message}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn a_cgroup2_root_without_memory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        cgroupfs::emulated::create_root(dir.path(), &[Controller::Pids]).expect("root");
        let message = open_root(dir.path()).expect_err("no memory").to_string();
        assert!(message.contains("lists: pids"), "{message}");
    }

    #[test]
    fn own_cgroup_is_read_from_the_v2_line() {
        let text = "12:memory:/user.slice\n0::/ops/heal\n";
        assert_eq!(
            own_cgroup_dir(text, Path::new("/sys/fs/cgroup")),
            Some(PathBuf::from("/sys/fs/cgroup/ops/heal"))
        );
        assert_eq!(
            own_cgroup_dir("1:name=systemd:/\n", Path::new("/sys/fs/cgroup")),
            None
        );
    }

    #[test]
    fn process_stat_skips_a_command_with_spaces_and_parentheses() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000";
        let fields = stat_after_command(stat).expect("fields");
        assert!(fields.starts_with("S 1 1234"));
        assert_eq!(fields.split_whitespace().nth(19), Some("98765"));
        assert!(process_runs(std::process::id()));
        assert!(process_start_time(std::process::id()).is_some());
    }

    #[test]
    fn a_child_resets_the_signals_ignored_or_caught() {
        let status = "Name:\tmemslice\nSigQ:\t0/3\nSigPnd:\t0000000000000000\n\
                      SigBlk:\t0000000000010000\nSigIgn:\t0000000000001001\n\
                      SigCgt:\t0000000180000000\n";
        let changed = parse_changed_dispositions(status).expect("masks");
        let listed: Vec<i32> = (1..=64)
            .filter(|&signal| changed.contains(signal))
            .collect();
        assert_eq!(
            listed,
            vec![1, 13, 32, 33],
            "SIGHUP and SIGPIPE ignored, 32 and 33 caught; SigBlk is no disposition"
        );
        assert_eq!(
            parse_changed_dispositions("SigIgn:\t0000000000001000\n"),
            None
        );
        assert_eq!(
            parse_changed_dispositions("SigIgn:\tzz\nSigCgt:\t0\n"),
            None
        );
        let own = changed_signal_dispositions();
        assert!(
            !own.contains(libc::SIGKILL),
            "read from /proc (SIGKILL cannot be ignored or caught), not every signal: {own:?}"
        );
        assert!(
            own.contains(libc::SIGPIPE),
            "the test harness ignores SIGPIPE, as Rust programs do"
        );
        assert!(SignalSet::ALL.contains(64) && !SignalSet::ALL.contains(65));
    }

    #[test]
    fn a_process_whose_name_is_not_utf8_still_runs() {
        let mut sleeper = NotUtf8Sleeper::start();
        let pid = sleeper.child.id();
        let comm = std::fs::read(format!("/proc/{pid}/comm")).expect("comm");
        let runs = process_runs(pid);
        sleeper.stop();
        assert_eq!(comm, b"x\xff\xfe\n", "the kernel took the name as given");
        assert!(runs, "a name that is not UTF-8 hid a running process");
    }

    #[test]
    fn mem_total() {
        assert_eq!(
            parse_mem_total("MemTotal:       16314856 kB\nMemFree: 1 kB\n"),
            Some(16_314_856 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots\n"), None);
    }
}
