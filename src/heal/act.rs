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
        match root.holds_pid(&group, std::process::id()) {
            Ok(false) => {}
            Ok(true) => {
                actions.failures.push(format!(
                    "refused to kill {slice}: memslice itself runs in it"
                ));
                continue;
            }
            Err(err) => {
                actions.failures.push(format!(
                    "refused to kill {slice}: cannot tell whether memslice itself runs in it ({err})"
                ));
                continue;
            }
        }
        crate::spawn::task::record_kill_below(root, &group, &format!("memslice heal: {reason}"));
        match kill_and_wait(root, &group) {
            Ok(()) => actions.killed.push(slice.clone()),
            Err(err) => actions.failures.push(format!("kill {slice}: {err}")),
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
            Ok(_) => actions.restarted.push(service.name.clone()),
            Err(err) => actions
                .failures
                .push(format!("restart {}: {err}", service.name)),
        }
    }
    actions
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
