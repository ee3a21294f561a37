# A protected task at its own memory cap cannot be OOM-killed (-1000): it
# stalls. memslice says so once, naming the group and the bound, and once
# the stall has lasted [protect] stall_timeout (10 s here) it ends the task
# with cgroup.kill and says why; memslice exits 137.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/stall.toml apply > /dev/null 2>&1 || fail "apply stall.toml"
started=$(cut -d' ' -f1 /proc/uptime)
ms --config /scenarios/stall.toml protect --name stuck -- hog 300M 0 > /tmp/stuck.log 2>&1 &
wrapper=$!
wait_for_line /tmp/stuck.log 30 "the kernel finds nothing it may kill"
stalled=$(cut -d' ' -f1 /proc/uptime)
grep -q "warning: app/tasks/stuck-[0-9]* is at its memory.max (160M) .*memslice ends it after 10s (\[protect\] stall_timeout)" /tmp/stuck.log \
    || fail "the warning does not name the group, its limit and the bound: $(cat /tmp/stuck.log)"
group=$(ls -d $CG/app/tasks/stuck-*)
expect_eq "$(event app/tasks/$(basename $group) oom_kill)" "0" "kills in the stalled group"
ms --config /scenarios/stall.toml tasks | grep -q "stuck-.* stalled" || fail "tasks does not show the stall: $(ms --config /scenarios/stall.toml tasks)"
# The metric the shipped alert rule MemsliceProtectedTaskStalled reads.
ms --config /scenarios/stall.toml metrics | grep -q "^memslice_task_stalled{group=\"app/tasks/$(basename $group)\",slice=\"app/tasks\"} 1$" \
    || fail "metrics do not show the stall: $(ms --config /scenarios/stall.toml metrics | grep task_stalled)"
wait $wrapper
status=$?
ended=$(cut -d' ' -f1 /proc/uptime)
cat /tmp/stuck.log
expect_eq "$status" "137" "memslice's exit status after the bound ended the task"
[ "$(grep -c 'finds nothing it may kill' /tmp/stuck.log)" = 1 ] || fail "warned more than once"
grep -q "was killed by memslice: stalled at its own memory cap for 1[0-9]s, past \[protect\] stall_timeout" /tmp/stuck.log \
    || fail "the task's memslice does not say why it ended"
[ -d "$group" ] && fail "the ended task's group is still there"
lasted=$(awk -v a="$stalled" -v b="$ended" 'BEGIN { printf "%.1f", b - a }')
awk -v l="$lasted" 'BEGIN { exit !(l >= 9.5 && l < 20) }' || fail "ended after ${lasted}s of stall, expected about 10s"
echo "stall_timeout 10s: warned $(awk -v a="$started" -v b="$stalled" 'BEGIN { printf "%.1f", b - a }')s after start, ended ${lasted}s later with exit 137 and its reason" > "$NOTES"
