# The cgroupfs driver's ways into a slice on a real kernel: driver = "auto"
# picks cgroupfs here (no systemd); `memslice exec` runs a command in a
# slice's leaf; `memslice move` moves running processes and refuses a pid
# that does not run; the PAM hook's command, run as pam_exec runs it (a
# child of the session's process, PAM_USER and PAM_TYPE set), places that
# process in app/sessions, and a hog started from the "session" is
# OOM-killed inside app's cap while ops lives on.
. /scenarios/lib.sh
reset_tree
# The hook reads only the fixed config: this scenario's stands in for it.
cp "$SHIPPED" /tmp/shipped.toml
trap 'cp /tmp/shipped.toml "$SHIPPED"' EXIT
cat > "$SHIPPED" <<'EOF'
[node]
driver = "auto"

[slice.ops]
memory_min = "64M"

[slice.app]
memory_max = "128M"
memory_swap_max = "0"
users = ["app"]

[slice.app.web]

[slice.app.cron]
EOF
ms apply > /tmp/apply.out 2>&1 || fail "apply: $(cat /tmp/apply.out)"
grep -q "create  app/sessions" /tmp/apply.out || fail "no sessions leaf: $(cat /tmp/apply.out)"
ms doctor --json > /tmp/doctor.json
grep -q '"found": "cgroupfs (auto: systemd is not PID 1, memslice writes the tree alone)"' /tmp/doctor.json \
    || fail "auto did not pick cgroupfs: $(cat /tmp/doctor.json)"

# exec: memslice becomes the command, in the slice's leaf.
out=$(ms exec --slice app/cron -- sh -c 'echo "$$ $(cat /proc/self/cgroup)"') || fail "exec: $out"
expect_eq "${out#* }" "0::/app/cron" "exec's command cgroup"
out=$(ms exec --slice app -- cat /proc/self/cgroup) || fail "exec into app"
expect_eq "$out" "0::/app/sessions" "exec into a slice with users"
ms exec --slice app/tasks-none -- true > /tmp/exec.err 2>&1
expect_eq "$?" "125" "exec into an unknown slice"

# move: running processes, all or nothing.
sleep 300 &
sleeper=$!
ms move --slice app/web $sleeper 4194999 > /tmp/move.err 2>&1
expect_eq "$?" "2" "move with a pid that does not run"
grep -q "no process 4194999: it is not running; nothing was moved" /tmp/move.err || fail "$(cat /tmp/move.err)"
expect_eq "$(cat /proc/$sleeper/cgroup)" "0::/" "nothing moved"
ms move --slice app/web $sleeper > /tmp/move.out 2>&1 || fail "move: $(cat /tmp/move.out)"
expect_eq "$(cat /proc/$sleeper/cgroup)" "0::/app/web" "the moved process"
kill $sleeper

# The PAM hook, as pam_exec runs it for a login of app: the shell stands
# for sshd's session process, the hog for what the user types there.
start_in ops hog 48M 300 > /tmp/ops.log 2>&1
survivor=$!
wait_for_line /tmp/ops.log 60 holding
PAM_TYPE=open_session PAM_USER=app sh -c '
    before=$(cut -d" " -f1 /proc/uptime)
    memslice pam-session
    echo "hook $?"
    awk -v a="$before" -v b="$(cut -d" " -f1 /proc/uptime)" "BEGIN { printf \"took %.2f\n\", b - a }"
    echo "shell $(cat /proc/self/cgroup)"
    hog 512M 0 > /dev/null 2>&1
    echo "hog $?"
' > /tmp/session.log 2>&1
cat /tmp/session.log
took=$(awk '$1 == "took" { print $2 }' /tmp/session.log)
grep -qx "hook 0" /tmp/session.log || fail "the hook did not exit 0"
grep -qx "shell 0::/app/sessions" /tmp/session.log || fail "the session was not placed"
grep -qx "hog 137" /tmp/session.log || fail "the session's hog was not OOM-killed"
[ "$(event app oom_kill)" -ge 1 ] || fail "no OOM kill in app: $(cat $CG/app/memory.events)"
expect_eq "$(event ops oom_kill)" "0" "ops oom_kill"
kill -0 $survivor 2>/dev/null || fail "the ops process died"
kill $survivor

# A user no slice names, and the closing of a session: nothing moves.
out=$(PAM_TYPE=open_session PAM_USER=root sh -c 'memslice pam-session; echo "$? $(cat /proc/self/cgroup)"')
expect_eq "$out" "0 0::/" "root's session"
out=$(PAM_TYPE=close_session PAM_USER=app sh -c 'memslice pam-session; echo "$? $(cat /proc/self/cgroup)"')
expect_eq "$out" "0 0::/" "a closing session"
# Without the tree, the login goes on (exit 0) and says why.
rmdir $CG/app/sessions
out=$(PAM_TYPE=open_session PAM_USER=app sh -c 'memslice pam-session 2>/tmp/hook.err; echo "$? $(cat /proc/self/cgroup)"')
expect_eq "$out" "0 0::/" "a session the hook cannot place"
grep -q "the session of app (pid [0-9]*) stays outside its slice: failed to write" /tmp/hook.err || fail "$(cat /tmp/hook.err)"
echo "auto picked cgroupfs; exec, move and the PAM hook placed processes; the session's hog was OOM-killed in app (oom_kill $(event app oom_kill)), ops untouched; the hook took ${took}s (TCG)" > "$NOTES"
