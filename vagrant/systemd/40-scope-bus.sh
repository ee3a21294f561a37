# memslice's own D-Bus client (src/systemd/bus.rs) against the real
# systemd: StartTransientUnit of a scope with PIDs of a forked child, on
# the private socket and, with that hidden, on the system bus; the scope
# has the asked Slice, MemoryMax, ManagedOOMPreference and CollectMode,
# the child is in it, a duplicate name is refused by name, and the scope
# goes once its process ends. Then, 20 times each, interleaved, with ASLR
# on and off: the whole `memslice run` (supervised, in a scope via the
# client) and the client alone against `systemd-run --scope` with the same
# properties; medians and ratios.
CFG=/usr/local/lib/memslice-vm/scenarios/slices.toml
fail() { echo "FAIL: $*"; exit 1; }
memslice --config $CFG apply > /dev/null 2>&1 || fail "apply"
# memslice's scopes as they are now: what an earlier scenario left is its
# own affair; this one checks only the scopes it made.
scopes() { systemctl list-units --all --type=scope --no-legend --plain | awk '$1 ~ /^memslice-/ { print $1 }' | sort; }
scopes > /tmp/scopes.before
left() { scopes | comm -13 /tmp/scopes.before -; }

field() { awk -v key="$1" '$1 == key { $1 = ""; sub(/^ /, ""); print }' "$2"; }

# --- the private socket -------------------------------------------------
unit=memslice-probe-$$.scope
scope-probe spawn --detach --unit $unit --slice app-tasks.slice \
    --memory-max $((64 << 20)) --omit --description "memslice scope probe" \
    -- sleep 120 > /tmp/probe.log 2>&1 || fail "scope-probe: $(cat /tmp/probe.log)"
cat /tmp/probe.log
pid=$(field pid /tmp/probe.log)
[ "$(field socket /tmp/probe.log)" = /run/systemd/private ] || fail "not on the private socket"
grep -q "^job /org/freedesktop/systemd1/job/[0-9]*$" /tmp/probe.log || fail "no job path"
grep -qx "cgroup 0::/app.slice/app-tasks.slice/$unit" /tmp/probe.log || fail "the child is not in the scope"
[ "$(cut -d: -f3 /proc/$pid/cgroup)" = "/app.slice/app-tasks.slice/$unit" ] || fail "/proc/$pid/cgroup: $(cat /proc/$pid/cgroup)"
show() { systemctl show -p "$1" --value $unit; }
for pair in Slice=app-tasks.slice MemoryMax=$((64 << 20)) ManagedOOMPreference=omit \
    CollectMode=inactive-or-failed "Description=memslice scope probe" ActiveState=active; do
    key=${pair%%=*}
    [ "$(show "$key")" = "${pair#*=}" ] || fail "$unit $key is '$(show "$key")', expected '${pair#*=}'"
done
[ "$(cat /sys/fs/cgroup/app.slice/app-tasks.slice/$unit/memory.max)" = $((64 << 20)) ] || fail "memory.max of the scope"
echo "private socket: $unit has Slice, MemoryMax, ManagedOOMPreference, CollectMode as asked"

# A second scope of the same name: systemd's error, by name.
scope-probe spawn --unit $unit --slice app-tasks.slice -- sleep 120 > /tmp/dup.log 2>&1 && fail "a duplicate unit was accepted"
cat /tmp/dup.log
grep -q "systemd refused StartTransientUnit: org.freedesktop.systemd1.UnitExists: " /tmp/dup.log || fail "duplicate: $(cat /tmp/dup.log)"
pgrep -x -f "sleep 120" | grep -vx "$pid" && fail "the refused probe left its child running"

