# Helpers for the VM scenarios; sourced by each, never run on its own.
# A scenario passes when it exits 0; `fail` says why it did not.
CG=/sys/fs/cgroup
SHIPPED=/etc/memslice/slices.toml
# Configs a scenario writes: as root, memslice reads only files in
# directories root alone can write (not /tmp).
CONF=/etc/memslice/scenario
mkdir -p "$CONF"

ms() { memslice --cgroup-root "$CG" "$@"; }

fail() {
    echo "FAIL: $*"
    exit 1
}

expect_eq() {
    [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"
}

# A counter from a group's memory.events.
event() {
    awk -v key="$2" '$1 == key { print $2 }' "$CG/$1/memory.events"
}

# Waits up to $2 seconds for a line matching $3 in file $1.
wait_for_line() {
    i=0
    while ! grep -q "$3" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt $(($2 * 10)) ] && fail "no '$3' in $1 after $2s: $(cat "$1" 2>/dev/null)"
        sleep 0.1
    done
}

# Starts a command inside group $1 (relative to the root), in the background.
start_in() {
    group=$1
    shift
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG/$group" "$@" &
}

# Kills everything in memslice's groups and removes them, deepest first,
# so each scenario starts from the bare root.
reset_tree() {
    dirs=$(find "$CG" -mindepth 1 -type d | sort -r)
    for dir in $dirs; do
        echo 1 > "$dir/cgroup.kill" 2>/dev/null
    done
    sleep 0.2
    for dir in $dirs; do
        rmdir "$dir" || fail "cannot remove $dir"
    done
}

# Prints the current_bytes and oom_kill of one group from `status --json`.
status_field() {
    awk -v group="\"$1\"," -v field="\"$2\":" '
        $1 == "\"path\":" { inside = ($2 == group) }
        inside && $1 == field { gsub(",", "", $2); print $2; exit }
    '
}
