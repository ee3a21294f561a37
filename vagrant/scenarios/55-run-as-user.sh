# A task started as another user on the real kernel: its process is cloned
# into the task group with clone3(CLONE_INTO_CGROUP) sharing memslice's
# memory until exec (sys::clone3_into), and drops to the user with the
# raw system calls. The task runs as the user, in its group, with no
# capability and its own oom_score_adj, which memslice's own -1000 (the
# supervisor protects itself right after the clone) does not reach;
# memslice stays root and removes the group, and it can still dump core:
# the child's switch to the user marked the memory they shared not
# dumpable, and memslice marks it dumpable again.
. /scenarios/lib.sh
reset_tree
TASKS=/scenarios/tasks.toml
ms --config $TASKS apply > /dev/null 2>&1 || fail "apply tasks.toml"
# The guest has no user database; this one goes with the scenario.
trap 'rm -f /etc/passwd /etc/group /tmp/core.*; echo core > /proc/sys/kernel/core_pattern' EXIT
echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
echo 'worker:x:4242:4343:worker:/tmp:/bin/sh' >> /etc/passwd
echo 'root:x:0:' > /etc/group
echo 'workers:x:4343:' >> /etc/group
echo 'extra:x:4444:worker' >> /etc/group

script='echo "ids $(id -u) $(id -g) $(id -G)"
grep CapEff /proc/self/status
echo "cgroup $(cat /proc/self/cgroup)"
echo "task adj $(cat /proc/self/oom_score_adj)"
echo "memslice adj $(cat /proc/$PPID/oom_score_adj)"
echo "memslice uid $(grep ^Uid /proc/$PPID/status | tr -s "\t " " ")"'
MEMSLICE_LOG=debug ms --config $TASKS run --slice app/tasks --user worker --oom-score-adj 500 \
    --name as-worker -- /bin/sh -c "$script" > /tmp/as-worker.log 2>&1
status=$?
cat /tmp/as-worker.log
expect_eq "$status" "0" "the task's exit status"
grep -q "spawned with clone3(CLONE_INTO_CGROUP)" /tmp/as-worker.log || fail "clone3 was not used on a 6.1 kernel"
grep -q "^ids 4242 4343 4343 4444$" /tmp/as-worker.log || fail "the task did not run as worker with its groups"
grep -q "^CapEff:	0000000000000000$" /tmp/as-worker.log || fail "the task kept capabilities"
grep -q "^cgroup 0::/app/tasks/as-worker-[0-9]*$" /tmp/as-worker.log || fail "the task was not in its group"
grep -q "^task adj 500$" /tmp/as-worker.log || fail "the task's oom_score_adj"
grep -q "^memslice adj -1000$" /tmp/as-worker.log || fail "the supervisor's own oom_score_adj"
grep -q "^memslice uid Uid: 0 0 0 0$" /tmp/as-worker.log || fail "memslice did not stay root"
[ -z "$(ls -d $CG/app/tasks/as-worker-* 2>/dev/null)" ] || fail "the task group was not removed"

# A supervisor that crashes after starting a task as another user leaves
# a core to read.
echo '/tmp/core.%p' > /proc/sys/kernel/core_pattern
ulimit -c unlimited
memslice --cgroup-root "$CG" --config $TASKS run --slice app/tasks --user worker \
    --name dumps -- /bin/sleep 30 > /dev/null 2>&1 &
supervisor=$!
# memslice lowers its own oom_score_adj once the task has exec'd, after
# it marked itself dumpable again.
i=0
until [ "$(cat /proc/$supervisor/oom_score_adj 2>/dev/null)" = -1000 ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && fail "the task did not start"
    sleep 0.1
done
kill -ABRT $supervisor
wait $supervisor
echo 1 > "$CG/app/tasks/dumps-$supervisor/cgroup.kill"
sleep 0.2
rmdir "$CG/app/tasks/dumps-$supervisor" || fail "cannot remove the crashed supervisor's group"
[ -s /tmp/core.$supervisor ] || fail "memslice dumped no core after starting a task as another user"