# CollectMode=inactive-or-failed: the scope is gone once its process is.
kill "$pid"
i=0
while [ "$(show LoadState)" = loaded ] && [ $i -lt 40 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(show LoadState)" = loaded ] && fail "$unit was not collected: $(show ActiveState)"

# A child that is a zombie by the time systemd attaches it: what the
# caller would face if its child could exit before the job is done.
# Reported, not judged: it is systemd's and the kernel's behaviour.
unit=memslice-early-$$.scope
scope-probe spawn --unit $unit --slice app-tasks.slice -- true > /tmp/early.log 2>&1
early_status=$?
sleep 1
early="probe exit $early_status, $(show ActiveState)/$(show SubState), cgroup.procs: $(cat /sys/fs/cgroup/app.slice/app-tasks.slice/$unit/cgroup.procs 2>/dev/null | wc -l) pids"
echo "early exit: $early; $(cat /tmp/early.log | tr '\n' ' ')"
systemctl stop $unit 2> /dev/null

# --- the system bus (the private socket hidden in a mount namespace) ----
touch /tmp/not-a-socket
unit=memslice-probe-bus-$$.scope
unshare -m sh -c "mount --bind /tmp/not-a-socket /run/systemd/private && exec scope-probe spawn --detach \
    --unit $unit --slice app-tasks.slice --memory-max $((32 << 20)) -- sleep 120" > /tmp/bus.log 2>&1 \
    || fail "scope-probe on the bus: $(cat /tmp/bus.log)"
cat /tmp/bus.log
[ "$(field socket /tmp/bus.log)" = /run/dbus/system_bus_socket ] || fail "not on the system bus"
grep -qx "cgroup 0::/app.slice/app-tasks.slice/$unit" /tmp/bus.log || fail "the child is not in the bus scope"
[ "$(show MemoryMax)" = $((32 << 20)) ] || fail "bus scope MemoryMax $(show MemoryMax)"
kill "$(field pid /tmp/bus.log)"
echo "system bus: Hello, the JobRemoved match and the call work through dbus-daemon"

# --- time: the client against systemd-run --scope, same properties ------
# Once with ASLR on (the guest's default), once off: under TCG every start
# with ASLR on translates the program's code anew, which costs memslice's
# larger code far more than it costs systemd-run (vagrant/scenarios/90).
now() { date +%s%N; }
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ms() { echo "$(($1 / 1000)).$(($1 % 1000 / 100)) ms"; }
spread() { echo "min $(ms "$(sort -n "$1" | head -n 1)"), max $(ms "$(sort -n "$1" | tail -n 1)")"; }
: > /tmp/timing.notes
for setting in 2 0; do
    echo $setting > /proc/sys/kernel/randomize_va_space
    aslr=$([ $setting = 0 ] && echo off || echo on)
    : > /tmp/probe.times
    : > /tmp/memslice.times
    : > /tmp/run.times
    : > /tmp/call.times
    : > /tmp/called.times
    i=0
    while [ $i -lt 20 ]; do
        a=$(now)
        scope-probe exec --unit memslice-time-$$-$setting-$i.scope --slice app-tasks.slice \
            --memory-max $((64 << 20)) -- /bin/true || fail "scope-probe exec $i"
        b=$(now)
        systemd-run --quiet --scope --slice=app-tasks.slice -p MemoryMax=64M /bin/true || fail "systemd-run $i"
        c=$(now)
        memslice --config $CFG run --slice app/tasks --memory-max 64M -- /bin/true || fail "memslice run $i"
        d=$(now)
        echo $(((b - a) / 1000)) >> /tmp/probe.times
        echo $(((c - b) / 1000)) >> /tmp/run.times
        echo $(((d - c) / 1000)) >> /tmp/memslice.times
        # The child must outlive the call: a PID that has exited when systemd
        # attaches it leaves a "running" scope whose cgroup never fills.
        scope-probe spawn --detach --unit memslice-call-$$-$setting-$i.scope --slice app-tasks.slice \
            --memory-max $((64 << 20)) -- sleep 60 > /tmp/call.log 2>&1 || fail "scope-probe spawn $i: $(cat /tmp/call.log)"
        field job_us /tmp/call.log >> /tmp/call.times
        field call_us /tmp/call.log >> /tmp/called.times
        kill "$(field pid /tmp/call.log)"
        i=$((i + 1))
    done
    probe=$(median /tmp/probe.times)
    run=$(median /tmp/run.times)
    whole=$(median /tmp/memslice.times)
    call=$(median /tmp/call.times)
    called=$(median /tmp/called.times)
    ratio=$(awk -v a="$probe" -v b="$run" 'BEGIN { printf "%.2f", a / b }')
    whole_ratio=$(awk -v a="$whole" -v b="$run" 'BEGIN { printf "%.2f", a / b }')
    echo "ASLR $aslr: scope-probe exec (us): $(sort -n /tmp/probe.times | tr '\n' ' ')"
    echo "ASLR $aslr: systemd-run --scope (us): $(sort -n /tmp/run.times | tr '\n' ' ')"
    echo "ASLR $aslr: in-process call, call+job (us): $(sort -n /tmp/called.times | tr '\n' ' '); $(sort -n /tmp/call.times | tr '\n' ' ')"
    {
        echo "20 runs interleaved, medians under TCG (ASLR $aslr): memslice run --memory-max 64M -- /bin/true $(ms "$whole") vs systemd-run --scope -p MemoryMax=64M /bin/true $(ms "$run"), ratio $whole_ratio"
        echo "ASLR $aslr: the client alone (scope-probe exec /bin/true) $(ms "$probe"), ratio $ratio; memslice run spread $(spread /tmp/memslice.times)"
        echo "ASLR $aslr: spread: scope-probe $(spread /tmp/probe.times); systemd-run $(spread /tmp/run.times)"
        echo "ASLR $aslr: inside the process (median): the call $(ms "$called"), the call and its job $(ms "$call")"
    } >> /tmp/timing.notes
done
echo 2 > /proc/sys/kernel/randomize_va_space
i=0
while [ -n "$(left)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -z "$(left)" ] || fail "a scope of this scenario was left: $(left | tr '\n' ' '); $(systemctl list-units --all --type=scope --no-legend)"
{
    echo "StartTransientUnit from memslice's own client: private socket and system bus as asked"
    cat /tmp/timing.notes
    echo "a child already exited when systemd attached it: $early"
} > "$NOTES"
