//! Every verdict from facts made up for it.

use super::*;
use crate::config::parsed as config;
use crate::driver::{self, Facts as DriverFacts, RootFacts};
use crate::layout::DriverSetting;

const CONFIG: &str = "[node]\ndriver = \"auto\"\n[slice.ops]\nmemory_min = \"256M\"\n[slice.app]\nmemory_max = \"8G\"\nusers = [\"app\"]\n[slice.app.tasks]\n[protect]\nslice = \"app/tasks\"\nmemory_max = \"1G\"\nmax_tasks = 1\n";

/// A host where everything fits: cgroupfs, no systemd, app's processes home.
fn healthy() -> Facts {
    Facts {
        config_path: PathBuf::from("/etc/memslice/slices.toml"),
        config: Ok(config(CONFIG)),
        config_trust: Ok(()),
        cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        memory: Ok(()),
        cgroup2_options: Some(vec![
            "rw".into(),
            "nsdelegate".into(),
            "memory_recursiveprot".into(),
        ]),
        psi: true,
        kernel: ("6.1.0-13-amd64".into(), Some((6, 1))),
        driver: driver::resolve(
            DriverSetting::Auto,
            &DriverFacts {
                systemd_booted: false,
                root: RootFacts::Cgroup2 { delegation: None },
            },
        ),
        systemd_booted: false,
        systemd_version: None,
        processes: vec![
            process(1, 0, "init", "/"),
            process(812, 1000, "php", "/app/sessions"),
            process(813, 1000, "bash", "/app/sessions"),
        ],
        healer_units: None,
        kmsg_readable: true,
        tzdata: true,
        users: vec![User {
            name: "app".into(),
            slice: "app".into(),
            uid: Some(1000),
            expected: "/app".into(),
        }],
        pam: Pam {
            hook_in: vec![
                "common-session".into(),
                "common-session-noninteractive".into(),
            ],
            cron_logind: Some(false),
            user_environment: Vec::new(),
        },
    }
}

/// `facts` on a host systemd runs and owns the root of, with `setting`.
fn on_systemd(facts: &mut Facts, setting: DriverSetting) {
    facts.driver = driver::resolve(
        setting,
        &DriverFacts {
            systemd_booted: true,
            root: RootFacts::Cgroup2 { delegation: None },
        },
    );
    facts.systemd_booted = true;
    facts.systemd_version = Some(252);
}

fn process(pid: u32, uid: u32, comm: &str, cgroup: &str) -> Process {
    Process {
        pid,
        uid,
        comm: comm.into(),
        cgroup: cgroup.into(),
        kernel_thread: false,
    }
}

fn find<'a>(report: &'a Report, name: &str) -> &'a Check {
    report
        .checks
        .iter()
        .find(|check| check.check == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {:#?}", report.checks))
}

#[test]
fn a_host_that_fits_is_ok_throughout() {
    let report = checks(&healthy());
    assert_eq!(report.status, Status::Ok, "{:#?}", report.checks);
    let names: Vec<&str> = report.checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "config ownership",
            "cgroup v2 memory",
            "memory_recursiveprot",
            "PSI",
            "cgroup.kill",
            "clone3 into cgroup",
            "driver",
            "OOM daemons",
            "/dev/kmsg",
            "tz database",
            "footprint of app",
            "PAM hook",
        ]
    );
    assert_eq!(
        find(&report, "footprint of app").found,
        "2 process(es) of app, all in app (/app)"
    );
    assert_eq!(
        find(&report, "driver").found,
        "cgroupfs (auto: systemd is not PID 1, memslice writes the tree alone)"
    );
}

#[test]
fn no_memory_controller_fails_with_applys_own_words() {
    let mut facts = healthy();
    let refusal = "/sys/fs/cgroup is not a cgroup v2 hierarchy (it is tmpfs). This host runs the hybrid cgroup layout: ... boot with `systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all`";
    facts.memory = Err(refusal.into());
    facts.cgroup2_options = None;
    let report = checks(&facts);
    assert_eq!(report.status, Status::Fail);
    let memory = find(&report, "cgroup v2 memory");
    assert_eq!(
        (memory.status, memory.found.as_str()),
        (Status::Fail, refusal)
    );
    assert_eq!(find(&report, "memory_recursiveprot").status, Status::Warn);
}

