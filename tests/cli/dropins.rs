//! Drop-ins: `slices.d/*.toml` beside the main config, merged in name
//! order after it, so configuration management can drop a file instead of
//! rewriting the main one. Every problem names its own file; one invalid
//! drop-in refuses the whole config.

use std::os::unix::fs::chown;

use crate::fixture::{Fixture, nobody, stderr, stdout};

const MAIN: &str = "[node]\nmemory = \"16G\"\n[slice.ops]\nmemory_min = \"256M\"\n[slice.app]\nmemory_max = \"8G\"\n[slice.app.web]\n";

fn fixture() -> Fixture {
    let fx = Fixture::new(MAIN);
    fx.memslice(&["apply"]).success();
    std::fs::create_dir(fx.dir.path().join("slices.d")).expect("slices.d");
    fx
}

fn dropin(fx: &Fixture, name: &str, text: &str) {
    std::fs::write(fx.dir.path().join("slices.d").join(name), text).expect("drop-in");
}

#[test]
fn a_drop_in_changes_a_limit_and_later_names_win() {
    let fx = fixture();
    dropin(&fx, "10-bigger.toml", "[slice.app]\nmemory_max = \"10G\"\n");
    dropin(
        &fx,
        "20-biggest.toml",
        "[slice.app]\nmemory_max = \"12G\"\n[slice.app.db]\n",
    );
    dropin(&fx, "README", "not toml, not read");
    dropin(&fx, ".hidden.toml", "not read either = [");
    let plan = stdout(&fx.memslice(&["plan"]).success());
    assert!(
        plan.contains("set     app  memory.max: 8G -> 12G"),
        "{plan}"
    );
    assert!(plan.contains("create  app/db"), "{plan}");
    fx.memslice(&["apply"]).success();
    assert_eq!(fx.read("app", "memory.max"), (12u64 << 30).to_string());
}

#[test]
fn a_broken_drop_in_refuses_the_whole_config_naming_its_own_file() {
    let fx = fixture();
    dropin(&fx, "10-fine.toml", "[slice.app]\nmemory_max = \"10G\"\n");
    dropin(
        &fx,
        "20-broken.toml",
        "\n[slice.app]\nmemory_max = \"lots\"\n",
    );
    let before = fx.snapshot();
    let message = stderr(&fx.memslice(&["apply"]).code(2));
    let broken = fx.dir.path().join("slices.d/20-broken.toml");
    assert!(
        message.contains(&format!(
            "{}:3:14: slice.app.memory_max: \"lots\" is not a size",
            broken.display()
        )),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(before, fx.snapshot(), "a refused config wrote something");
    dropin(&fx, "20-broken.toml", "[slice.app\n");
    let message = stderr(&fx.memslice(&["plan"]).code(2));
    assert!(
        message.contains(&format!("{}:1:", broken.display())) && message.contains("not valid TOML"),
        "{message}"
    );
}

#[test]
fn as_root_a_drop_in_another_user_can_change_is_refused() {
    let fx = fixture();
    dropin(&fx, "10-theirs.toml", "[slice.app]\nmemory_max = \"1T\"\n");
    chown(
        fx.dir.path().join("slices.d/10-theirs.toml"),
        Some(nobody().uid.as_raw()),
        None,
    )
    .expect("chown");
    let message = stderr(&fx.memslice(&["plan"]).code(2));
    assert!(
        message.contains("10-theirs.toml: it is a file owned by uid 65534 (nobody)"),
        "{message}"
    );
}
