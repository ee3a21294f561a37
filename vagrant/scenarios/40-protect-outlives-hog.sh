# An unprotected hog and a protected task share the capped app slice; when
# it runs out, the kernel kills the hog and the protected task completes.
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"

start_in app/web hog 120M 60 > /tmp/hog.log 2>&1
hog=$!
wait_for_line /tmp/hog.log 60 holding

MEMSLICE_LOG=debug ms --config /scenarios/tasks.toml protect --name import -- hog 100M 2 > /tmp/protected.log 2>&1
status=$?
cat /tmp/protected.log
expect_eq "$status" "0" "the protected task's exit status"
grep -q "holding 100 MiB" /tmp/protected.log || fail "the protected task did not get its memory"
grep -q "spawned with clone3(CLONE_INTO_CGROUP)" /tmp/protected.log || fail "clone3 was not used on a 6.1 kernel"

wait $hog
expect_eq "$?" "137" "the unprotected hog's exit status"
[ "$(event app oom_kill)" -ge 1 ] || fail "app shows no oom_kill"
[ -z "$(ls -d $CG/app/tasks/import-* 2>/dev/null)" ] || fail "the task group was not removed"
