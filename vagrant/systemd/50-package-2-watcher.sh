# The Debian package on a real systemd, 2 of 3: the watcher, enabled by
# hand, reaches active (running) through READY=1 and reports its STATUS=;
# checks longer than WatchdogSec are not taken for a hang, a SIGSTOPped
# watcher is restarted by the watchdog; the journal has the MEMSLICE_*
# fields and priorities (an OOM kill in ops at crit).
. /usr/local/lib/memslice-vm/scenarios/package.sh

# The operator's config: the systemd driver, a capped slice below ops (for
# an OOM kill there), and a healer whose web is down until it is restarted
# and whose slow probe makes each check outlast WatchdogSec.
cat > /etc/memslice/slices.toml <<'EOF'
[node]
driver = "systemd"

[slice.ops]
memory_min = "64M"

[slice.ops.probe]
memory_max = "32M"
memory_swap_max = "0"

[slice.app]
memory_max = "192M"
memory_swap_max = "0"

[slice.app.tasks]

[protect]
slice = "app/tasks"
memory_max = "64M"
max_tasks = 2

[heal]
timezone = "UTC"
interval = "5s"
grace_day = "1s"
failures_before_down = 1

[[heal.service]]
name = "web"
command = ["test", "-e", "/run/memslice-test-web-up"]
restart_command = ["touch", "/run/memslice-test-web-up"]

EOF
cp /etc/memslice/slices.toml /tmp/fast.toml
cat >> /etc/memslice/slices.toml <<'EOF'

[[heal.service]]
name = "slow"
command = ["sleep", "5"]
timeout = "10s"
EOF
rm -f /run/memslice-test-web-up
memslice apply > /tmp/apply.log 2>&1 || fail "apply: $(cat /tmp/apply.log)"
systemctl is-active --quiet ops-probe.slice || fail "ops-probe.slice is not active: $(cat /tmp/apply.log)"

# A short watchdog for the test; the shipped WatchdogSec is 60s.
mkdir -p /etc/systemd/system/memslice-heal-watch.service.d
printf '[Service]\nWatchdogSec=4s\nRestartSec=1s\n' > /etc/systemd/system/memslice-heal-watch.service.d/test.conf
systemctl daemon-reload
systemctl enable memslice-heal-watch.service 2> /dev/null || fail "enable"
start=$(now)
systemctl start memslice-heal-watch.service || fail "start: $(systemctl status memslice-heal-watch.service | tail -5)"
started_in=$(since "$start")
[ "$(show ActiveState)/$(show SubState)" = active/running ] || fail "the watcher is $(show ActiveState)/$(show SubState)"
[ "$(show Type)" = notify ] || fail "Type=$(show Type)"
status=$(show StatusText)
echo "$status" | grep -Eq '^(web down .* of 1s \(day\)|web failing; grace 1s \(day\))' || fail "STATUS=$status"
note "the watcher is active (running) ${started_in}s after systemctl start (READY=1 after its first check, which takes 5s): STATUS=$status"

# The heal action: web is down past its 1s grace, the healer kills the
# protected tasks and restarts web.
i=0
until journalctl -q -t memslice MEMSLICE_DECISION=acted | grep -q acted; do
    i=$((i + 1))
    [ $i -gt 60 ] && fail "no heal action in 30 s: $(journalctl -q -t memslice -n 10)"
    sleep 0.5
done
i=0
until show StatusText | grep -q '^up; grace 1s (day)$'; do
    i=$((i + 1))
    [ $i -gt 60 ] && fail "STATUS is still $(show StatusText)"
    sleep 0.5
done

# An OOM kill in the operations side: crit.
systemd-run --quiet --scope --slice=ops-probe.slice /usr/local/bin/hog 100M > /dev/null 2>&1
i=0
until journalctl -q -t memslice -p crit | grep -q "OOM kill in the operations slice"; do
    i=$((i + 1))
    [ $i -gt 40 ] && fail "no crit line for the OOM kill in ops: $(journalctl -q -t memslice -n 5)"
    sleep 0.5
done
journalctl -t memslice -o json > /tmp/journal.json
for field in MEMSLICE_DECISION MEMSLICE_SERVICE MEMSLICE_EVENT MEMSLICE_GROUP; do
    grep -q "\"$field\":" /tmp/journal.json || fail "no $field in journalctl -o json"
done
grep '"MEMSLICE_SERVICE":"web"' /tmp/journal.json | grep -q '"MEMSLICE_EVENT":"restart"' || fail "no restart of web with its fields"
grep '"MEMSLICE_EVENT":"oom_kill"' /tmp/journal.json | grep '"PRIORITY":"2"' | grep -q '"MEMSLICE_GROUP":"ops.slice/ops-probe.slice"' || fail "the ops OOM kill is not crit with its group"
grep '"MEMSLICE_DECISION":"up"' /tmp/journal.json | grep -q '"PRIORITY":"6"' || fail "a passing check is not at info (6)"
note "journal: $(journalctl -t memslice MEMSLICE_DECISION=acted -o json -n 1 --output-fields=MESSAGE,PRIORITY,SYSLOG_IDENTIFIER,_SYSTEMD_UNIT,MEMSLICE_DECISION,MEMSLICE_DOWN_FOR_S,MEMSLICE_GRACE_S,MEMSLICE_SHIFT,MEMSLICE_KILLED,MEMSLICE_RESTARTED)"
note "journal: $(journalctl -t memslice -p crit -o json -n 1 --output-fields=MESSAGE,PRIORITY,MEMSLICE_GROUP,MEMSLICE_EVENT)"

# Checks of 5s with WatchdogSec=4s: the watcher says how long a check may
# take, and pings between checks; it has run for many WatchdogSec by now.
ran=$(since "$start")
[ "$(show NRestarts)" = 0 ] || fail "restarted while working: $(journalctl -u memslice-heal-watch.service | grep -i watchdog | tail -3)"
note "healthy for ${ran}s with WatchdogSec=4s and checks of 5s: 0 restarts"

# A hung watcher: SIGSTOP between checks; systemd's watchdog must restart
# it. (Inside a check the watchdog waits for the check's longest legitimate
# time, here minutes.) Without the slow probe the checks are short.
cp /tmp/fast.toml /etc/memslice/slices.toml
systemctl restart memslice-heal-watch.service || fail "restart"
sleep 1
old=$(show MainPID)
kill -STOP "$old"
stopped=$(now)
i=0
until [ "$(show MainPID)" != "$old" ] && [ "$(show MainPID)" != 0 ]; do
    i=$((i + 1))
    [ $i -gt 300 ] && fail "not restarted 60 s after SIGSTOP: $(systemctl status memslice-heal-watch.service | tail -5)"
    sleep 0.2
done
restarted_in=$(since "$stopped")
until [ "$(show ActiveState)/$(show SubState)" = active/running ]; do
    i=$((i + 1))
    [ $i -gt 400 ] && fail "not active again after the restart: $(show ActiveState)/$(show SubState)"
    sleep 0.2
done
active_in=$(since "$stopped")
journalctl -q -u memslice-heal-watch.service | grep -q "Watchdog timeout" || fail "no watchdog timeout in the journal"
[ "$(show NRestarts)" = 1 ] || fail "NRestarts=$(show NRestarts)"
note "SIGSTOP -> watchdog timeout -> new process in ${restarted_in}s (WatchdogSec=4s, RestartSec=1s), active (running) again in ${active_in}s"
note "systemd: $(journalctl -q -u memslice-heal-watch.service -o cat | grep -i -m 2 -e 'watchdog timeout' -e 'SIGABRT' | tr '\n' ' ')"
