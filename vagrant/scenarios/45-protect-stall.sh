# A protected task at its own memory cap cannot be OOM-killed (-1000): it
# stalls. memslice says so once, naming the group and how to end it; the
# group's cgroup.kill ends it and memslice exits 137.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"
ms --config /scenarios/tasks.toml protect --name stuck -- hog 300M 0 > /tmp/stuck.log 2>&1 &
wrapper=$!
wait_for_line /tmp/stuck.log 30 "the kernel finds nothing it may kill"
cat /tmp/stuck.log
grep -q "warning: app/tasks/stuck-[0-9]* is at its memory.max (160M)" /tmp/stuck.log || fail "the warning does not name the group and its limit"
[ "$(grep -c 'finds nothing it may kill' /tmp/stuck.log)" = 1 ] || fail "warned more than once"
group=$(ls -d $CG/app/tasks/stuck-*)
expect_eq "$(event app/tasks/$(basename $group) oom_kill)" "0" "kills in the stalled group"
echo 1 > $group/cgroup.kill
wait $wrapper
expect_eq "$?" "137" "memslice's exit status after the group was killed"
