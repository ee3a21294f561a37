# The app user's whole footprint under one cap, the systemd way (auto
# picks the systemd driver here): [slice.app] users = ["app"] is app's
# own user-UID.slice, with memslice's limits in a drop-in. A login through
# PAM and logind (su -l), a cron job (cron's PAM stack with pam_systemd,
# as the README says for Debian), app's user manager and a system service
# running as app all run there; a hog started from a login is OOM-killed
# inside the cap while an ops service and the healer live on; doctor
# reports the node OK, then names a process planted outside.
fail() { echo "FAIL: $*"; exit 1; }
now() { cut -d' ' -f1 /proc/uptime; }

grep -q " $(hostname)$" /etc/hosts || echo "127.0.1.1 $(hostname)" >> /etc/hosts
id app > /dev/null 2>&1 || useradd --create-home --shell /bin/sh app || fail "useradd app"
uid=$(id -u app)
SLICE=/sys/fs/cgroup/user.slice/user-$uid.slice

# Debian's cron opens no logind session (its stack includes
# common-session-noninteractive, without pam_systemd): the README's step.
grep -q pam_systemd /etc/pam.d/cron || echo "session optional pam_systemd.so" >> /etc/pam.d/cron
# So no cron job starts and stops app's user manager; also starts it now.
loginctl enable-linger app || fail "enable-linger"
# Written first: cron reads /etc/cron.d again at its next minute.
echo "* * * * * app cat /proc/self/cgroup > /tmp/cron-cgroup" > /etc/cron.d/memslice-footprint
chmod 0644 /etc/cron.d/memslice-footprint
rm -f /tmp/cron-cgroup
cron_written=$(now)

mkdir -p /etc/memslice
cat > /etc/memslice/slices.toml <<'EOF'
# The footprint scenario: no [node] driver, so auto decides.
[slice.ops]
memory_min = "64M"
services = ["ops-probe.service"]
oom_score_adj = -900

[slice.app]
users = ["app"]
memory_max = "192M"
memory_swap_max = "0"

[slice.app.web]
memory_max = "96M"
services = ["app-web.service"]
oom_score_adj = 500

[slice.app.tasks]

[protect]
slice = "app/tasks"
memory_max = "64M"
max_tasks = 2

[heal]
interval = "2s"

[[heal.service]]
name = "ops-probe"
unit = "ops-probe.service"
restart_unit = "ops-probe.service"
EOF
chmod 0644 /etc/memslice/slices.toml
memslice apply > /tmp/apply.log 2>&1 || fail "apply: $(cat /tmp/apply.log)"
cat /tmp/apply.log
grep -q "create  user-$uid.slice.d/50-memslice.conf" /tmp/apply.log || fail "no drop-in for app's slice"
grep -q "create  user-$uid-web.slice.d/50-memslice.conf" /tmp/apply.log || fail "no drop-in for user-$uid-web.slice"
# Linger keeps app's slice active: the drop-in reaches it on the reload.
[ "$(systemctl show -p MemoryMax --value user-$uid.slice)" = $((192 << 20)) ] || fail "user-$uid.slice MemoryMax"
[ "$(cat $SLICE/memory.max)" = $((192 << 20)) ] || fail "$SLICE/memory.max is $(cat $SLICE/memory.max)"
[ "$(cat $SLICE/user-$uid-web.slice/memory.max)" = $((96 << 20)) ] \
    || fail "user-$uid-web.slice memory.max: $(ls $SLICE; cat $SLICE/cgroup.subtree_control; systemctl status --no-pager user-$uid-web.slice 2>&1 | head -n 8)"
[ "$(systemctl show -p Description --value user-$uid-web.slice)" = "memslice slice app/web" ] \
    || fail "systemd's user-.slice.d defaults won over memslice's drop-in: $(systemctl show -p Description --value user-$uid-web.slice)"
[ -d "$SLICE/user@$uid.service" ] || fail "app's user manager is not in app's slice"

# An ops service and the healer, from the unit the package ships.
# (The shipped unit runs /usr/local/bin/memslice; the package has /usr/bin.)
ln -sf /usr/bin/memslice /usr/local/bin/memslice
systemctl enable --now memslice-heal-watch.service > /dev/null 2>&1 || fail "the healer did not start"
systemctl start ops-probe.service app-web.service || fail "services did not start"
cgroup_of() { cut -d: -f3 "/proc/$(systemctl show -p MainPID --value "$1")/cgroup"; }
[ "$(cgroup_of ops-probe.service)" = /ops.slice/ops-probe.service ] || fail "ops-probe in $(cgroup_of ops-probe.service)"
[ "$(cgroup_of memslice-heal-watch.service)" = /ops.slice/memslice-heal-watch.service ] || fail "the healer in $(cgroup_of memslice-heal-watch.service)"
[ "$(cgroup_of app-web.service)" = "/user.slice/user-$uid.slice/user-$uid-web.slice/app-web.service" ] \
    || fail "app-web in $(cgroup_of app-web.service)"

