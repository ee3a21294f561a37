# The seed's pattern, `protect -- screen -d -m …`: work the command leaves
# running stays in the task's group, protected and capped, the prompt comes
# back at once, and the group goes once the work ends. Tried with setsid
# and with what `nohup … &` does (busybox has no nohup: ignore SIGHUP,
# redirect, background).
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

try() {
    label=$1 script=$2
    started=$(now)
    ms --config /scenarios/tasks.toml protect --name "$label" -- sh -c "$script" > /tmp/$label.log 2>&1
    status=$?
    prompt=$(since "$started")
    cat /tmp/$label.log
    expect_eq "$status" 0 "$label: the command's exit status"
    awk -v t="$prompt" 'BEGIN { exit !(t < 1) }' || fail "$label: the prompt came back after ${prompt}s"
    grep -q "left processes running in app/tasks/$label-" /tmp/$label.log || fail "$label: no word of the work left running"
    group=$(ls -d $CG/app/tasks/$label-* 2>/dev/null)
    [ -n "$group" ] || fail "$label: the group went with the command"
    sleep 2
    pids=$(cat "$group/cgroup.procs")
    [ -n "$pids" ] || fail "$label: the detached work is not in its group 2s later"
    for pid in $pids; do
        adj=$(cat /proc/$pid/oom_score_adj 2>/dev/null) || continue
        expect_eq "$adj" "-1000" "$label: oom_score_adj of detached pid $pid"
    done
    expect_eq "$(cat $group/memory.max)" "$((160 << 20))" "$label: memory.max of the group"
    ms --config /scenarios/tasks.toml tasks | grep -q "$label-.* detached" \
        || fail "$label: tasks does not show it detached: $(ms --config /scenarios/tasks.toml tasks)"
    # The work holds 3 s; the group must go within 2 s of its end.
    i=0
    while [ -n "$(cat $group/cgroup.procs 2>/dev/null)" ]; do
        i=$((i + 1)); [ $i -gt 200 ] && fail "$label: the detached work never ended"
        sleep 0.05
    done
    ended=$(now)
    i=0
    while [ -d "$group" ]; do
        i=$((i + 1)); [ $i -gt 40 ] && fail "$label: the empty group stayed 2s after the work ended"
        sleep 0.05
    done
    echo "$label: prompt back in ${prompt}s, work alive at -1000 in its group 2s later, group gone $(since "$ended")s after the work ended" >> "$NOTES"
}
try setsid 'setsid hog 16M 3 < /dev/null > /dev/null 2>&1 &'
try nohup "sh -c \"trap '' HUP; exec hog 16M 3\" > /dev/null 2>&1 &"
