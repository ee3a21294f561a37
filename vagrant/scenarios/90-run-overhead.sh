# Spawn overhead on the real kernel (clone3 into a real group, cgroup.kill,
# rmdir): `memslice run -- /bin/true` against a bare /bin/true, 50 rounds
# each. Under TCG both sides are slowed alike; the ratio is what counts.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"
rounds=50
now() { cut -d' ' -f1 /proc/uptime; }
start=$(now)
i=0
while [ $i -lt $rounds ]; do /bin/true; i=$((i + 1)); done
bare=$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')
start=$(now)
i=0
while [ $i -lt $rounds ]; do
    ms --config /scenarios/tasks.toml run --slice app/tasks -- /bin/true || fail "run failed"
    i=$((i + 1))
done
run=$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')
[ -z "$(ls -d $CG/app/tasks/true-* 2>/dev/null)" ] || fail "task groups left behind"
awk -v bare="$bare" -v run="$run" -v n=$rounds 'BEGIN {
    printf "run overhead (real kernel, TCG): bare /bin/true %.1f ms, memslice run %.1f ms, ratio %.1f\n",
        bare * 1000 / n, run * 1000 / n, (bare > 0 ? run / bare : 0)
}' > "$NOTES"
cat "$NOTES"
