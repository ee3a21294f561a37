# The shipped slices.toml on a real kernel: every value is accepted, the
# kernel reads back what the config says, and a second apply writes nothing.
. /scenarios/lib.sh
reset_tree

ms --config "$SHIPPED" apply > /tmp/apply1.out 2>&1 || fail "first apply: $(cat /tmp/apply1.out)"
cat /tmp/apply1.out
grep -q "^applied " /tmp/apply1.out || fail "first apply applied nothing"

for group in ops app app/web app/db app/cron app/tasks; do
    [ -f "$CG/$group/memory.max" ] || fail "$group was not created with the memory controller"
done
ram=$(( $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) * 1024 ))
page=4096
expect_eq "$(cat $CG/app/memory.max)" "$(( ram * 80 / 100 / page * page ))" "app memory.max (80% of RAM)"
expect_eq "$(cat $CG/app/memory.high)" "$(( ram * 75 / 100 / page * page ))" "app memory.high (75% of RAM)"
expect_eq "$(cat $CG/app/memory.swap.max)" "$(( ram * 10 / 100 / page * page ))" "app memory.swap.max"
expect_eq "$(cat $CG/ops/memory.min)" "$((256 << 20))" "ops memory.min"
expect_eq "$(cat $CG/ops/memory.low)" "$((512 << 20))" "ops memory.low"
expect_eq "$(cat $CG/app/web/memory.oom.group)" "0" "app/web memory.oom.group"
expect_eq "$(cat $CG/app/cgroup.subtree_control)" "memory pids" "app cgroup.subtree_control"
expect_eq "$(cat $CG/app/tasks/cgroup.subtree_control)" "memory" "app/tasks cgroup.subtree_control"
grep -qw memory $CG/cgroup.subtree_control || fail "root does not enable memory"

ms --config "$SHIPPED" plan --detailed-exitcode > /tmp/plan.out 2>&1
status=$?
[ $status -eq 0 ] || fail "plan after apply wants changes (exit $status): $(cat /tmp/plan.out)"

ms --config "$SHIPPED" apply > /tmp/apply2.out 2>&1 || fail "second apply: $(cat /tmp/apply2.out)"
cat /tmp/apply2.out
grep -q "(0 writes)" /tmp/apply2.out || fail "second apply wrote: $(cat /tmp/apply2.out)"

# Drift by hand is seen, and put back by apply.
echo max > $CG/app/cron/memory.max
ms --config "$SHIPPED" plan > /tmp/drift.out 2>&1
grep -q "app/cron  memory.max: max -> " /tmp/drift.out || fail "drift not planned: $(cat /tmp/drift.out)"
[ "$(grep -c '^  set' /tmp/drift.out)" = 1 ] || fail "plan shows more than the drift: $(cat /tmp/drift.out)"
ms --config "$SHIPPED" apply > /dev/null 2>&1 || fail "apply after drift"
expect_eq "$(cat $CG/app/cron/memory.max)" "$(( ram * 40 / 100 / page * page ))" "app/cron memory.max restored"
