# A signal sent to memslice reaches the command, whose status comes back.
# (memslice is started directly: $! of a shell function would be a subshell.)
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"

memslice --cgroup-root "$CG" --config /scenarios/tasks.toml run --slice app/tasks -- \
    sh -c 'trap "echo got-USR1" USR1; trap "echo got-TERM; exit 42" TERM; echo ready; while :; do sleep 0.1; done' > /tmp/sig.log 2>&1 &
memslice=$!
wait_for_line /tmp/sig.log 30 ready
kill -USR1 $memslice
wait_for_line /tmp/sig.log 30 got-USR1
kill -TERM $memslice
wait $memslice
expect_eq "$?" "42" "exit status after SIGTERM"
grep -q got-TERM /tmp/sig.log || fail "SIGTERM did not reach the command"
