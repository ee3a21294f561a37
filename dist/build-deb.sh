#!/usr/bin/env bash
# Builds the Debian package: target/debian/memslice_VERSION-1_ARCH.deb,
# whose path it prints last. What goes in is [package.metadata.deb] in
# Cargo.toml: the release binary (no test machinery), the units (not
# enabled), the conffile, the examples, and the man pages and shell
# completions generated here from the CLI definitions
# (examples/package-docs.rs) plus slices.toml(5) (dist/man/).
#
# Needs cargo-deb; installs it with `cargo install --locked` when missing,
# into target/tools, so a CI cache of target/ keeps it between runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo_deb_version=3.8.0
export PATH="$PWD/target/tools/bin:$PATH"
if ! cargo deb --version > /dev/null 2>&1; then
    echo "build-deb: installing cargo-deb $cargo_deb_version into target/tools (cargo install, once)" >&2
    cargo install --quiet --locked --root target/tools --version "$cargo_deb_version" cargo-deb
fi

docs=target/package-docs
rm -rf "$docs"
# Release, like the package: it reuses the build cargo-deb is about to use.
cargo run --quiet --release --example package-docs -- "$docs"
cp dist/man/slices.toml.5 "$docs/man/"
# Debian ships man pages compressed; -n keeps the archive reproducible.
gzip -9n "$docs"/man/*
cargo deb --quiet
