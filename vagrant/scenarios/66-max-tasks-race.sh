# Eight protects started at once with max_tasks = 2: exactly two run, the
# others are refused, and never more than two task groups hold processes.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"
rm -f /tmp/race.*
for i in 1 2 3 4 5 6 7 8; do
    (ms --config /scenarios/tasks.toml protect --name race$i -- hog 8M 2 > /tmp/race.$i.log 2>&1; echo $? > /tmp/race.$i.status) &
done
most=0
for tick in $(seq 1 60); do
    running=0
    for dir in $CG/app/tasks/*/; do
        [ -n "$(cat "$dir/cgroup.procs" 2>/dev/null)" ] && running=$((running + 1))
    done
    [ $running -gt $most ] && most=$running
    sleep 0.05
done
wait
ran=$(grep -lx 0 /tmp/race.*.status | wc -l)
refused=$(grep -lx 125 /tmp/race.*.status | wc -l)
grep -l "the most \[protect\] max_tasks allows is 2" /tmp/race.*.log > /dev/null || fail "no refusal names the limit"
expect_eq "$ran" 2 "protects that ran"
expect_eq "$refused" 6 "protects refused"
[ $most -le 2 ] || fail "$most task groups held processes at once"
echo "8 protects at once, max_tasks 2: $ran ran, $refused refused, at most $most running at any look" > "$NOTES"