#[test]
fn kernel_features_warn_below_their_version() {
    let mut facts = healthy();
    facts.kernel = ("5.10.0-28-amd64".into(), Some((5, 10)));
    facts.cgroup2_options = Some(vec!["rw".into()]);
    let report = checks(&facts);
    let kill = find(&report, "cgroup.kill");
    assert_eq!(kill.status, Status::Warn);
    assert!(
        kill.found
            .starts_with("Linux 5.10.0-28-amd64 has none: memslice kills a task group pid by pid")
    );
    assert_eq!(kill.fix.as_deref(), Some("Linux 5.14 or later"));
    assert_eq!(find(&report, "clone3 into cgroup").status, Status::Ok);
    assert_eq!(find(&report, "memory_recursiveprot").status, Status::Warn);
    assert_eq!(report.status, Status::Warn, "works, with less: exit 0");
    facts.kernel = ("custom".into(), None);
    assert_eq!(
        find(&checks(&facts), "clone3 into cgroup").status,
        Status::Warn
    );
}

#[test]
fn psi_is_needed_where_a_trigger_is_configured() {
    let mut facts = healthy();
    facts.psi = false;
    assert_eq!(find(&checks(&facts), "PSI").status, Status::Warn);
    let heal = "\n[heal]\npressure_slice = \"app\"\npressure_trigger = \"some 150ms 1s\"\nprotected = [\"app/tasks\"]\n[[heal.service]]\nname = \"web\"\ncommand = [\"true\"]\nrestart_command = [\"true\"]\n";
    facts.config = Ok(config(&format!("{CONFIG}{heal}")));
    let psi = checks(&facts);
    assert_eq!(find(&psi, "PSI").status, Status::Fail);
    assert!(
        find(&psi, "PSI")
            .found
            .contains("pressure_slice app asks for a trigger")
    );
}

#[test]
fn the_driver_that_does_not_fit_fails() {
    let mut facts = healthy();
    on_systemd(&mut facts, DriverSetting::Cgroupfs);
    let report = checks(&facts);
    let driver = find(&report, "driver");
    assert_eq!(driver.status, Status::Fail);
    assert!(
        driver.found.contains("is systemd's tree"),
        "{}",
        driver.found
    );
    assert_eq!(find(&report, "systemd version").status, Status::Ok);
}

#[test]
fn systemd_must_know_the_properties_memslice_sets() {
    let mut facts = healthy();
    on_systemd(&mut facts, DriverSetting::Auto);
    facts.systemd_version = Some(245);
    let old = checks(&facts);
    let version = find(&old, "systemd version");
    assert_eq!(
        version.status,
        Status::Fail,
        "protect's scopes would be refused"
    );
    assert!(
        version.found.contains("which this systemd refuses"),
        "{}",
        version.found
    );
    facts.config = Ok(config("[slice.ops]\n"));
    assert_eq!(
        find(&checks(&facts), "systemd version").status,
        Status::Warn
    );
    facts.systemd_version = None;
    assert_eq!(
        find(&checks(&facts), "systemd version").status,
        Status::Warn
    );
}

#[test]
fn userspace_oom_killers_are_named_with_what_they_do_to_protected_tasks() {
    let mut facts = healthy();
    facts.processes.push(process(
        400,
        0,
        "earlyoom",
        "/system.slice/earlyoom.service",
    ));
    facts.processes.push(process(
        401,
        0,
        "systemd-oomd",
        "/system.slice/systemd-oomd.service",
    ));
    let report = checks(&facts);
    let early = find(&report, "OOM daemon earlyoom");
    assert_eq!(early.status, Status::Warn);
    assert!(
        early
            .found
            .starts_with("earlyoom runs (pid 400): it ranks by oom_score")
    );
    assert_eq!(find(&report, "OOM daemon systemd-oomd").status, Status::Ok);
    assert!(report.checks.iter().all(|c| c.check != "OOM daemons"));
}

