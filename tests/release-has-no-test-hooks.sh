#!/usr/bin/env bash
# The emulated cgroupfs backend and the MEMSLICE_TEST_* path overrides exist
# only in builds with the emulated-root feature. A release build (what the
# VM runs and the package ships) must not contain them: this builds one and
# looks for their names, and checks that the look would find them in a
# test build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
markers='memslice-emulated-root|MEMSLICE_TEST_|MEMSLICE_SYSTEMD_RUN|MEMSLICE_SYSTEMCTL'
cargo build --quiet --release --bin memslice
found=$(grep -aoE "$markers" target/release/memslice | sort -u || true)
if [ -n "$found" ]; then
    echo "target/release/memslice contains test machinery: $found" >&2
    exit 1
fi
cargo build --quiet --features emulated-root --bin memslice
grep -aqE "$markers" target/debug/memslice || {
    echo "the search for test machinery finds nothing even in a test build; the check is broken" >&2
    exit 1
}
echo "release binary: none of $markers"
