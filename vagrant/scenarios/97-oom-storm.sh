# Repeated OOM kills in the app slice trigger the storm response: the
# protected task is killed at once, long before the 10-minute grace.
. /scenarios/lib.sh
reset_tree
rm -rf /tmp/storm
ms --config /scenarios/storm.toml apply > /dev/null 2>&1 || fail "apply"
ms --config /scenarios/storm.toml protect --name batch -- sleep 600 > /tmp/batch.log 2>&1 &
batch=$!
memslice --cgroup-root "$CG" --config /scenarios/storm.toml heal watch > /tmp/watch.log 2>&1 &
watch=$!
sleep 1.5
kill -0 $batch 2>/dev/null || fail "the protected task died before the storm: $(cat /tmp/batch.log)"
started=$(cut -d' ' -f1 /proc/uptime)
i=0
# Two hogs at a time, so the rate does not hang on how fast this machine is.
while kill -0 $batch 2>/dev/null && [ $i -lt 30 ]; do
    start_in app/web hog 100M 0 > /dev/null 2>&1
    first=$!
    start_in app/web hog 100M 0 > /dev/null 2>&1
    wait $first $!
    i=$((i + 2))
done
if kill -0 $batch 2>/dev/null; then
    echo 1 > $CG/app/tasks/cgroup.kill
    fail "no storm response after $i hogs: $(tail -5 /tmp/watch.log)"
fi
wait $batch
status=$?
took=$(awk -v a="$started" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print b - a }')
kill -TERM $watch
wait $watch
grep "OOM storm" /tmp/watch.log | head -2
expect_eq "$status" "137" "the protected task's exit status (killed by the healer)"
grep -q "acted: OOM storm in app: .* kills in" /tmp/watch.log || fail "no storm response: $(tail -5 /tmp/watch.log)"
[ "$(event app oom_kill)" -ge 3 ] || fail "fewer than 3 OOM kills in app"
grep -q "memory event: .* app/web oom_kill +[1-9]" /tmp/watch.log || fail "heal watch did not log the kills as memory events"
echo "storm response ${took}s after the first hog, $i hogs, $(event app oom_kill) OOM kills; grace was 10m" > "$NOTES"