#[test]
fn one_healer_at_a_time() {
    let mut facts = healthy();
    facts.healer_units = Some(HealerUnits {
        timer: true,
        watcher: true,
    });
    assert_eq!(find(&checks(&facts), "healer units").status, Status::Warn);
    facts.healer_units = Some(HealerUnits {
        timer: false,
        watcher: true,
    });
    assert_eq!(find(&checks(&facts), "healer units").status, Status::Ok);
}

#[test]
fn a_users_process_outside_its_slice_is_named() {
    let mut facts = healthy();
    facts
        .processes
        .push(process(900, 1000, "php", "/system.slice/cron.service"));
    // A process picks its name, and a user may name a delegated group:
    // escapes in them are written out, not sent to the terminal.
    facts
        .processes
        .push(process(901, 1000, "\x1b[2Kphp", "/app\x07lication"));
    facts.processes.push(Process {
        kernel_thread: true,
        ..process(2, 1000, "kthreadd", "/")
    });
    let report = checks(&facts);
    let footprint = find(&report, "footprint of app");
    assert_eq!(footprint.status, Status::Warn);
    assert_eq!(
        footprint.found,
        "2 process(es) of app outside app (/app): 900 (php, in /system.slice/cron.service), 901 (\\x1b[2Kphp, in /app\\x07lication)"
    );
    assert!(
        footprint
            .fix
            .as_deref()
            .is_some_and(|fix| fix.contains("memslice move --slice app PID..."))
    );
    facts.users[0].uid = None;
    assert!(
        find(&checks(&facts), "footprint of app")
            .found
            .starts_with("no user \"app\" on this node")
    );
}

#[test]
fn sessions_reach_the_slice_through_pam() {
    let mut facts = healthy();
    facts.pam.hook_in.clear();
    let hook = checks(&facts);
    assert_eq!(find(&hook, "PAM hook").status, Status::Warn);
    on_systemd(&mut facts, DriverSetting::Auto);
    let cron = checks(&facts);
    let row = find(&cron, "cron sessions");
    assert_eq!(row.status, Status::Warn);
    assert!(
        row.fix
            .as_deref()
            .is_some_and(|fix| fix.contains("session optional pam_systemd.so"))
    );
    facts.pam.cron_logind = Some(true);
    assert_eq!(find(&checks(&facts), "cron sessions").status, Status::Ok);
}

#[test]
fn the_table_shows_each_check_and_its_fix() {
    let mut facts = healthy();
    facts.kmsg_readable = false;
    let text = checks(&facts).render_text("memslice doctor");
    assert!(text.starts_with("memslice doctor\nOK  "), "{text}");
    assert!(
        text.contains("WARN  /dev/kmsg             not readable:")
            && text.contains("\n                            fix: run memslice as root"),
        "{text}"
    );
    assert!(text.ends_with("0 FAIL, 1 WARN, 12 OK\n"), "{text}");
}

/// The footprint check looks at every process: one whose name is not
/// UTF-8 (it picks its own) must not slip past it.
#[test]
fn a_process_named_in_bytes_that_are_not_utf8_is_still_seen() {
    let mut sleeper = crate::host::NotUtf8Sleeper::start();
    let seen = facts::process(sleeper.child.id());
    sleeper.stop();
    let seen = seen.expect("the process is seen");
    assert_eq!(seen.comm, "x\u{fffd}\u{fffd}");
    assert_eq!(seen.uid, nix::unistd::Uid::current().as_raw());
}

#[test]
fn a_hook_in_a_stack_users_fill_the_environment_of_fails() {
    let mut facts = healthy();
    assert!(
        checks(&facts)
            .checks
            .iter()
            .all(|check| check.check != "PAM environment")
    );
    facts.pam.user_environment = vec!["sshd".into()];
    let report = checks(&facts);
    let found = find(&report, "PAM environment");
    assert_eq!(found.status, Status::Fail);
    assert!(
        found.found.starts_with("sshd run(s) memslice pam-session")
            && found.found.contains("LD_PRELOAD"),
        "{}",
        found.found
    );
}
