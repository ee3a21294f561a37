# A hog's OOM kill in the app slice appears in `events --follow` within a
# second, once, at app/web, with the victim's pid and name from the kernel
# log. (`heal watch` logs the same events: scenario 97.)
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/oom.toml apply > /dev/null 2>&1 || fail "apply oom.toml"
memslice --cgroup-root "$CG" --config /scenarios/oom.toml events --follow > /tmp/events.log 2>&1 &
follow=$!
sleep 1
start_in app/web hog 512M 0 > /tmp/victim.log 2>&1
victim=$!
wait $victim
expect_eq "$?" "137" "the hog's exit status"
killed=$(cut -d' ' -f1 /proc/uptime)
while ! grep -q "oom_kill" /tmp/events.log; do
    waited=$(awk -v a="$killed" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print b - a }')
    awk -v w="$waited" 'BEGIN { exit !(w > 5) }' && fail "no oom_kill line 5 s after the kill: $(cat /tmp/events.log)"
    sleep 0.05
done
seen=$(cut -d' ' -f1 /proc/uptime)
cat /tmp/events.log
took=$(awk -v a="$killed" -v b="$seen" 'BEGIN { print b - a }')
awk -v t="$took" 'BEGIN { exit !(t < 1) }' || fail "the kill took ${took}s to appear"
grep -q " app/web oom_kill +1 (total 1), usage .*, victim pid $victim (hog) in /app/web" /tmp/events.log \
    || grep -q " app/web oom_kill +1 (total 1), usage .*, victim pid [0-9]* (hog) in /app/web" /tmp/events.log \
    || fail "the kill line lacks the group or the victim"
grep -q " app oom_kill" /tmp/events.log && fail "the kill was reported at app too"
grep -q " app oom +1" /tmp/events.log || fail "the OOM at app's limit is missing"
kill $follow
echo "oom_kill seen by events --follow ${took}s after the hog's death was reaped" > "$NOTES"
