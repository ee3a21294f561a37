//! Bad input and unusable hosts: a clear message, the right exit code, and
//! nothing written.

use crate::fixture::{Fixture, shipped_on_16g, stderr};

#[test]
fn an_invalid_config_changes_nothing_and_exits_2() {
    let fx = Fixture::new("[slice.app]\nmemory_max = \"2GB\"\n");
    let before = fx.snapshot();
    let out = fx.memslice(&["apply"]).code(2);
    let message = stderr(&out);
    assert!(
        message.contains("slices.toml is not valid (1 problem); nothing was changed"),
        "{message}"
    );
    assert!(
        message.contains("slices.toml:2:14: slice.app.memory_max: \"2GB\" is not a size"),
        "{message}"
    );
    assert_eq!(before, fx.snapshot());
}

#[test]
fn a_missing_config_names_the_path() {
    let fx = Fixture::new("");
    std::fs::remove_file(fx.config()).expect("rm");
    let message = stderr(&fx.memslice(&["plan"]).code(2));
    assert!(
        message.contains("config: cannot read") && message.contains("slices.toml: No such file"),
        "{message}"
    );
    assert!(
        message.contains(
            "start from the shipped example (/usr/share/doc/memslice/examples/slices.toml"
        ),
        "{message}"
    );
}

#[test]
fn apply_refuses_a_directory_that_is_not_cgroup2() {
    let fx = Fixture::bare(&shipped_on_16g());
    let message = stderr(&fx.memslice(&["apply"]).code(3));
    assert!(
        message.contains("is not a cgroup v2 hierarchy"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_dir(fx.root()).expect("dir").count(),
        0,
        "apply wrote into a non-cgroup dir"
    );
}

#[test]
fn a_root_without_the_memory_controller_is_refused() {
    let fx = Fixture::bare(&shipped_on_16g());
    memslice::cgroupfs::emulated::create_root(&fx.root(), &[memslice::config::Controller::Pids])
        .expect("root");
    let before = fx.snapshot();
    let message = stderr(&fx.memslice(&["apply"]).code(3));
    assert!(
        message.contains("the memory controller is not available in")
            && message.contains("(its cgroup.controllers lists: pids)"),
        "{message}"
    );
    assert_eq!(before, fx.snapshot());
}

#[test]
fn internal_processes_block_the_whole_apply() {
    let fx = Fixture::new("[slice.app]\n");
    fx.memslice(&["apply"]).success();
    fx.write("app", "cgroup.procs", "1234\n");
    std::fs::write(
        fx.config(),
        "[slice.app]\nmemory_max = \"1G\"\n[slice.app.web]\n",
    )
    .expect("config");
    let before = fx.snapshot();
    let message = stderr(&fx.memslice(&["apply"]).code(1));
    assert!(
        message.contains("app has 1 process(es) of its own"),
        "{message}"
    );
    assert!(message.contains("no internal processes"), "{message}");
    assert_eq!(before, fx.snapshot(), "a blocked apply wrote something");
}

#[test]
fn a_kernel_refusal_names_the_file_and_the_value() {
    let fx = Fixture::new("[slice.app]\nmemory_max = \"1G\"\n");
    fx.memslice(&["apply"]).success();
    std::fs::write(fx.config(), "[slice.app]\nmemory_max = \"2G\"\n").expect("config");
    fx.inject_fault("write", "app/memory.max", "EINVAL");
    let message = stderr(&fx.memslice(&["apply"]).code(1));
    assert!(
        message.contains(&format!(
            "failed to write \"2147483648\" to {}: Invalid argument (os error 22) (the kernel refused the value)",
            fx.root().join("app/memory.max").display()
        )),
        "{message}"
    );
    assert_eq!(fx.read("app", "memory.max"), "1073741824");
}

/// `memslice plan | head -1`: the reader is gone before memslice writes.
/// Output to a closed pipe ends quietly, as ripgrep does: no panic, no
/// error line, and the command's own exit status (apply has written).
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let fx = Fixture::new(&shipped_on_16g());
    for args in [
        vec!["apply"],
        vec!["plan"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["metrics"],
        vec!["events"],
    ] {
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        drop(read_end);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_memslice"))
            .arg("--config")
            .arg(fx.config())
            .arg("--cgroup-root")
            .arg(fx.root())
            .args(&args)
            .stdout(std::process::Stdio::from(write_end))
            .output()
            .expect("run");
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned()
            ),
            (Some(0), String::new()),
            "{args:?}"
        );
    }
    assert_eq!(
        fx.read("ops", "memory.min"),
        (256u64 << 20).to_string(),
        "apply wrote"
    );
}
