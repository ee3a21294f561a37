# A supervisor killed with SIGKILL leaves its task running unsupervised:
# `tasks` shows it orphaned, and once the task ends, the healer's next
# check removes the empty group it left (heal watch every second here).
. /scenarios/lib.sh
reset_tree
cat /scenarios/tasks.toml - > $CONF/orphan.toml <<'TOML'
[heal]
state_file = "/tmp/orphan-heal/state"
lock_file = "/tmp/orphan-heal/lock"
interval = "1s"
timezone = "UTC"
protected = ["app/tasks"]
[[heal.service]]
name = "ok"
command = ["true"]
TOML
ms --config $CONF/orphan.toml apply > /dev/null 2>&1 || fail "apply"
memslice --cgroup-root $CG --config $CONF/orphan.toml protect --name lost -- hog 16M 4 > /tmp/lost.log 2>&1 &
supervisor=$!
wait_for_line /tmp/lost.log 10 "16 MiB"
kill -9 $supervisor
wait $supervisor 2>/dev/null
group=$(ls -d $CG/app/tasks/lost-*)
ms --config $CONF/orphan.toml tasks | grep -q "lost-.* orphaned" || fail "tasks does not show the orphan: $(ms --config $CONF/orphan.toml tasks)"
ms --config $CONF/orphan.toml heal watch > /tmp/watch.log 2>&1 &
watcher=$!
i=0
while [ -n "$(cat $group/cgroup.procs 2>/dev/null)" ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "the orphaned task never ended"
    sleep 0.05
done
ended=$(cut -d' ' -f1 /proc/uptime)
i=0
while [ -d "$group" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "the empty group stayed 5s after its task ended: $(tail -5 /tmp/watch.log)"
    sleep 0.05
done
took=$(awk -v a="$ended" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }')
kill $watcher
grep -q "removed an empty task group its memslice left behind" /tmp/watch.log || fail "the healer did not say it removed the group"
echo "a SIGKILLed supervisor's group: shown orphaned, removed by heal watch ${took}s after its task ended" > "$NOTES"
