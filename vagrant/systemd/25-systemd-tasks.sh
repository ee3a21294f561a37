# Protected tasks in systemd scopes: detached work keeps its scope (and
# -1000, and MemoryMax) and systemd removes the scope once it ends; the stall
# bound ends a stalled task and its memslice says why although systemd
# removed the scope at once; a SIGKILLed supervisor's scope goes when its
# task ends; eight protects at once with max_tasks 2 run two.
CFG=/usr/local/lib/memslice-vm/scenarios/slices.toml
STALL=/etc/memslice/stall.toml
fail() { echo "FAIL: $*"; exit 1; }
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
SLICE=/sys/fs/cgroup/app.slice/app-tasks.slice
mkdir -p /etc/memslice
sed 's/^max_tasks = 2$/max_tasks = 2\nstall_timeout = "10s"/' $CFG > $STALL
memslice --config $CFG apply > /tmp/apply.log 2>&1 || fail "apply: $(cat /tmp/apply.log)"

started=$(now)
memslice --config $CFG protect --name detached -- sh -c 'setsid hog 16M 6 < /dev/null > /dev/null 2>&1 &' > /tmp/detached.log 2>&1 \
    || fail "protect: $(cat /tmp/detached.log)"
prompt=$(since "$started")
awk -v t="$prompt" 'BEGIN { exit !(t < 1) }' || fail "the prompt came back after ${prompt}s"
scope=$(ls -d $SLICE/memslice-detached-*.scope 2>/dev/null)
[ -n "$scope" ] || fail "the scope went with the command"
unit=$(basename "$scope")
sleep 2
pids=$(cat "$scope/cgroup.procs")
[ -n "$pids" ] || fail "the detached work is not in its scope"
for pid in $pids; do
    [ "$(cat /proc/$pid/oom_score_adj)" = -1000 ] || fail "detached pid $pid is not protected"
done
[ "$(systemctl show -p ManagedOOMPreference --value "$unit")" = omit ] || fail "systemd-oomd would not omit $unit"
[ "$(systemctl show -p MemoryMax --value "$unit")" = $((64 << 20)) ] || fail "$unit lost its MemoryMax"
memslice --config $CFG tasks | grep -q "memslice-detached-.* detached" || fail "tasks: $(memslice --config $CFG tasks)"
while [ -n "$(cat $scope/cgroup.procs 2>/dev/null)" ]; do sleep 0.05; done
ended=$(now)
i=0
while [ -d "$scope" ]; do
    i=$((i + 1)); [ $i -gt 40 ] && fail "the empty scope stayed 2s"
    sleep 0.05
done
echo "detached in a scope: prompt back in ${prompt}s, -1000 and MemoryMax kept, ManagedOOMPreference=omit, scope gone $(since "$ended")s after the work ended" >> "$NOTES"

memslice --config $STALL protect --name stuck -- hog 300M 0 > /tmp/stuck.log 2>&1
status=$?
cat /tmp/stuck.log
[ $status = 137 ] || fail "the stalled task's exit status is $status"
grep -q "was killed by memslice: stalled at its own memory cap for 1[0-9]s, past \[protect\] stall_timeout" /tmp/stuck.log \
    || fail "the stalled task's memslice does not say why"
echo "stall bound in a scope: exit 137 and the reason, read after systemd removed the scope" >> "$NOTES"

memslice --config $CFG protect --name lost -- hog 16M 3 > /tmp/lost.log 2>&1 &
supervisor=$!
sleep 1
kill -9 $supervisor
scope=$(ls -d $SLICE/memslice-lost-*.scope)
memslice --config $CFG tasks | grep -q "memslice-lost-.* orphaned" || fail "tasks: $(memslice --config $CFG tasks)"
i=0
while [ -d "$scope" ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "the orphaned scope stayed after its task's end"
    sleep 0.05
done
echo "a SIGKILLed supervisor: shown orphaned, systemd removed its scope when the task ended" >> "$NOTES"

rm -f /tmp/race.*
for i in 1 2 3 4 5 6 7 8; do
    (memslice --config $CFG protect --name race$i -- hog 8M 3 > /tmp/race.$i.log 2>&1; echo $? > /tmp/race.$i.status) &
done
most=0
for tick in $(seq 1 80); do
    running=$(ls -d $SLICE/memslice-race*.scope 2>/dev/null | wc -l)
    [ $running -gt $most ] && most=$running
    sleep 0.05
done
wait
ran=$(grep -lx 0 /tmp/race.*.status | wc -l)
refused=$(grep -lx 125 /tmp/race.*.status | wc -l)
[ "$ran" = 2 ] && [ "$refused" = 6 ] || fail "$ran ran, $refused refused: $(cat /tmp/race.*.log)"
[ $most -le 2 ] || fail "$most scopes at once"
echo "8 protects at once in scopes, max_tasks 2: $ran ran, $refused refused, at most $most scopes" >> "$NOTES"
