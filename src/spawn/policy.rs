//! Who may start what, where, with how much memory: a pure function of the
//! request, the config and the caller, so every refusal is a unit test.
//!
//! The caller is whoever asked: through sudo, that is the invoking user
//! (SUDO_UID), not root. A caller through sudo may only start tasks in the
//! protect slice, and only if the policy names them; the task then runs as
//! that user. Root without sudo may do anything, including `--user`.

pub use crate::caller::{Caller, Person};
use crate::config::{Config, Controller, Driver, Limit, ProtectPolicy, effective_max, slice_list};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Run,
    Protect,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub mode: Mode,
    pub slice: Option<String>,
    pub memory_max: Option<Limit>,
    pub oom_group: Option<bool>,
    pub oom_score_adj: Option<i32>,
    /// `--user`: run as this user instead of the caller.
    pub user: Option<Person>,
}

/// What will be started, after every rule passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub slice: String,
    pub memory_max: Option<Limit>,
    pub oom_group: bool,
    pub oom_score_adj: Option<i32>,
    /// `None`: keep memslice's own identity (root running as root, or an
    /// unprivileged user running as themself).
    pub run_as: Option<Person>,
    /// For `protect`: how many tasks may run in the slice at once.
    pub max_tasks: Option<u32>,
    pub mode: Mode,
    /// For a protected task: how long it may stall at its own cap.
    pub stall_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("slice {slice:?} is not in the config; known slices: {known}")]
    UnknownSlice { slice: String, known: String },
    #[error(
        "slice {slice} does not enable the memory controller for its children, so a task group there cannot have its own memory.max; add controllers = [\"memory\"] to [slice.{dotted}]"
    )]
    NoMemoryForTasks { slice: String, dotted: String },
    #[error("--memory-max {asked} is above {ceiling}, the {what}")]
    AboveLimit {
        asked: Limit,
        ceiling: Limit,
        what: String,
    },
    #[error("the config has no [protect] policy, so `protect` is not available")]
    NoPolicy,
    #[error(
        "user {user} may not protect tasks: [protect] users lists {users}, groups lists {groups}, and {user} is in {member_of}"
    )]
    NotAllowed {
        user: String,
        users: String,
        groups: String,
        member_of: String,
    },
    #[error("through sudo, tasks may only run in the protect slice {allowed}, not {asked}")]
    SliceNotForSudo { asked: String, allowed: String },
    #[error(
        "through sudo, use `memslice protect` for a negative oom_score_adj; `run` may only raise it"
    )]
    NegativeAdjNeedsProtect,
    #[error("oom_score_adj {0} is outside the kernel's range -1000 to 1000")]
    AdjOutOfRange(i32),
    #[error(
        "lowering oom_score_adj below 0 needs root (CAP_SYS_RESOURCE); run through sudo with `memslice protect`"
    )]
    NegativeAdjNeedsRoot,
    #[error("--user needs root; through sudo the task always runs as the invoking user")]
    UserNeedsRoot,
    #[error("--user {0} is not allowed: tasks never run as root on behalf of another user")]
    RootTarget(String),
    #[error(
        "{running} protected task(s) are running in {slice}, the most [protect] max_tasks allows is {max}"
    )]
    TooManyTasks {
        running: usize,
        max: u32,
        slice: String,
    },
}