# A login of app through PAM and logind.
su -l app -c 'echo "cgroup $(cut -d: -f3 /proc/self/cgroup)"; echo "slice $(loginctl show-user app -p Slice --value)"' > /tmp/login.log 2>&1 \
    || fail "su -l app: $(cat /tmp/login.log)"
cat /tmp/login.log
grep -q "^cgroup /user.slice/user-$uid.slice/session-[^/]*\.scope$" /tmp/login.log || fail "the login is not in app's slice"
grep -qx "slice user-$uid.slice" /tmp/login.log || fail "logind does not name app's slice"

# A hog typed in that login: OOM-killed inside app's cap.
kills_before=$(awk '$1 == "oom_kill" { print $2 }' $SLICE/memory.events)
su -l app -c 'hog 400M 0' > /tmp/hog.log 2>&1
su_status=$?
kills=$(awk '$1 == "oom_kill" { print $2 }' $SLICE/memory.events)
[ "$kills" -gt "$kills_before" ] || fail "no OOM kill in app's slice (su exit $su_status): $(cat $SLICE/memory.events)"
dmesg | grep -q "oom_memcg=/user.slice/user-$uid.slice,task_memcg=/user.slice/user-$uid.slice/session-" \
    || fail "the kernel's OOM was not app's cap: $(dmesg | grep oom-kill | tail -n 2)"
[ "$(awk '$1 == "oom_kill" { print $2 }' /sys/fs/cgroup/ops.slice/memory.events)" = 0 ] || fail "a kill in ops"
sleep 3
for unit in ops-probe.service memslice-heal-watch.service app-web.service; do
    systemctl is-active --quiet $unit || fail "$unit died: $(systemctl status $unit | tail -n 5)"
done
[ "$(systemctl show -p NRestarts --value memslice-heal-watch.service)" = 0 ] || fail "the healer restarted"

# The cron job: in app's slice too.
i=0
while [ ! -s /tmp/cron-cgroup ]; do
    i=$((i + 1))
    [ $i -gt 900 ] && fail "no cron run within 90s: $(journalctl -u cron --no-pager | tail -n 5)"
    sleep 0.1
done
cron_took=$(awk -v a="$cron_written" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
cron=$(cut -d: -f3 /tmp/cron-cgroup)
case $cron in
    /user.slice/user-$uid.slice/session-*.scope) ;;
    *) fail "the cron job ran in $cron" ;;
esac
rm /etc/cron.d/memslice-footprint

memslice status > /tmp/status.txt 2>&1 || fail "status: $(cat /tmp/status.txt)"
cat /tmp/status.txt

# doctor: the node fits.
memslice doctor > /tmp/doctor.txt 2>&1
status=$?
cat /tmp/doctor.txt
[ $status = 0 ] || fail "doctor exit $status"
grep -E "^(WARN|FAIL) " /tmp/doctor.txt && fail "doctor does not find the node OK"
grep -q "^OK    driver .*systemd (auto: systemd is PID 1 and writes the tree)" /tmp/doctor.txt || fail "auto did not pick systemd"
grep -q "^OK    footprint of app " /tmp/doctor.txt || fail "no footprint row"

# A process of app planted outside: runuser opens no logind session.
rm -f /tmp/stray.pid
runuser -u app -- sh -c 'echo $$ > /tmp/stray.pid; exec sleep 300' &
runner=$!
i=0
while [ ! -s /tmp/stray.pid ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "the stray did not start"
    sleep 0.1
done
stray=$(cat /tmp/stray.pid)
memslice doctor > /tmp/doctor2.txt 2>&1
status=$?
kill $stray $runner
grep "footprint of app" /tmp/doctor2.txt
[ $status = 0 ] || fail "a stray is a warning, not a failure (exit $status)"
grep -q "^WARN  footprint of app .*1 process(es) of app outside app (/user.slice/user-$uid.slice): $stray (sleep, in /system.slice/memslice-vm-test.service)" /tmp/doctor2.txt \
    || fail "doctor did not name the stray $stray: $(cat /tmp/doctor2.txt)"

systemctl disable --now memslice-heal-watch.service > /dev/null 2>&1
echo "app's slice user.slice/user-$uid.slice (MemoryMax 192M by drop-in): su -l login in $(sed -n 's/^cgroup //p' /tmp/login.log), cron job in $cron ${cron_took}s after it was written, user@$uid.service and app-web.service inside; the login's hog OOM-killed in the cap (oom_kill $kills_before -> $kills, su exit $su_status), ops-probe and the healer alive; doctor OK, then named stray $stray" > "$NOTES"
