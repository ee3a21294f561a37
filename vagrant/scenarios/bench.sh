# Timing helpers for the benchmark scenarios (9x); sourced after lib.sh.
# Every figure is a ratio of two commands timed in the same rounds,
# interleaved (the order turns each round), each timed by timeit
# (benches/floors/timeit.c: fork to wait, in microseconds).
#
#   run_NAME() { timeit /bin/... ; }    one variant: prints its time
#   interleave ROUNDS NAME...           times every variant ROUNDS times
#   ratio_note WORK SUBJECT REFERENCE   one line in $NOTES: both medians, the ratio
RAW=/tmp/bench.raw
# "smoke" (the default suite: a few rounds) or "full" (MEMSLICE_VM_BENCH).
BENCH=$(cat /etc/memslice/bench 2>/dev/null || echo smoke)

# SMOKE or FULL, as this run was asked for.
rounds_for() {
    if [ "$BENCH" = full ]; then echo "$2"; else echo "$1"; fi
}

# "on" or "off", as the guest runs now.
aslr() {
    if [ "$(cat /proc/sys/kernel/randomize_va_space)" = 0 ]; then echo off; else echo on; fi
}

interleave() {
    rounds=$1
    shift
    : > "$RAW"
    round=1
    while [ $round -le "$rounds" ]; do
        for name in "$@"; do
            took=$("run_$name") || fail "$name failed in round $round"
            echo "$round $name $took" >> "$RAW"
        done
        # Turn the order: the first goes last.
        first=$1
        shift
        set -- "$@" "$first"
        round=$((round + 1))
    done
}

# The median of the numbers on stdin.
median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

# Median time of a variant, in microseconds.
median_of() {
    awk -v name="$1" '$2 == name { print $3 }' "$RAW" | median
}

# The median over rounds of SUBJECT / REFERENCE, each pair from one round.
ratio_of() {
    awk -v s="$1" -v r="$2" '
        $2 == s { subject[$1] = $3 }
        $2 == r { reference[$1] = $3 }
        END { for (k in subject) if (reference[k] > 0) printf "%.4f\n", subject[k] / reference[k] }
    ' "$RAW" | median
}

# WORK | SUBJECT ms | REFERENCE ms | ratio | VM, ASLR on/off
ratio_note() {
    awk -v work="$1" -v s="$2" -v r="$3" -v sm="$(median_of "$2")" -v rm="$(median_of "$3")" \
        -v ratio="$(ratio_of "$2" "$3")" -v aslr="$(aslr)" 'BEGIN {
        printf "%s | %s %.1f ms | %s %.1f ms | %.2fx | VM, ASLR %s\n",
            work, s, sm / 1000, r, rm / 1000, ratio, aslr
    }' | tee -a "$NOTES"
}

# Removes every group below the root, children first, without killing:
# the benchmark trees hold no process.
clear_tree() {
    find "$CG" -mindepth 1 -depth -type d | xargs -r rmdir || fail "cannot clear the tree"
}
