# The protected command and the children it spawns have oom_score_adj
# -1000; the caller's shell keeps its own. memslice lowers its own score
# only after the command started (it must outlive the task to clean up),
# so the command inherited nothing from it.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"

caller_before=$(cat /proc/$$/oom_score_adj)
ms --config /scenarios/tasks.toml protect -- sh -c '
    echo "self $(cat /proc/self/oom_score_adj)"
    sleep 0.5
    echo "memslice $(cat /proc/$PPID/oom_score_adj)"
    sh -c "echo child \$(cat /proc/self/oom_score_adj); sh -c \"echo grandchild \\\$(cat /proc/self/oom_score_adj)\""
    echo "group $(cat /proc/self/cgroup)"
' > /tmp/adj.log 2>&1 || fail "protect: $(cat /tmp/adj.log)"
cat /tmp/adj.log
grep -qx "self -1000" /tmp/adj.log || fail "the command is not protected"
grep -qx "child -1000" /tmp/adj.log || fail "its child is not protected"
grep -qx "grandchild -1000" /tmp/adj.log || fail "its grandchild is not protected"
grep -qx "memslice -1000" /tmp/adj.log || fail "the supervisor did not protect itself"
grep -q "^group 0::/app/tasks/sh-" /tmp/adj.log || fail "the command ran outside its task group"
expect_eq "$(cat /proc/$$/oom_score_adj)" "$caller_before" "the caller shell's oom_score_adj"
expect_eq "$caller_before" "0" "the caller shell's oom_score_adj"
