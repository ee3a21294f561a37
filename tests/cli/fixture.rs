//! Each test gets its own temp dir with an emulated cgroup root and a config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use assert_cmd::Command;
use memslice::cgroupfs::emulated;
use memslice::config::Controller;

pub const SHIPPED: &str = include_str!("../../slices.toml");

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// An emulated root offering memory and pids, and `config` as slices.toml.
    pub fn new(config: &str) -> Fixture {
        let fixture = Fixture::bare(config);
        emulated::create_root(&fixture.root(), &[Controller::Memory, Controller::Pids])
            .expect("emulated root");
        fixture
    }

    /// A config and an empty directory that is no cgroup root at all.
    pub fn bare(config: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("cgroup")).expect("root dir");
        std::fs::write(dir.path().join("slices.toml"), config).expect("config");
        Fixture { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("cgroup")
    }

    /// Where root's locks go (MEMSLICE_TEST_LOCK_DIR), in place of
    /// /run/memslice/locks.
    pub fn locks(&self) -> PathBuf {
        self.dir.path().join("locks")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("slices.toml")
    }

    /// Where /run/systemd/system would be: absent, so the driver `auto`
    /// picks does not depend on the host the tests run on. A test of a
    /// systemd host passes `MEMSLICE_TEST_RUN_SYSTEMD` = [`Fixture::systemd_booted`].
    fn no_systemd(&self) -> PathBuf {
        self.dir.path().join("no-systemd")
    }

    /// A directory standing for /run/systemd/system: systemd is PID 1.
    pub fn systemd_booted(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn memslice(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.memslice_env(&[], args)
    }

    pub fn memslice_env(&self, env: &[(&str, &str)], args: &[&str]) -> assert_cmd::assert::Assert {
        Command::cargo_bin("memslice")
            .expect("binary")
            .env_remove("MEMSLICE_LOG")
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env("MEMSLICE_TEST_RUN_SYSTEMD", self.no_systemd())
            .env("MEMSLICE_TEST_LOCK_DIR", self.locks())
            .envs(env.iter().copied())
            .arg("--config")
            .arg(self.config())
            .arg("--cgroup-root")
            .arg(self.root())
            .args(args)
            .assert()
    }

    /// memslice with the fixture's config and `root` as its cgroup root,
    /// for what the assert_cmd wrappers cannot ask: another uid, the
    /// host's own root.
    pub fn command_on(&self, root: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_memslice"));
        command
            .env_remove("MEMSLICE_LOG")
            .env_remove("SUDO_UID")
            .env("MEMSLICE_TEST_RUN_SYSTEMD", self.no_systemd())
            .env("MEMSLICE_TEST_LOCK_DIR", self.locks())
            .arg("--config")
            .arg(self.config())
            .arg("--cgroup-root")
            .arg(root);
        command
    }

    /// memslice as an app user runs it through sudo: root, with SUDO_UID
    /// and SUDO_GID of `user`, and no global option. A test build finds the
    /// fixture's config and root through its MEMSLICE_TEST_* variables,
    /// which a release binary does not have.
    pub fn memslice_as_sudo(
        &self,
        user: &nix::unistd::User,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> assert_cmd::assert::Assert {
        let mut command = self.command_as_sudo(user);
        command.envs(env.iter().copied()).args(args);
        Command::from_std(command).assert()
    }

    /// [`Fixture::memslice_as_sudo`]'s command, for what assert_cmd cannot
    /// ask: a process to watch while it runs, its working directory.
    pub fn command_as_sudo(&self, user: &nix::unistd::User) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_memslice"));
        command
            .env_remove("MEMSLICE_LOG")
            .env("MEMSLICE_TEST_CONFIG", self.config())
            .env("MEMSLICE_TEST_CGROUP_ROOT", self.root())
            .env("SUDO_UID", user.uid.to_string())
            .env("SUDO_GID", user.gid.to_string())
            .env("MEMSLICE_TEST_RUN_SYSTEMD", self.no_systemd())
            .env("MEMSLICE_TEST_LOCK_DIR", self.locks());
        command
    }

    pub fn read(&self, group: &str, file: &str) -> String {
        std::fs::read_to_string(self.root().join(group).join(file))
            .unwrap_or_else(|err| panic!("{group}/{file}: {err}"))
            .trim()
            .to_string()
    }

    pub fn write(&self, group: &str, file: &str, value: &str) {
        std::fs::write(self.root().join(group).join(file), value).expect("write");
    }

    /// A task group as memslice makes one for a `mode` task, watched by this
    /// process and with a process in it (cgroup.events says so).
    pub fn running_task(&self, group: &str, mode: memslice::spawn::policy::Mode) {
        use memslice::spawn::{policy::Mode, task};
        let root = memslice::cgroupfs::Root::emulated(self.root());
        assert!(root.create(group).expect("create"), "{group} exists");
        let record = task::TaskRecord {
            name: group.rsplit('/').next().unwrap_or(group).into(),
            mode,
            uid: 1000,
            command: "php import.php".into(),
            started: jiff::Timestamp::now(),
        };
        task::mark(&root, group, &record, mode == Mode::Protect).expect("mark");
        self.set_populated(group);
    }

    /// A group memslice did not make (a task's, a scope, a user's), with
    /// its interface files.
    pub fn made_outside(&self, group: &str) {
        let dir = self.root().join(group);
        std::fs::create_dir(&dir).expect("mkdir");
        emulated::populate(&dir).expect("populate");
    }

    /// Says in `group`'s cgroup.events that it has processes, as the
    /// kernel would.
    pub fn set_populated(&self, group: &str) {
        self.write(group, "cgroup.events", "populated 1\nfrozen 0\n");
    }

    /// Every file and group under the root with its value: equal listings
    /// mean the tree is as it was (values written back count as unchanged;
    /// the kernel reads a value back with a newline however it was
    /// written), the injected-faults file aside.
    pub fn listing(&self) -> BTreeMap<PathBuf, String> {
        self.snapshot()
            .into_iter()
            .filter(|(path, _)| !path.ends_with(memslice::cgroupfs::emulated::FAULTS))
            .map(|(path, (content, _))| (path, content.trim().to_string()))
            .collect()
    }

    /// Makes the emulated kernel refuse `operation` (write, mkdir, rmdir)
    /// on `path` with `errno`.
    pub fn inject_fault(&self, operation: &str, path: &str, errno: &str) {
        use std::io::Write;
        let mut faults = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root().join(memslice::cgroupfs::emulated::FAULTS))
            .expect("faults file");
        writeln!(faults, "{operation} {path} {errno}").expect("write fault");
    }

    /// Every file under the root with its content and mtime: equal
    /// snapshots mean nothing was written.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (String, SystemTime)> {
        let mut files = BTreeMap::new();
        walk(&self.root(), &mut files);
        files
    }
}

fn walk(dir: &Path, files: &mut BTreeMap<PathBuf, (String, SystemTime)>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            walk(&path, files);
            files.insert(path, (String::from("<dir>"), SystemTime::UNIX_EPOCH));
        } else {
            let meta = std::fs::metadata(&path).expect("metadata");
            let content = std::fs::read_to_string(&path).expect("content");
            files.insert(path, (content, meta.modified().expect("mtime")));
        }
    }
}

/// The shipped example on a 16G node, so sizes are predictable.
pub fn shipped_on_16g() -> String {
    SHIPPED.replace("memory = \"auto\"", "memory = \"16G\"")
}

/// The `nobody` user, who stands for the app user in sudo tests.
pub fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("the user nobody exists")
}

/// `path`'s entry in the groups of `status --json`.
pub fn status_group<'a>(json: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    json["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|group| group["path"] == path)
        .unwrap_or_else(|| panic!("{path} missing: {json}"))
}

pub fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

pub fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}
