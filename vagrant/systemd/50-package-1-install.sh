# The Debian package on a real systemd, 1 of 3: dpkg -i installs it with
# no unit enabled or started, slices.toml a conffile, the sudoers line only
# as an example, and `man memslice-protect` renders.
. /usr/local/lib/memslice-vm/scenarios/package.sh

# The overlay's binary and config stand where the package puts its own:
# set aside here, back after the purge (50-package-3-purge).
mv /usr/bin/memslice $VM/memslice.overlay
mv /etc/memslice $VM/etc-memslice.overlay

# man-db's trigger re-indexes the pages at each install and purge, slowly
# under TCG and for nothing of memslice's: man finds the pages without the
# index. Its switch is /var/lib/man-db/auto-update.
rm -f /var/lib/man-db/auto-update
start=$(now)
systemctl daemon-reload
note "systemctl daemon-reload takes $(since "$start")s here (the package's scripts run it)"
start=$(now)
dpkg -i $VM/memslice.deb > /tmp/dpkg-i.log 2>&1 || fail "dpkg -i: $(cat /tmp/dpkg-i.log)"
installed_in=$(since "$start")
dpkg-query -W -f='${Conffiles}\n' memslice | grep -q '^ /etc/memslice/slices.toml ' || fail "slices.toml is not a conffile"
for unit in memslice-heal-watch.service memslice-heal.timer memslice-heal.service; do
    [ -f "/usr/lib/systemd/system/$unit" ] || fail "$unit not installed"
    state=$(systemctl is-enabled $unit 2>&1)
    case $state in disabled | static) ;; *) fail "$unit is $state after install" ;; esac
    systemctl is-active --quiet $unit && fail "$unit was started by the install"
done
MANPAGER=cat MANWIDTH=80 man memslice-protect > /tmp/man.txt 2> /tmp/man.err || fail "man memslice-protect: $(cat /tmp/man.err)"
grep -q "oom_score_adj -1000" /tmp/man.txt || fail "memslice-protect(1) does not render: $(head -5 /tmp/man.txt)"
MANPAGER=cat man 5 slices.toml | grep -q "grace_night" || fail "slices.toml(5) does not render"
[ -f /usr/share/doc/memslice/examples/sudoers ] || fail "no sudoers example"
dpkg -L memslice | grep -q '^/etc/sudoers' && fail "the package installs into /etc/sudoers.d"
note "dpkg -i in ${installed_in}s: units installed, none enabled or active; man memslice-protect renders"
