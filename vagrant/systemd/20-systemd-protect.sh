# run and protect under the systemd driver: the task runs in a transient
# scope of app-tasks.slice that systemd made, with its MemoryMax, and for
# protect oom_score_adj -1000 (the caller keeps its own). An OOM kill in a
# scope is reported with exit 137; a protected task at its cap stalls until
# its scope is killed; no scope is left behind.
CFG=/usr/local/lib/memslice-vm/scenarios/slices.toml
fail() { echo "FAIL: $*"; exit 1; }
memslice --config $CFG apply > /dev/null 2>&1 || fail "apply"

memslice --config $CFG protect --name probe -- sh -c '
    cgroup=$(cut -d: -f3 /proc/self/cgroup)
    echo "cgroup $cgroup"
    echo "adj $(cat /proc/self/oom_score_adj)"
    echo "max $(systemctl show -p MemoryMax --value "$(basename "$cgroup")")"
    echo "oom.group $(cat /sys/fs/cgroup$cgroup/memory.oom.group)"
' > /tmp/probe.log 2>&1 || fail "protect: $(cat /tmp/probe.log)"
cat /tmp/probe.log
grep -q "^cgroup /app.slice/app-tasks.slice/memslice-probe-[0-9]*.scope$" /tmp/probe.log || fail "not in a scope of app-tasks.slice"
grep -qx "adj -1000" /tmp/probe.log || fail "the task is not protected"
grep -qx "max $((64 << 20))" /tmp/probe.log || fail "the scope lacks the policy's MemoryMax"
grep -qx "oom.group 1" /tmp/probe.log || fail "memory.oom.group is not set in the scope"
[ "$(cat /proc/$$/oom_score_adj)" = 0 ] || fail "the caller was protected"

# systemd removes a scope the moment it is empty, racing memslice's last
# reads of it (a CI run once failed on ENODEV there). The window is
# narrow; ten short tasks make it likelier to be hit.
for i in 1 2 3 4 5 6 7 8 9 10; do
    memslice --config $CFG run --slice app/tasks --name short -- true > /tmp/short.log 2>&1 \
        || fail "run $i of a short task: $(cat /tmp/short.log)"
done

# An unprotected task in a scope with --oom-group: the kernel kills it at
# its MemoryMax, memslice reports it and exits 137.
for i in 1 2 3; do
    memslice --config $CFG run --slice app/tasks --memory-max 48M --oom-group --name hog -- hog 300M 0 > /tmp/hog.log 2>&1
    status=$?
    cat /tmp/hog.log
    [ $status = 137 ] || fail "the OOM-killed task's exit status is $status, expected 137"
    grep -q "the kernel OOM-killed" /tmp/hog.log || fail "the OOM kill was not reported"
done

# A protected task at its own cap cannot be OOM-killed (-1000): it stalls,
# as the Hypernode text says, until something outside kills its scope;
# memslice warns about it once.
memslice --config $CFG protect --name stuck -- hog 300M 0 > /tmp/stuck.log 2>&1 &
protected=$!
sleep 4
kill -0 $protected 2>/dev/null || fail "the protected task ended at its cap: $(cat /tmp/stuck.log)"
scope=$(ls -d /sys/fs/cgroup/app.slice/app-tasks.slice/memslice-stuck-*.scope)
oom=$(awk '$1 == "oom" { print $2 }' $scope/memory.events)
kills=$(awk '$1 == "oom_kill" { print $2 }' $scope/memory.events)
[ "$oom" -ge 1 ] && [ "$kills" = 0 ] || fail "expected OOM events without kills: $(cat $scope/memory.events)"
grep -q "warning: app.slice/app-tasks.slice/memslice-stuck-[0-9]*.scope is at its memory.max (64M) and the kernel finds nothing it may kill" /tmp/stuck.log \
    || fail "memslice did not warn about the stall: $(cat /tmp/stuck.log)"
echo 1 > $scope/cgroup.kill
wait $protected
status=$?
[ $status = 137 ] || fail "the stalled task's exit status after cgroup.kill is $status"
sleep 0.5
systemctl list-units --all --type=scope --no-legend | grep -q memslice- && fail "a task scope was left: $(systemctl list-units --all --type=scope --no-legend)"
echo "protect ran in a transient scope of app-tasks.slice with MemoryMax 64M and -1000; a protected task at its cap stalled (oom $oom, oom_kill 0) until cgroup.kill" > "$NOTES"
