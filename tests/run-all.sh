#!/usr/bin/env bash
# The whole test suite, as CI runs it: lints, unit and emulated-root tests,
# then the real-kernel scenarios in the qemu VMs (vagrant/vm-test): a busybox
# guest for the kernel's behaviour, a Debian guest for real systemd.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check
step "cargo clippy (as released, then with the test machinery)"
cargo clippy --quiet --all-targets -- -D warnings
cargo clippy --quiet --all-targets --features emulated-root -- -D warnings
step "unit and emulated-root tests"
cargo test --quiet --all-targets --features emulated-root
step "the release binary holds no test machinery"
tests/release-has-no-test-hooks.sh
step "the Debian package (cargo-deb) and what is in it; the Prometheus rules (promtool)"
tests/package.sh
step "real-kernel scenarios (qemu VM, busybox guest)"
vagrant/vm-test
step "real-systemd scenarios (qemu VM, Debian guest with systemd)"
vagrant/vm-test --systemd
