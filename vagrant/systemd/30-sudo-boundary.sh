# The trust boundary with the real sudo package and the shipped sudoers
# line (dist/sudoers.d/memslice), as the unprivileged app user: every way
# past the policy is refused, and the allowed `sudo memslice protect`
# runs the command as the user, with the user's environment, a clean
# signal state, no stray descriptor, no capability, and -1000.
CFG=/usr/local/lib/memslice-vm/scenarios/slices.toml
fail() { echo "FAIL: $*"; exit 1; }

grep -q " $(hostname)$" /etc/hosts || echo "127.0.1.1 $(hostname)" >> /etc/hosts
id app > /dev/null 2>&1 || useradd --create-home --shell /bin/sh app || fail "useradd app"
install -m 0440 /usr/local/lib/memslice-vm/sudoers-memslice /etc/sudoers.d/memslice
visudo -c -q -f /etc/sudoers.d/memslice || fail "the shipped sudoers line does not parse"
mkdir -p /etc/memslice
sed 's/^max_tasks = 2$/max_tasks = 2\nusers = ["app"]/' $CFG > /etc/memslice/slices.toml
grep -q '^users = \["app"\]' /etc/memslice/slices.toml || fail "the test policy lacks the app user"
memslice apply > /tmp/apply.log 2>&1 || fail "apply: $(cat /tmp/apply.log)"

as_app() { runuser -u app -- "$@"; }
# Runs `sudo memslice ARGS` as app; expects a refusal naming $1.
refused() {
    expect=$1
    shift
    as_app "$@" > /tmp/refused.log 2>&1 && fail "allowed: $*: $(cat /tmp/refused.log)"
    grep -qF -- "$expect" /tmp/refused.log || fail "$*: no '$expect' in: $(cat /tmp/refused.log)"
    echo "refused: $* -> $(tail -n 1 /tmp/refused.log)"
}

# Her own policy, from her own directory: the config is root's.
as_app sh -c 'cd && printf "[slice.app]\n[slice.app.tasks]\ncontrollers = [\"memory\"]\n[protect]\nslice = \"app\"\nmemory_max = \"1T\"\nusers = [\"app\"]\n" > evil.toml'
refused "--config is refused" sh -c 'cd && sudo -n memslice protect --config evil.toml -- true'
# Before the subcommand, the sudoers pattern (`protect *`) does not match:
# sudo refuses before memslice starts.
refused "a password is required" sh -c 'cd && sudo -n memslice --config evil.toml protect -- true'
# A cgroup root of her choosing, the emulated backend's marker in it.
as_app sh -c 'mkdir -p ~/fake && touch ~/fake/memslice-emulated-root ~/fake/cgroup.procs'
refused "--cgroup-root is refused" sh -c 'sudo -n memslice protect --cgroup-root ~/fake -- true'
refused "--driver is refused" sudo -n memslice protect --driver cgroupfs -- true
refused "--user is refused" sudo -n memslice protect --user root -- true
# The shipped line grants protect only.
refused "a password is required" sudo -n memslice status
# sudo -E is not granted (no SETENV): sudo itself refuses.
refused "not allowed to preserve the environment" env MEMSLICE_CONFIG=/home/app/evil.toml sudo -n -E memslice protect -- true
# An admin who adds SETENV still does not hand over memslice's settings.
echo 'app ALL=(root) NOPASSWD:SETENV: /usr/bin/memslice protect *' > /etc/sudoers.d/memslice-setenv
chmod 0440 /etc/sudoers.d/memslice-setenv
refused "--config is refused" env MEMSLICE_CONFIG=/home/app/evil.toml sudo -n -E memslice protect -- true
refused "MEMSLICE_LOG is refused" env MEMSLICE_LOG=debug sudo -n -E memslice protect -- true
rm /etc/sudoers.d/memslice-setenv
# As root, the release binary ignores the marker: a plain directory is no root.
memslice --driver cgroupfs --cgroup-root /home/app/fake apply > /tmp/marker.log 2>&1
[ $? = 3 ] || fail "the release binary used an emulated root: $(cat /tmp/marker.log)"
grep -q "is not a cgroup v2 hierarchy" /tmp/marker.log || fail "$(cat /tmp/marker.log)"

# The allowed way.
as_app sudo -n memslice protect --name probe -- sh -c '
    echo "ids $(id -u) $(id -g) $(id -G)"
    echo "env HOME=$HOME USER=$USER LOGNAME=$LOGNAME"
    env | grep -E "^(MEMSLICE|SUDO)_" | sed "s/^/leaked /"
    grep -E "^(SigIgn|SigBlk|CapEff):" /proc/self/status
    echo "fds $(ls /proc/self/fd | sort -n | tr "\n" " ")"
    echo "adj $(cat /proc/self/oom_score_adj)"
    echo "cgroup $(cut -d: -f3 /proc/self/cgroup)"
' > /tmp/task.log 2>&1 || fail "sudo memslice protect: $(cat /tmp/task.log)"
cat /tmp/task.log
grep -qx "ids $(id -u app) $(id -g app) $(id -G app)" /tmp/task.log || fail "not the app user's ids ($(id app))"
grep -qx "env HOME=/home/app USER=app LOGNAME=app" /tmp/task.log || fail "not the app user's environment"
grep -q "^leaked " /tmp/task.log && fail "sudo's or memslice's variables reached the task"
grep -q "^SigIgn:.0000000000000000$" /tmp/task.log || fail "ignored signals"
grep -q "^SigBlk:.0000000000000000$" /tmp/task.log || fail "blocked signals"
grep -q "^CapEff:.0000000000000000$" /tmp/task.log || fail "capabilities"
grep -qx "fds 0 1 2 3 " /tmp/task.log || fail "a descriptor beyond stdin, stdout, stderr (3 is ls's own)"
grep -qx "adj -1000" /tmp/task.log || fail "the task is not protected"
grep -q "^cgroup /app.slice/app-tasks.slice/memslice-probe-[0-9]*.scope$" /tmp/task.log || fail "not in a scope of the protect slice"
echo "sudo (real package, shipped line): 10 ways past the policy refused; protect ran as app ($(id -u app)) with its HOME, SigIgn/SigBlk/CapEff 0, fds 0-2, oom_score_adj -1000" > "$NOTES"
