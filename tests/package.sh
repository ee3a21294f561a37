#!/usr/bin/env bash
# The Debian package as CI builds it on a fresh machine: dist/build-deb.sh
# (which installs cargo-deb when missing), then what is in it: the file
# list, the conffile, units that nothing enables or starts, man pages that
# render, and a binary without test machinery. Then the Prometheus rules:
# promtool check rules and promtool test rules (Debian's prometheus
# package carries promtool; installed when missing, without leaving a
# prometheus server running). Installing and purging the package on a real
# systemd is vagrant/systemd/40-package.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { echo "package: $*" >&2; exit 1; }

deb=$(dist/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "dist/build-deb.sh did not print the package's path (got '$deb')"
listing=$(dpkg-deb -c "$deb")
files=$(awk '{ print $6 }' <<< "$listing" | sed 's|^\./|/|')

unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb -x "$deb" "$unpacked"

expected=(
    /usr/bin/memslice
    /etc/memslice/slices.toml
    /usr/share/doc/memslice/examples/slices.toml
    /usr/share/doc/memslice/examples/sudoers
    /usr/share/doc/memslice/examples/prometheus/memslice.rules.yml
    /usr/share/doc/memslice/examples/grafana/memslice.json
    /usr/lib/systemd/system/memslice-heal.service
    /usr/lib/systemd/system/memslice-heal.timer
    /usr/lib/systemd/system/memslice-heal-watch.service
    /usr/share/man/man5/slices.toml.5.gz
    /usr/share/bash-completion/completions/memslice
    /usr/share/zsh/vendor-completions/_memslice
    /usr/share/fish/vendor_completions.d/memslice.fish
)
# memslice(1) and a page per subcommand, as --help lists them.
pages=(memslice)
for sub in $("$unpacked/usr/bin/memslice" --help | awk '/^Commands:/ { on = 1; next } /^$/ { on = 0 } on { print $1 }'); do
    [ "$sub" = help ] && continue
    pages+=("memslice-$sub")
done
pages+=(memslice-heal-check memslice-heal-watch memslice-heal-reset)
for page in "${pages[@]}"; do
    expected+=("/usr/share/man/man1/$page.1.gz")
done
for path in "${expected[@]}"; do
    grep -qxF "$path" <<< "$files" || fail "$deb lacks $path"
done

# The sudoers line is an example: granting sudo is the operator's decision.
grep -q '^/etc/sudoers' <<< "$files" && fail "$deb installs into /etc/sudoers.d"
# No unit is enabled by the package: no symlink at all, nothing in /etc/systemd.
grep -q '^l' <<< "$listing" && fail "$deb holds symlinks: $(grep '^l' <<< "$listing")"
grep -q '^/etc/systemd' <<< "$files" && fail "$deb installs into /etc/systemd"
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/memslice/slices.toml ] \
    || fail "conffiles: $(dpkg-deb -I "$deb" conffiles)"
postinst=$(dpkg-deb -I "$deb" postinst)
for forbidden in 'deb-systemd-invoke start' 'deb-systemd-invoke restart' 'new installations run enable'; do
    grep -qF "$forbidden" <<< "$postinst" && fail "postinst enables or starts a unit ($forbidden)"
done
grep -qF 'deb-systemd-invoke try-restart' <<< "$postinst" \
    || fail "postinst does not restart a running healer after an upgrade"

tests/release-has-no-test-hooks.sh "$unpacked/usr/bin/memslice"
"$unpacked/usr/bin/memslice" --version | grep -qx "memslice $(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)" \
    || fail "the packaged binary says $("$unpacked/usr/bin/memslice" --version)"
for page in "$unpacked"/usr/share/man/man*/*.gz; do
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 > /dev/null || true)
    [ -z "$warnings" ] || fail "$(basename "$page"): $warnings"
done
cmp -s "$unpacked/etc/memslice/slices.toml" slices.toml || fail "the conffile is not the shipped slices.toml"
echo "package: $deb ($(stat -c %s "$deb") bytes), $(wc -l <<< "$files") entries, ${#pages[@]} man pages in section 1"

# promtool, from Debian's prometheus package. Installing it must not leave
# a prometheus server running: policy-rc.d forbids service starts during
# the install (unless the machine already has one), and a server that runs
# afterwards and did not before is stopped.
if ! command -v promtool > /dev/null; then
    [ "$(id -u)" = 0 ] || fail "promtool is missing; install with: sudo apt-get install --no-install-recommends prometheus"
    running_before=$(pgrep -x prometheus || true)
    guard=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=/usr/sbin/policy-rc.d
    fi
    echo "package: installing promtool (apt-get install --no-install-recommends prometheus)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus > /dev/null \
        || { [ -z "$guard" ] || rm -f "$guard"; fail "cannot install prometheus"; }
    [ -z "$guard" ] || rm -f "$guard"
    if [ -z "$running_before" ] && pgrep -x prometheus > /dev/null; then
        systemctl stop prometheus 2> /dev/null || invoke-rc.d prometheus stop 2> /dev/null || true
    fi
fi
(cd dist/prometheus && promtool check rules memslice.rules.yml && promtool test rules memslice.rules.test.yml)
if pgrep -x prometheus > /dev/null; then
    echo "package: note: a prometheus server runs on this machine (pid $(pgrep -x prometheus | tr '\n' ' '))" >&2
fi
