# The Debian package on a real systemd, 3 of 3: dpkg --purge, with the
# watcher enabled and running, leaves no file, unit or enable link behind.
. /usr/local/lib/memslice-vm/scenarios/package.sh
trap 'cp $VM/memslice.overlay /usr/bin/memslice; rm -rf /etc/memslice /run/memslice-test-web-up; cp -a $VM/etc-memslice.overlay /etc/memslice' EXIT

rm -rf /etc/systemd/system/memslice-heal-watch.service.d
ls /core* 2> /dev/null && note "a core file after the watchdog's SIGABRT (core_pattern $(cat /proc/sys/kernel/core_pattern))"
start=$(now)
dpkg --purge memslice > /tmp/dpkg-purge.log 2>&1 || fail "dpkg --purge: $(cat /tmp/dpkg-purge.log)"
purged_in=$(since "$start")
note "purge from $start: $(journalctl -q -o short-monotonic -u memslice-heal-watch.service | grep -e Stopping -e Stopped -e Deactivated | tail -3 | tr '\n' ' ')"
pgrep -x memslice > /dev/null && fail "memslice still runs after purge: $(pgrep -a memslice)"
for path in /etc/memslice /usr/share/doc/memslice /usr/bin/memslice /var/lib/memslice /run/memslice \
    /usr/lib/systemd/system/memslice-heal-watch.service /usr/lib/systemd/system/memslice-heal.timer \
    /usr/share/man/man1/memslice-protect.1.gz /usr/share/bash-completion/completions/memslice; do
    [ -e "$path" ] && fail "$path is left after purge"
done
left=$(find /etc/systemd/system -name 'memslice-heal*' 2> /dev/null)
[ -z "$left" ] || fail "left after purge: $left"
systemctl list-unit-files 'memslice-heal*' --no-legend | grep -q . && fail "units still known: $(systemctl list-unit-files 'memslice-heal*' --no-legend)"
note "dpkg --purge in ${purged_in}s (watcher enabled and running): nothing left under /etc/memslice, /usr/share/doc/memslice, /var/lib/memslice, no unit or enable link"
