# apply with the systemd driver: the slice units are active with the
# configured limits (systemctl show and the cgroup files agree), a service
# with memslice's OOMPolicy=continue survives the OOM kill of one of its
# workers, and a second apply changes nothing.
CFG=/usr/local/lib/memslice-vm/scenarios/slices.toml
fail() { echo "FAIL: $*"; exit 1; }

memslice --config $CFG apply > /tmp/apply1.out 2>&1 || fail "apply: $(cat /tmp/apply1.out)"
cat /tmp/apply1.out
for unit in ops.slice app.slice app-web.slice; do
    systemctl is-active --quiet $unit || fail "$unit is not active"
done
agree() {
    shown=$(systemctl show -p "$2" --value "$1")
    kernel=$(cat "/sys/fs/cgroup/$3")
    [ "$shown" = "$4" ] || fail "$1 $2=$shown, expected $4"
    [ "$kernel" = "$4" ] || fail "/sys/fs/cgroup/$3 is $kernel, expected $4"
    echo "$1 $2=$shown, $3=$kernel"
}
agree app.slice MemoryMax app.slice/memory.max $((192 << 20))
agree app-web.slice MemoryMax app.slice/app-web.slice/memory.max $((96 << 20))
agree ops.slice MemoryMin ops.slice/memory.min $((64 << 20))

systemctl start worker-pool.service || fail "worker-pool did not start"
expect() { [ "$(systemctl show -p "$1" --value worker-pool.service)" = "$2" ] || fail "worker-pool $1 is $(systemctl show -p "$1" --value worker-pool.service), expected $2"; }
expect OOMPolicy continue
expect Slice app-web.slice
expect OOMScoreAdjust 500
events=/sys/fs/cgroup/app.slice/app-web.slice/worker-pool.service/memory.events
i=0
while [ "$(awk '$1 == "oom_kill" { print $2 }' $events)" -lt 1 ]; do
    i=$((i + 1))
    [ $i -gt 300 ] && fail "no OOM kill in worker-pool: $(cat $events)"
    sleep 0.1
done
sleep 1
systemctl is-active --quiet worker-pool.service || fail "worker-pool stopped after its worker's OOM kill: $(systemctl status worker-pool.service | tail -5)"
expect NRestarts 0
journalctl -u worker-pool.service --no-pager | grep -q "worker died, pool continues" || fail "the master did not see its worker die"

memslice --config $CFG apply > /tmp/apply2.out 2>&1 || fail "second apply: $(cat /tmp/apply2.out)"
cat /tmp/apply2.out
grep -q "(0 writes)" /tmp/apply2.out || fail "the second apply changed something"
memslice --config $CFG status
echo "units agree with the cgroup files; worker-pool survived its worker's OOM kill" > "$NOTES"