pub fn decide(request: &Request, config: &Config, caller: &Caller) -> Result<Launch, Refusal> {
    let policy = config.protect.as_ref();
    if request.mode == Mode::Protect && policy.is_none() {
        return Err(Refusal::NoPolicy);
    }
    let slice = match (&request.slice, request.mode, policy) {
        (Some(slice), _, _) => slice.trim_matches('/').to_string(),
        (None, Mode::Protect, Some(policy)) => policy.slice.clone(),
        (None, _, Some(policy)) => policy.slice.clone(),
        (None, _, None) => String::new(),
    };
    let Some(slice_config) = config.slice(&slice) else {
        return Err(Refusal::UnknownSlice {
            slice,
            known: slice_list(&config.slices),
        });
    };
    // systemd enables the controllers its units need itself.
    if config.layout.driver() == Driver::Cgroupfs
        && !slice_config.controllers.contains(&Controller::Memory)
    {
        return Err(Refusal::NoMemoryForTasks {
            dotted: slice.replace('/', "."),
            slice,
        });
    }
    let adj = match request.mode {
        Mode::Protect => request.oom_score_adj.or(policy.map(|p| p.oom_score_adj)),
        Mode::Run => request.oom_score_adj,
    };
    if let Some(adj) = adj
        && !(-1000..=1000).contains(&adj)
    {
        return Err(Refusal::AdjOutOfRange(adj));
    }
    check_caller(request, caller, policy, &slice, adj)?;
    let memory_max = memory_max(request, config, &slice, policy)?;
    let run_as = match (caller, &request.user) {
        (Caller::Root, Some(user)) => Some(user.clone()),
        (Caller::Root | Caller::Unprivileged(_), None) => None,
        (Caller::Sudo(person), None) => Some(person.clone()),
        (Caller::Sudo(_) | Caller::Unprivileged(_), Some(_)) => return Err(Refusal::UserNeedsRoot),
    };
    Ok(Launch {
        slice,
        memory_max,
        oom_group: request
            .oom_group
            .unwrap_or(request.mode == Mode::Protect && policy.is_some_and(|p| p.oom_group)),
        oom_score_adj: adj,
        run_as,
        max_tasks: match request.mode {
            Mode::Protect => policy.map(|p| p.max_tasks),
            Mode::Run => None,
        },
        mode: request.mode,
        // A run lowered below 0 by root can stall as a protect does.
        stall_timeout: policy.map_or(Some(crate::config::DEFAULT_STALL_TIMEOUT), |p| {
            p.stall_timeout
        }),
    })
}

fn check_caller(
    request: &Request,
    caller: &Caller,
    policy: Option<&ProtectPolicy>,
    slice: &str,
    adj: Option<i32>,
) -> Result<(), Refusal> {
    let lowers = adj.is_some_and(|adj| adj < 0);
    match caller {
        Caller::Root => {
            if let Some(user) = &request.user
                && user.uid == 0
                && request.mode == Mode::Protect
            {
                return Err(Refusal::RootTarget(user.name.clone()));
            }
            Ok(())
        }
        Caller::Unprivileged(_) if lowers => Err(Refusal::NegativeAdjNeedsRoot),
        Caller::Unprivileged(_) => Ok(()),
        Caller::Sudo(person) => {
            let Some(policy) = policy else {
                return Err(Refusal::NoPolicy);
            };
            if slice != policy.slice {
                return Err(Refusal::SliceNotForSudo {
                    asked: slice.to_string(),
                    allowed: policy.slice.clone(),
                });
            }
            if request.mode == Mode::Run && lowers {
                return Err(Refusal::NegativeAdjNeedsProtect);
            }
            let listed = policy.users.contains(&person.name)
                || person.groups.iter().any(|g| policy.groups.contains(g));
            if !listed {
                let list = |names: &[String]| {
                    if names.is_empty() {
                        "nobody".to_string()
                    } else {
                        names.join(", ")
                    }
                };
                return Err(Refusal::NotAllowed {
                    user: person.name.clone(),
                    users: list(&policy.users),
                    groups: list(&policy.groups),
                    member_of: list(&person.groups),
                });
            }
            Ok(())
        }
    }
}

fn memory_max(
    request: &Request,
    config: &Config,
    slice: &str,
    policy: Option<&ProtectPolicy>,
) -> Result<Option<Limit>, Refusal> {
    let slice_ceiling = effective_max(&config.slices, slice);
    let ceilings = [
        (request.mode == Mode::Protect)
            .then(|| policy.map(|p| (p.memory_max, "[protect] memory_max".to_string())))
            .flatten(),
        slice_ceiling.map(|limit| {
            (
                limit,
                format!("memory_max of slice {slice} and its parents"),
            )
        }),
    ];
    let asked = request.memory_max.or_else(|| {
        (request.mode == Mode::Protect)
            .then(|| policy.map(|p| p.memory_max))
            .flatten()
    });
    if let Some(asked) = asked {
        for (ceiling, what) in ceilings.into_iter().flatten() {
            if asked > ceiling {
                return Err(Refusal::AboveLimit {
                    asked,
                    ceiling,
                    what,
                });
            }
        }
    }
    Ok(asked)
}

