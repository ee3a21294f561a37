# With --kill-leftovers, a command that double-forks a daemon and exits:
# the daemon is killed with the group, nothing is left as a zombie, and the
# group is removed. (Without it the daemon stays: 62-protect-detached.)
. /scenarios/lib.sh
reset_tree
ms --config /scenarios/tasks.toml apply > /dev/null 2>&1 || fail "apply tasks.toml"

ms --config /scenarios/tasks.toml run --slice app/tasks --name daemonizer --kill-leftovers -- \
    sh -c '(sleep 300 & echo $! > /tmp/daemon.pid); sleep 0.3; exit 5'
expect_eq "$?" "5" "exit status"
daemon=$(cat /tmp/daemon.pid)
[ ! -e /proc/$daemon ] || fail "the double-forked daemon $daemon is still there: $(cat /proc/$daemon/status | head -3)"
zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null)
[ -z "$zombies" ] || fail "zombies left: $zombies"
[ -z "$(ls -d $CG/app/tasks/daemonizer-* 2>/dev/null)" ] || fail "the task group was not removed"
