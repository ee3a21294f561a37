//! Reads what the verdicts need, and nothing else: files under /proc and
//! /etc/pam.d, the cgroup root, `systemctl --version` and `is-enabled`.
//! Nothing here fails: what cannot be read is a fact too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Facts, HealerUnits, Pam, Process, User};
use crate::config::{Config, DriverSetting};
use crate::driver;
use crate::host;

/// Everything about this host, for `config_path`, `cgroup_root` and the
/// driver asked for on the command line (`None`: the config's).
pub fn gather(config_path: &Path, cgroup_root: &Path, asked: Option<DriverSetting>) -> Facts {
    let loaded = host::node_facts()
        .map_err(|err| err.to_string())
        .and_then(|node| Config::load(config_path, node).map_err(|err| err.to_string()));
    let setting = asked.unwrap_or_else(|| {
        loaded
            .as_ref()
            .map_or(DriverSetting::default(), |config| config.setting)
    });
    let driver_facts = driver::facts(cgroup_root);
    let resolved = driver::resolve(setting, &driver_facts);
    let config = loaded.and_then(|mut config| {
        config
            .place(resolved.driver, config_path, crate::caller::uid_of)
            .map(|()| config)
            .map_err(|err| err.to_string())
    });
    let opened = host::open_root(cgroup_root);
    let hierarchy = opened
        .as_ref()
        .ok()
        .and_then(|root| root.hierarchy_path().ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    let users = config
        .as_ref()
        .map(|config| users(config, &hierarchy))
        .unwrap_or_default();
    let release = nix::sys::utsname::uname()
        .map(|name| name.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Facts {
        config_path: config_path.to_path_buf(),
        config_trust: Config::files(config_path)
            .map_err(|err| err.to_string())
            .and_then(|files| {
                files.iter().try_for_each(|file| {
                    crate::files::root_would_read(file).map_err(|err| err.to_string())
                })
            }),
        config,
        cgroup_root: cgroup_root.to_path_buf(),
        memory: opened.map(|_| ()).map_err(|err| err.to_string()),
        cgroup2_options: cgroup2_options(cgroup_root),
        psi: std::fs::read_to_string("/proc/pressure/memory").is_ok(),
        kernel: (release.clone(), kernel_version(&release)),
        driver: resolved,
        systemd_booted: driver_facts.systemd_booted,
        systemd_version: systemd_version(),
        processes: processes(),
        healer_units: healer_units(driver_facts.systemd_booted),
        kmsg_readable: std::fs::File::open("/dev/kmsg").is_ok(),
        tzdata: Path::new("/usr/share/zoneinfo").is_dir(),
        users,
        pam: pam(&crate::locations::pam_dir()),
    }
}

fn users(config: &Config, hierarchy: &Path) -> Vec<User> {
    config
        .slices
        .iter()
        .flat_map(|slice| {
            let expected = hierarchy
                .join(config.layout.cgroup_of(&slice.path))
                .display()
                .to_string();
            slice.users.iter().map(move |name| User {
                name: name.clone(),
                slice: slice.path.clone(),
                uid: crate::caller::uid_of(name).ok().flatten(),
                expected: expected.clone(),
            })
        })
        .collect()
}

/// `6.1.0-13-amd64` → (6, 1).
pub(super) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn cgroup2_options(cgroup_root: &Path) -> Option<Vec<String>> {
    let mounts = host::parse_mountinfo(&host::read_mountinfo().ok()?);
    let root = cgroup_root.canonicalize().ok()?;
    host::mount_of(&mounts, &root)
        .filter(|mount| mount.fs_type == "cgroup2")
        .map(|mount| mount.super_options.clone())
}

/// `systemd 252 (252.22-1~deb12u1)` → 252.
pub(super) fn parse_systemd_version(output: &str) -> Option<u32> {
    output
        .lines()
        .next()?
        .strip_prefix("systemd ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn systemctl(args: &[&str]) -> Option<String> {
    let output = Command::new(crate::locations::systemctl())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn systemd_version() -> Option<u32> {
    parse_systemd_version(&systemctl(&["--version"])?)
}

/// Asked of systemd only where it runs: elsewhere the healer is started
/// by cron or the init system, which doctor cannot read.
fn healer_units(systemd_booted: bool) -> Option<HealerUnits> {
    if !systemd_booted {
        return None;
    }
    let enabled = |unit| {
        systemctl(&["is-enabled", unit]).is_some_and(|state| state.trim().starts_with("enabled"))
    };
    Some(HealerUnits {
        timer: enabled("memslice-heal.timer"),
        watcher: enabled("memslice-heal-watch.service"),
    })
}

/// Every process /proc shows, with its real uid and cgroup v2 path. One
/// that ends while it is read is left out.
fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process)
        .collect()
}

/// PF_KTHREAD in the flags of /proc/PID/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

pub(super) fn process(pid: u32) -> Option<Process> {
    // As host::read_proc reads them: a name that is not UTF-8 (the process
    // picks it) must not hide the process from the footprint check.
    let status = host::read_proc(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cgroup = host::read_proc(format!("/proc/{pid}/cgroup")).ok()?;
    let cgroup = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let flags: u64 = host::process_stat(pid)?
        .split_whitespace()
        .nth(6)?
        .parse()
        .ok()?;
    Some(Process {
        pid,
        uid,
        comm: host::process_name(pid).unwrap_or_default(),
        cgroup,
        kernel_thread: flags & PF_KTHREAD != 0,
    })
}

fn pam(dir: &Path) -> Pam {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let mut stacks: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .collect();
    stacks.sort();
    let hook_in = stacks
        .iter()
        .filter(|name| read(name).is_some_and(|stack| runs_the_hook(&stack)))
        .cloned()
        .collect();
    let cron_logind = read("cron").map(|cron| {
        let included: Vec<String> = includes(&cron).filter_map(read).collect();
        std::iter::once(cron.as_str())
            .chain(included.iter().map(String::as_str))
            .any(opens_logind_sessions)
    });
    let user_environment = stacks
        .into_iter()
        .filter(|name| hook_after_user_environment(&flattened(name, &read, &mut Vec::new())))
        .collect();
    Pam {
        hook_in,
        cron_logind,
        user_environment,
    }
}

/// The active lines of stack `name`, each included file's in its place
/// (each file once: `seen`).
fn flattened(
    name: &str,
    read: &impl Fn(&str) -> Option<String>,
    seen: &mut Vec<String>,
) -> Vec<String> {
    if seen.iter().any(|known| known == name) {
        return Vec::new();
    }
    seen.push(name.to_string());
    let Some(text) = read(name) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for line in active_lines(&text) {
        match included(line) {
            Some(file) => lines.extend(flattened(file, read, seen)),
            None => lines.push(line.to_string()),
        }
    }
    lines
}

/// Whether the hook runs with an environment its user filled: pam_env
/// with user_readenv=1 in the auth phase (which comes first), or before
/// the hook in the session phase.
pub(super) fn hook_after_user_environment(lines: &[String]) -> bool {
    let reads = |line: &str| {
        let mut words = line.split_whitespace();
        words.any(|word| word.ends_with("pam_env.so")) && words.any(|word| word == "user_readenv=1")
    };
    let mut filled = lines
        .iter()
        .any(|line| line.starts_with("auth") && reads(line));
    for line in lines.iter().filter(|line| line.starts_with("session")) {
        if runs_the_hook(line) && filled {
            return true;
        }
        filled |= reads(line);
    }
    false
}

/// PAM lines without their comments.
fn active_lines(stack: &str) -> impl Iterator<Item = &str> {
    stack
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
}

pub(super) fn runs_the_hook(stack: &str) -> bool {
    active_lines(stack).any(|line| line.contains("memslice") && line.contains("pam-session"))
}

pub(super) fn opens_logind_sessions(stack: &str) -> bool {
    active_lines(stack).any(|line| line.starts_with("session") && line.contains("pam_systemd.so"))
}

/// The files a stack includes.
fn includes(stack: &str) -> impl Iterator<Item = &str> {
    active_lines(stack).filter_map(included)
}

/// The file a line includes: `@include FILE`, or `TYPE include FILE` and
/// `TYPE substack FILE`.
fn included(line: &str) -> Option<&str> {
    if let Some(file) = line.strip_prefix("@include") {
        return Some(file.trim());
    }
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [_, "include" | "substack", file] => Some(file),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(kernel_version("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.14"), Some((5, 14)));
        assert_eq!(kernel_version("weird"), None);
        assert_eq!(
            parse_systemd_version("systemd 252 (252.22-1~deb12u1)\n+PAM +AUDIT\n"),
            Some(252)
        );
        assert_eq!(parse_systemd_version("nonsense"), None);
    }

    #[test]
    fn pam_stacks_are_read_without_their_comments() {
        assert!(runs_the_hook(
            "session optional pam_exec.so quiet seteuid /usr/bin/memslice pam-session\n"
        ));
        assert!(!runs_the_hook(
            "# session optional pam_exec.so /usr/bin/memslice pam-session\n"
        ));
        assert!(opens_logind_sessions(
            "session\toptional\tpam_systemd.so \n"
        ));
        assert!(!opens_logind_sessions("#session optional pam_systemd.so\n"));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("cron"),
            "@include common-auth\nsession required pam_loginuid.so\n@include common-session-noninteractive \n",
        )
        .expect("cron");
        std::fs::write(
            dir.path().join("common-session-noninteractive"),
            "session required pam_unix.so\nsession optional pam_exec.so quiet seteuid type=open_session /usr/bin/memslice pam-session\n",
        )
        .expect("noninteractive");
        let found = pam(dir.path());
        assert_eq!(found.hook_in, ["common-session-noninteractive"]);
        assert_eq!(found.cron_logind, Some(false));
        std::fs::write(
            dir.path().join("common-session-noninteractive"),
            "session optional pam_systemd.so\n",
        )
        .expect("noninteractive");
        assert_eq!(pam(dir.path()).cron_logind, Some(true));
        assert_eq!(pam(&dir.path().join("none")).cron_logind, None);
    }

    #[test]
    fn a_stack_that_runs_the_hook_after_users_filled_the_environment_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write =
            |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect(name);
        write(
            "common-session",
            "session optional pam_exec.so quiet seteuid /usr/bin/memslice pam-session\n",
        );
        // Debian's sshd: its user_readenv comes after the hook.
        write(
            "sshd",
            "@include common-session\nsession required pam_env.so user_readenv=1 envfile=/etc/default/locale\n",
        );
        write(
            "su",
            "auth required pam_env.so user_readenv=1\n@include common-session\n",
        );
        write("login", "session include system-session\n");
        write(
            "system-session",
            "session required pam_env.so user_readenv=1\nsession substack common-session\n",
        );
        write(
            "cron",
            "session required pam_env.so envfile=/etc/default/locale\n# session required pam_env.so user_readenv=1\n@include common-session\n",
        );
        write(
            "loop",
            "@include loop\nsession required pam_env.so user_readenv=1\n",
        );
        assert_eq!(
            pam(dir.path()).user_environment,
            ["login", "su", "system-session"]
        );
    }
}
