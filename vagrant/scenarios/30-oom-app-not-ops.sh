# A process in the app slice that allocates past the slice's memory.max is
# OOM-killed by the kernel, inside the slice; a process in ops survives,
# and memory.events and `status` show the kill where it happened.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/oom.toml apply > /dev/null 2>&1 || fail "apply oom.toml"

start_in ops hog 48M 300 > /tmp/survivor.log 2>&1
survivor=$!
wait_for_line /tmp/survivor.log 60 holding

start_in app/web hog 512M 0 > /tmp/victim.log 2>&1
victim=$!
wait $victim
status=$?
tail -n 3 /tmp/victim.log
expect_eq "$status" "137" "the hog's exit status (SIGKILL from the OOM killer)"

[ "$(event app oom_kill)" -ge 1 ] || fail "app memory.events shows no oom_kill: $(cat $CG/app/memory.events)"
[ "$(event app/web oom_kill)" -ge 1 ] || fail "app/web memory.events shows no oom_kill"
expect_eq "$(event ops oom_kill)" "0" "ops oom_kill"
kill -0 $survivor 2>/dev/null || fail "the ops process was killed"
dmesg | grep -q "Memory cgroup out of memory" || fail "the kernel log has no memcg OOM"

ms --config /scenarios/oom.toml status --json > /tmp/status.json || fail "status --json"
kills=$(awk '/"path": "app",/ { inside = 1 } inside && /"oom_kill":/ { gsub(",", "", $2); print $2; exit }' /tmp/status.json)
[ "$kills" -ge 1 ] || fail "status --json shows no oom_kill for app: $(cat /tmp/status.json)"
kill $survivor
