# Task groups come and go while `status` and `metrics` read the tree
# (systemd removes an empty scope the moment it empties). A group removed
# between listing and reading is left out; the command never fails on it.
. /scenarios/lib.sh
reset_tree
ms --config "$SHIPPED" apply > /dev/null 2>&1 || fail "apply"

churn() {
    while :; do
        for i in 1 2 3 4 5 6 7 8; do mkdir "$CG/app/tasks/churn-$i" 2>/dev/null; done
        for i in 1 2 3 4 5 6 7 8; do rmdir "$CG/app/tasks/churn-$i" 2>/dev/null; done
    done
}
churn &
churner=$!
runs=0
while [ $runs -lt 40 ]; do
    runs=$((runs + 1))
    ms --config "$SHIPPED" status --json > /tmp/churn.out 2>&1 \
        || { kill $churner; fail "status, run $runs: $(tail -1 /tmp/churn.out)"; }
    ms --config "$SHIPPED" metrics > /tmp/churn.out 2>&1 \
        || { kill $churner; fail "metrics, run $runs: $(tail -1 /tmp/churn.out)"; }
done
kill $churner
wait $churner 2>/dev/null
for i in 1 2 3 4 5 6 7 8; do rmdir "$CG/app/tasks/churn-$i" 2>/dev/null; done
echo "$runs runs each of status and metrics while 8 task groups were created and removed in a loop" > "$NOTES"
