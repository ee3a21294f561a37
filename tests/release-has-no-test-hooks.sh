#!/usr/bin/env bash
# The emulated cgroupfs backend and the MEMSLICE_TEST_* path overrides exist
# only in builds with the emulated-root feature. A release build (what the
# VM runs and the package ships) must not contain them: this builds one (or
# takes the binary given, like the one unpacked from the .deb) and looks for
# their names, and checks that the look would find them in a test build.
#
#   tests/release-has-no-test-hooks.sh [BINARY]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
markers='memslice-emulated-root|MEMSLICE_TEST_|MEMSLICE_SYSTEMD_RUN|MEMSLICE_SYSTEMCTL'
binary=${1:-}
if [ -z "$binary" ]; then
    cargo build --quiet --release --bin memslice
    binary=target/release/memslice
fi
found=$(grep -aoE "$markers" "$binary" | sort -u || true)
if [ -n "$found" ]; then
    echo "$binary contains test machinery: $found" >&2
    exit 1
fi
cargo build --quiet --features emulated-root --bin memslice
grep -aqE "$markers" target/debug/memslice || {
    echo "the search for test machinery finds nothing even in a test build; the check is broken" >&2
    exit 1
}
echo "$binary: none of $markers"