/// The `max_tasks` rule, checked once memslice's own group exists (so two
/// protects started at once cannot both slip under the limit).
pub fn check_task_count(launch: &Launch, running_including_this: usize) -> Result<(), Refusal> {
    match launch.max_tasks {
        Some(max) if running_including_this > max as usize => Err(Refusal::TooManyTasks {
            running: running_including_this - 1,
            max,
            slice: launch.slice.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::NodeFacts;

    const G: u64 = 1 << 30;

    fn config() -> Config {
        let text = "[node]\nmemory = \"16G\"\n[slice.ops]\n[slice.app]\nmemory_max = \"12G\"\n[slice.app.web]\n[slice.app.tasks]\nmemory_max = \"8G\"\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"4G\"\nmax_tasks = 2\nusers = [\"alice\"]\ngroups = [\"importers\"]\n";
        Config::parse(
            Path::new("t.toml"),
            text,
            NodeFacts {
                memory: 16 * G,
                page_size: 4096,
            },
        )
        .expect("valid")
    }

    fn person(name: &str, uid: u32, groups: &[&str]) -> Person {
        Person {
            name: name.into(),
            uid,
            gid: uid,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            gids: vec![uid],
            home: format!("/home/{name}").into(),
            shell: "/bin/sh".into(),
        }
    }

    fn protect() -> Request {
        Request {
            mode: Mode::Protect,
            slice: None,
            memory_max: None,
            oom_group: None,
            oom_score_adj: None,
            user: None,
        }
    }

    fn run(slice: &str) -> Request {
        Request {
            mode: Mode::Run,
            slice: Some(slice.into()),
            ..protect()
        }
    }

    #[test]
    fn protect_through_sudo_runs_as_the_invoking_user_with_the_policy() {
        let alice = person("alice", 1000, &["alice"]);
        let launch = decide(&protect(), &config(), &Caller::Sudo(alice.clone())).expect("allowed");
        assert_eq!(
            launch,
            Launch {
                slice: "app/tasks".into(),
                memory_max: Some(Limit::Bytes(4 * G)),
                oom_group: true,
                oom_score_adj: Some(-1000),
                run_as: Some(alice),
                max_tasks: Some(2),
                mode: Mode::Protect,
                stall_timeout: Some(crate::config::DEFAULT_STALL_TIMEOUT),
            }
        );
    }

    #[test]
    fn a_listed_group_is_enough() {
        let bob = person("bob", 1001, &["bob", "importers"]);
        assert!(decide(&protect(), &config(), &Caller::Sudo(bob)).is_ok());
    }

    #[test]
    fn an_unlisted_user_is_told_which_rule_refused() {
        let mallory = person("mallory", 1002, &["mallory", "www-data"]);
        let err = decide(&protect(), &config(), &Caller::Sudo(mallory)).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "user mallory may not protect tasks: [protect] users lists alice, groups lists importers, and mallory is in mallory, www-data"
        );
    }

    #[test]
    fn memory_above_the_policy_or_the_slice_is_refused() {
        let mut asked = protect();
        asked.memory_max = Some(Limit::Bytes(6 * G));
        let err = decide(&asked, &config(), &Caller::Root).expect_err("above policy");
        assert_eq!(
            err.to_string(),
            "--memory-max 6G is above 4G, the [protect] memory_max"
        );
        let mut asked = run("app/tasks");
        asked.memory_max = Some(Limit::Bytes(10 * G));
        let err = decide(&asked, &config(), &Caller::Root).expect_err("above slice");
        assert_eq!(
            err.to_string(),
            "--memory-max 10G is above 8G, the memory_max of slice app/tasks and its parents"
        );
        let mut asked = run("app/tasks");
        asked.memory_max = Some(Limit::Max);
        assert!(
            decide(&asked, &config(), &Caller::Root).is_err(),
            "max is above any ceiling"
        );
    }

    #[test]
    fn run_keeps_the_kernel_defaults_unless_asked() {
        let launch = decide(&run("app/tasks"), &config(), &Caller::Root).expect("root may run");
        assert_eq!(
            (
                launch.memory_max,
                launch.oom_group,
                launch.oom_score_adj,
                launch.max_tasks
            ),
            (None, false, None, None)
        );
        assert_eq!(launch.run_as, None);
    }

    #[test]
    fn unknown_slices_and_slices_without_memory_are_refused() {
        let err = decide(&run("app/nope"), &config(), &Caller::Root).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "slice \"app/nope\" is not in the config; known slices: ops, app, app/web, app/tasks"
        );
        let err = decide(&run("app/web"), &config(), &Caller::Root).expect_err("leaf");
        assert!(
            err.to_string()
                .contains("add controllers = [\"memory\"] to [slice.app.web]"),
            "{err}"
        );
    }

    #[test]
    fn sudo_callers_stay_in_the_protect_slice_and_cannot_pick_a_user() {
        let alice = person("alice", 1000, &["alice"]);
        let err =
            decide(&run("app"), &config(), &Caller::Sudo(alice.clone())).expect_err("other slice");
        assert!(matches!(err, Refusal::SliceNotForSudo { .. }), "{err}");
        let mut negative = run("app/tasks");
        negative.oom_score_adj = Some(-500);
        assert_eq!(
            decide(&negative, &config(), &Caller::Sudo(alice.clone())),
            Err(Refusal::NegativeAdjNeedsProtect)
        );
        let mut as_other = protect();
        as_other.user = Some(person("bob", 1001, &[]));
        assert_eq!(
            decide(&as_other, &config(), &Caller::Sudo(alice)),
            Err(Refusal::UserNeedsRoot)
        );
    }

    #[test]
    fn root_may_pick_a_user_but_never_protect_as_root_for_someone() {
        let mut as_bob = protect();
        as_bob.user = Some(person("bob", 1001, &[]));
        let launch = decide(&as_bob, &config(), &Caller::Root).expect("root may");
        assert_eq!(launch.run_as.map(|p| p.name), Some("bob".to_string()));
        let mut as_root = protect();
        as_root.user = Some(person("root", 0, &[]));
        assert_eq!(
            decide(&as_root, &config(), &Caller::Root),
            Err(Refusal::RootTarget("root".into()))
        );
    }

    #[test]
    fn unprivileged_callers_cannot_lower_the_score() {
        let carol = person("carol", 1003, &[]);
        assert_eq!(
            decide(&protect(), &config(), &Caller::Unprivileged(carol.clone())),
            Err(Refusal::NegativeAdjNeedsRoot)
        );
        let mut raised = run("app/tasks");
        raised.oom_score_adj = Some(500);
        assert!(decide(&raised, &config(), &Caller::Unprivileged(carol)).is_ok());
        raised.oom_score_adj = Some(1001);
        assert_eq!(
            decide(&raised, &config(), &Caller::Root),
            Err(Refusal::AdjOutOfRange(1001))
        );
    }

    #[test]
    fn protect_needs_a_policy() {
        let text = "[slice.tasks]\ncontrollers = [\"memory\"]\n";
        let config = Config::parse(
            Path::new("t.toml"),
            text,
            NodeFacts {
                memory: G,
                page_size: 4096,
            },
        )
        .expect("valid");
        assert_eq!(
            decide(&protect(), &config, &Caller::Root),
            Err(Refusal::NoPolicy)
        );
    }

    #[test]
    fn the_task_count_includes_the_new_task() {
        let launch = decide(&protect(), &config(), &Caller::Root).expect("allowed");
        assert!(check_task_count(&launch, 2).is_ok());
        let err = check_task_count(&launch, 3).expect_err("third task");
        assert_eq!(
            err.to_string(),
            "2 protected task(s) are running in app/tasks, the most [protect] max_tasks allows is 2"
        );
        let run = decide(&run("app/tasks"), &config(), &Caller::Root).expect("run");
        assert!(check_task_count(&run, 50).is_ok(), "run has no task limit");
    }
}
