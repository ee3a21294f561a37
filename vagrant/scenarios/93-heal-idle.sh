# An idle `heal watch` (a check every 10 s, a PSI trigger on the app
# slice, every service up) beside earlyoom (Debian's, default settings),
# both watched for the same 60 s: wake-ups (voluntary context switches of
# every thread), CPU time, and resident memory at the end.
. /scenarios/lib.sh
reset_tree
rm -rf /tmp/idle
CFG=/scenarios/idle.toml
ms --config $CFG apply > /dev/null 2>&1 || fail "apply"
memslice --cgroup-root "$CG" --config $CFG heal watch > /tmp/watch.log 2>&1 &
watch=$!
/usr/bin/earlyoom > /tmp/earlyoom.log 2>&1 &
earlyoom=$!
wait_for_line /tmp/watch.log 30 "pressure trigger armed"
wait_for_line /tmp/watch.log 30 "up: all 1 service"
sleep 2

# Voluntary context switches of every thread: each is a sleep that ended.
wakeups() {
    cat /proc/$1/task/*/status | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n }'
}
# utime + stime in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' /proc/$1/stat
}
kib() {
    awk -v key="$2:" '$1 == key { print $2 }' /proc/$1/status
}
seconds=60
w0=$(wakeups $watch) e0=$(wakeups $earlyoom)
c0=$(cpu_ticks $watch) d0=$(cpu_ticks $earlyoom)
sleep $seconds
w1=$(wakeups $watch) e1=$(wakeups $earlyoom)
c1=$(cpu_ticks $watch) d1=$(cpu_ticks $earlyoom)
kill -0 $watch 2>/dev/null || fail "heal watch died: $(tail -n 5 /tmp/watch.log)"
kill -0 $earlyoom 2>/dev/null || fail "earlyoom died: $(tail -n 5 /tmp/earlyoom.log)"
hz=100
report() {
    awk -v who="$1" -v w=$(($3 - $2)) -v c=$(($5 - $4)) -v hz=$hz -v s=$seconds \
        -v rss="$(kib $6 VmRSS)" -v anon="$(kib $6 RssAnon)" -v threads="$(ls /proc/$6/task | wc -l)" 'BEGIN {
        printf "heal watch idle %d s | %s: %d wake-ups, %.2f s CPU, RSS %.1f MB (%.2f MB anonymous), %d thread(s) | VM\n",
            s, who, w, c / hz, rss / 1024, anon / 1024, threads
    }' | tee -a "$NOTES"
}
report "memslice heal watch" "$w0" "$w1" "$c0" "$c1" $watch
report earlyoom "$e0" "$e1" "$d0" "$d1" $earlyoom
checks=$(grep -c "up: all 1 service" /tmp/watch.log)
echo "heal watch logged $checks checks in all (one each 10 s)"
kill -TERM $watch $earlyoom
wait $watch
