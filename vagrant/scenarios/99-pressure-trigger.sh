# The PSI trigger wakes `heal watch` for a check as soon as the app slice
# stalls on memory, long before its next tick (an hour away).
. /scenarios/lib.sh
reset_tree
rm -rf /tmp/pressure
ms --config /scenarios/pressure.toml apply > /dev/null 2>&1 || fail "apply"
memslice --cgroup-root "$CG" --config /scenarios/pressure.toml heal watch > /tmp/watch.log 2>&1 &
watch=$!
wait_for_line /tmp/watch.log 30 "pressure trigger armed"
wait_for_line /tmp/watch.log 30 "up: all 1 service"
started=$(cut -d' ' -f1 /proc/uptime)
start_in app/web hog 96M 30 > /tmp/hog.log 2>&1
wait_for_line /tmp/watch.log 60 "memory pressure crossed some"
took=$(awk -v a="$started" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print b - a }')
# The check the trigger started logs its verdict a moment after the trigger.
i=0
while [ "$(grep -c "up: all 1 service" /tmp/watch.log)" -lt 2 ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "the trigger did not lead to a check within 10s: $(cat /tmp/watch.log)"
    sleep 0.1
done
checks=$(grep -c "up: all 1 service" /tmp/watch.log)
grep "memory pressure crossed" /tmp/watch.log | head -1
awk '/^some/' $CG/app/memory.pressure
echo "pressure trigger fired ${took}s after the hog started; $checks checks with the next tick an hour away" > "$NOTES"
kill -TERM $watch
wait $watch
