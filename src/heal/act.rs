//! The healer's actions: kill the protected tasks, wait until they are
//! gone, restart the services that are down. It never kills a group that
//! holds memslice itself, whatever the config says.

use std::time::Duration;

use super::probe;
use crate::cgroupfs::Root;
use crate::config::heal::{HealConfig, Restart};

/// How long killed tasks may take to leave (reclaim under pressure is slow).
const GONE_TIMEOUT: Duration = Duration::from_secs(30);
const RESTART_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Actions {
    pub killed: Vec<String>,
    pub restarted: Vec<String>,
    pub failures: Vec<String>,
}

/// `reason`: the verdict, recorded on each killed task group so the
/// memslice that started it can tell its caller why.
pub fn heal(root: &Root, config: &HealConfig, down: &[String], reason: &str) -> Actions {
    let mut actions = Actions::default();
    for slice in &config.protected {
        let group = config.layout.cgroup_of(slice);
        if !root.exists(&group) {
            continue;
        }
        // Fails closed: a group memslice cannot look into is not killed.
        let outcome = match root.holds_pid(&group, std::process::id()) {
            Ok(false) => {
                crate::spawn::task::record_kill_below(
                    root,
                    &group,
                    &format!("memslice heal: {reason}"),
                );
                kill_and_wait(root, &group).map_err(|err| format!("kill {slice}: {err}"))
            }
            Ok(true) => Err(format!(
                "refused to kill {slice}: memslice itself runs in it"
            )),
            Err(err) => Err(format!(
                "refused to kill {slice}: cannot tell whether memslice itself runs in it ({err})"
            )),
        };
        // Logged where it happens, with the group for the journal.
        match outcome {
            Ok(()) => {
                tracing::warn!(group = %group, event = "kill", "killed the protected tasks in {slice}");
                actions.killed.push(slice.clone());
            }
            Err(failure) => {
                tracing::error!(group = %group, event = "kill", "heal action failed: {failure}");
                actions.failures.push(failure);
            }
        }
    }
    for service in config.services.iter().filter(|s| down.contains(&s.name)) {
        let Some(restart) = &service.restart else {
            continue;
        };
        let argv = match restart {
            Restart::Unit(unit) => {
                vec![
                    crate::locations::systemctl().display().to_string(),
                    "restart".to_string(),
                    unit.clone(),
                ]
            }
            Restart::Command(argv) => argv.clone(),
        };
        match probe::command(&argv, RESTART_TIMEOUT) {
            Ok(_) => {
                tracing::warn!(service = %service.name, event = "restart", "restarted {}", service.name);
                actions.restarted.push(service.name.clone());
            }
            Err(err) => {
                let failure = format!("restart {}: {err}", service.name);
                tracing::error!(service = %service.name, event = "restart", "heal action failed: {failure}");
                actions.failures.push(failure);
            }
        }
    }
    actions
}

/// The longest an action may take: every protected slice killed and waited
/// for, every service restarted, each to its timeout.
pub(super) fn longest(config: &HealConfig) -> Duration {
    let times = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let restarts = config
        .services
        .iter()
        .filter(|s| s.restart.is_some())
        .count();
    GONE_TIMEOUT.saturating_mul(times(config.protected.len()))
        + RESTART_TIMEOUT.saturating_mul(times(restarts))
}

fn kill_and_wait(root: &Root, group: &str) -> Result<(), String> {
    match root.kill_and_wait(group, GONE_TIMEOUT, || {}) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "processes remain {}s after cgroup.kill",
            GONE_TIMEOUT.as_secs()
        )),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroupfs::emulated;
    use crate::config::Controller;
    use crate::config::heal::{Probe, Service};

    #[test]
    fn kills_only_the_protected_groups_then_restarts_what_is_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::emulated(dir.path());
        emulated::create_root(dir.path(), &[Controller::Memory]).expect("root");
        for group in ["app", "app/tasks", "app/web", "ops"] {
            root.create(group).expect("create");
        }
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        root.write("app/tasks", "cgroup.procs", &sleeper.id().to_string())
            .expect("fake membership");
        let marker = dir.path().join("restarted");
        let config = HealConfig {
            failures_before_down: 1,
            services: vec![
                Service {
                    name: "web".into(),
                    probe: Probe::Command(vec!["true".into()]),
                    timeout: Duration::from_secs(1),
                    restart: Some(Restart::Command(vec![
                        "touch".into(),
                        marker.display().to_string(),
                    ])),
                },
                Service {
                    name: "db".into(),
                    probe: Probe::Command(vec!["true".into()]),
                    timeout: Duration::from_secs(1),
                    restart: Some(Restart::Command(vec!["false".into()])),
                },
            ],
            ..crate::config::heal::example()
        };
        let actions = heal(&root, &config, &["web".to_string()], "web down");
        assert_eq!(
            actions,
            Actions {
                killed: vec!["app/tasks".into()],
                restarted: vec!["web".into()],
                failures: vec![]
            }
        );
        let status = sleeper.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the task was not killed"
        );
        assert!(marker.exists(), "web's restart command did not run");
        root.write("app/tasks", "cgroup.procs", &std::process::id().to_string())
            .expect("memslice in the group");
        let refused = heal(&root, &config, &[], "web down");
        assert!(refused.killed.is_empty(), "killed its own group");
        assert!(
            refused.failures[0].contains("memslice itself runs in it"),
            "{:?}",
            refused.failures
        );
        root.write("app/tasks", "cgroup.procs", "not a pid list")
            .expect("unreadable membership");
        let unsure = heal(&root, &config, &[], "web down");
        assert!(
            unsure.killed.is_empty(),
            "killed a group it could not look into"
        );
        assert!(
            unsure.failures[0].contains("cannot tell whether memslice itself runs in it"),
            "{:?}",
            unsure.failures
        );
        root.write("app/tasks", "cgroup.procs", "").expect("empty");
        let failed = heal(&root, &config, &["db".to_string()], "db down");
        assert_eq!(failed.restarted, Vec::<String>::new());
        assert!(
            failed.failures[0].starts_with("restart db: false: exit status: 1"),
            "{:?}",
            failed.failures
        );
    }
}
