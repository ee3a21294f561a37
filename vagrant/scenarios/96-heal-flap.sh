# A service that never comes back is restarted no more than max_actions
# times per window by `heal watch`; the trip is logged once and notified.
# Then the wall clock jumps an hour ahead: the watcher says it fell behind,
# checks once instead of replaying the missed checks, and, the window
# having passed, acts twice more before it holds back again.
. /scenarios/lib.sh
reset_tree
rm -rf /tmp/flap /tmp/restarts /tmp/notices
ms --config /scenarios/flap.toml apply > /dev/null 2>&1 || fail "apply"
memslice --cgroup-root "$CG" --config /scenarios/flap.toml heal watch > /tmp/watch.log 2>&1 &
watch=$!
wait_for_line /tmp/watch.log 60 "flap limiter tripped"
sleep 3
restarts=$(wc -l < /tmp/restarts)
expect_eq "$restarts" "2" "restarts within the window"
expect_eq "$(grep -c 'flap limiter tripped' /tmp/watch.log)" "1" "error lines for the trip"
grep -q '"event":"flapping"' /tmp/notices || fail "the trip was not notified: $(cat /tmp/notices)"
expect_eq "$(grep -c '"event":"heal"' /tmp/notices)" "2" "heal notices"

checks_before=$(grep -c 'holding back' /tmp/watch.log)
date -s "@$(( $(date +%s) + 3600 ))" > /dev/null
i=0
while [ "$(grep -c 'flap limiter tripped' /tmp/watch.log)" -lt 2 ]; do
    i=$((i + 1))
    [ $i -gt 300 ] && fail "no second trip after the jump: $(tail -3 /tmp/watch.log)"
    sleep 0.1
done
sleep 2
grep -q "fell behind the clock by" /tmp/watch.log || fail "the jump went unnoticed: $(tail -3 /tmp/watch.log)"
expect_eq "$(wc -l < /tmp/restarts)" "4" "restarts after the window passed (two more, then held back)"
expect_eq "$(grep -c 'flap limiter tripped' /tmp/watch.log)" "2" "error lines, one per trip"
checks_after=$(grep -c 'down for' /tmp/watch.log)
[ "$checks_after" -lt $((checks_before + 20)) ] || fail "missed checks were replayed: $checks_before then $checks_after"
date -s "@$(( $(date +%s) - 3600 ))" > /dev/null
kill -TERM $watch
wait $watch
expect_eq "$?" "0" "heal watch's exit status on SIGTERM"
grep -q "heal watch stopping" /tmp/watch.log || fail "no clean stop"
echo "restarts: 2 in the first hour, 2 more after an hour's clock jump; one error line per trip" > "$NOTES"
