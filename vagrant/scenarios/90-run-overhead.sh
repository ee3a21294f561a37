# Spawn overhead on the real kernel: `memslice run -- /bin/true` (mkdir,
# clone3 into the group, wait, rmdir) against the C spawn floor doing the
# same kernel work (benches/floors/spawn.c), a bare /bin/true, and
# Debian's cgexec into an existing leaf (it neither creates nor removes a
# group). Beside them an empty Rust program linked as memslice is
# (benches/floors/rust_start.rs): a run by any such program costs at least
# the floor with its own start (an empty static C program, start.c)
# swapped for that one. Start-up dominates, so once with ASLR on (the
# guest's default) and once off, with the page faults of one run of
# each. Under TCG every side is slowed alike; the ratios are what count.
. /scenarios/lib.sh
. /scenarios/bench.sh
reset_tree
TASKS=/scenarios/tasks.toml
ms --config $TASKS apply > /dev/null 2>&1 || fail "apply tasks.toml"
mkdir "$CG/app/tasks/cgexec-leaf" || fail "cannot make cgexec's leaf"

run_true() { timeit /bin/true; }
run_rust() { timeit /bin/rust-start; }
run_c() { timeit /bin/floor-start; }
run_floor() { timeit /bin/floor-spawn "$CG/app/tasks/floor" -- /bin/true; }
run_memslice() { timeit /bin/memslice --cgroup-root "$CG" --config $TASKS run --slice app/tasks -- /bin/true; }
run_cgexec() { timeit /usr/bin/cgexec -g memory:app/tasks/cgexec-leaf /bin/true; }
# The systemd driver's run against systemd-run --scope is measured in the
# systemd guest (vagrant/systemd/), where systemd runs.

# Minor page faults of one run, its children's included: under TCG each
# costs far more than natively, and they explain much of the start-up.
faults() {
    busybox time -v "$@" 2>&1 > /dev/null | sed -n 's/^.*Minor.*: *//p'
}

rounds=$(rounds_for 5 41)
for setting in 2 0; do
    echo $setting > /proc/sys/kernel/randomize_va_space
    interleave $rounds true c rust floor memslice cgexec
    ratio_note "run -- /bin/true (cgroupfs)" memslice floor
    ratio_note "run -- /bin/true (cgroupfs)" memslice true
    ratio_note "run -- /bin/true (cgroupfs)" memslice cgexec
    ratio_note "spawn floor against bare /bin/true" floor true
    ratio_note "empty Rust program (memslice's start alone)" rust c
    m=$(faults /bin/memslice --cgroup-root "$CG" --config $TASKS run --slice app/tasks -- /bin/true)
    f=$(faults /bin/floor-spawn "$CG/app/tasks/floor" -- /bin/true)
    t=$(faults /bin/true)
    r=$(faults /bin/rust-start)
    c=$(faults /bin/floor-start)
    for count in "$m" "$f" "$t" "$r" "$c"; do
        [ -n "$count" ] || fail "busybox time -v gave no page fault count"
    done
    echo "page faults of one run, its task's included | memslice $m | floor $f | /bin/true $t | empty Rust program $r | C start $c | VM, ASLR $(aslr)" | tee -a "$NOTES"
    # The spawn floor with its own start swapped for the Rust one, round
    # by round like every other ratio.
    awk '$2 == "floor" { f[$1] = $3 } $2 == "c" { c[$1] = $3 } $2 == "rust" { r[$1] = $3 }
        END { for (k in f) if (f[k] > 0) printf "%.4f\n", (f[k] - c[k] + r[k]) / f[k] }' "$RAW" |
        median | awk -v f="$(median_of floor)" -v aslr="$(aslr)" '{
        printf "run by any Rust program linked as memslice is | floor - C start + Rust start %.1f ms | floor %.1f ms | %.2fx | VM, ASLR %s\n",
            $1 * f / 1000, f / 1000, $1, aslr
    }' | tee -a "$NOTES"
done
echo 2 > /proc/sys/kernel/randomize_va_space
[ -z "$(ls -d $CG/app/tasks/true-* 2>/dev/null)" ] || fail "task groups left behind"
[ ! -d "$CG/app/tasks/floor" ] || fail "the floor left its group behind"
