# --oom-group: one process's OOM kill takes the whole task, the kill is
# reported and memslice exits 137.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"

ms --config /scenarios/tasks.toml run --slice app/tasks --memory-max 64M --oom-group --name og -- \
    sh -c 'sleep 300 & echo $! > /tmp/sibling.pid; hog 200M 0; echo "survived the hog"; wait' > /tmp/og.log 2>&1
status=$?
cat /tmp/og.log
expect_eq "$status" "137" "memslice's exit status"
grep -q "the kernel OOM-killed .* in app/tasks/og-.*memory.max 64M, peak .*the command was killed" /tmp/og.log || fail "the OOM kill was not reported"
grep -q "survived the hog" /tmp/og.log && fail "the shell survived: memory.oom.group did not take the whole task"
[ ! -e /proc/$(cat /tmp/sibling.pid) ] || fail "the sibling sleep survived"
[ "$(event app/tasks oom_group_kill)" -ge 1 ] || fail "app/tasks shows no oom_group_kill: $(cat $CG/app/tasks/memory.events)"
