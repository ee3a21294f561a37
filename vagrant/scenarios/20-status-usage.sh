# `memslice status` reports real usage: a process holding 64M in app/web
# shows up in the group's current_bytes and in the table.
. /scenarios/lib.sh
reset_tree
ms --config "$SHIPPED" apply > /dev/null 2>&1 || fail "apply"

start_in app/web hog 64M 120 > /tmp/hog.log 2>&1
hog=$!
wait_for_line /tmp/hog.log 60 holding

ms --config "$SHIPPED" status --json > /tmp/status.json || fail "status --json"
current=$(status_field app/web current_bytes < /tmp/status.json)
procs=$(status_field app/web procs < /tmp/status.json)
echo "app/web: current_bytes=$current procs=$procs"
[ -n "$current" ] && [ "$current" -ge $((64 << 20)) ] || fail "app/web current_bytes $current is below the 64M held"
[ "$procs" = 1 ] || fail "app/web procs is $procs, expected 1"
app=$(status_field app current_bytes < /tmp/status.json)
[ "$app" -ge "$current" ] || fail "app ($app) holds less than its child app/web ($current)"

ms --config "$SHIPPED" status > /tmp/status.txt || fail "status"
cat /tmp/status.txt
grep -Eq "^  web +6[4-9](\.[0-9])?M" /tmp/status.txt || fail "the table does not show web's usage"
kill $hog
