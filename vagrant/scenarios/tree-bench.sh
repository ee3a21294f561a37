# A tree of TOPS x MIDDLES x LEAVES groups (the shape benches/common
# generates on the host), provisioned and read on the real kernel by
# memslice, by the C floors (benches/floors/) and by Debian's
# cgconfigparser, each pair timed interleaved; sourced by 91 and 92 after
# lib.sh and bench.sh, with TOPS, MIDDLES, LEAVES, ROUNDS (re-apply and
# the readers) and FIRST_ROUNDS (first apply, from a cleared root) set,
# and ASLR_SETTINGS where the readers run with ASLR off too.
groups=$((TOPS * (1 + MIDDLES * (1 + LEAVES))))
CFG=$CONF/tree-$groups.toml
SPEC=/tmp/tree-$groups.spec
CGCONF=/tmp/tree-$groups.cgconfig
G=1073741824
M=1048576

# The config memslice reads, the floors' spec with the values memslice
# writes (benches/floors/floor.h), and cgconfig.conf for cgconfigparser.
awk -v tops=$TOPS -v middles=$MIDDLES -v leaves=$LEAVES -v G=$G -v M=$M \
    -v cfg="$CFG" -v spec="$SPEC" -v cgconf="$CGCONF" '
    BEGIN {
        print "[node]\nmemory = \"1T\"" > cfg
        print "\tcgroup.subtree_control=+memory" > spec
        for (t = 0; t < tops; t++) {
            top = "s" t
            printf "[slice.%s]\nmemory_max = \"50G\"\nmemory_low = \"1G\"\n", top > cfg
            printf "%s\tcgroup.subtree_control=+memory\tmemory.low=%.0f\tmemory.max=%.0f\n", top, G, 50 * G > spec
            printf "group %s {\n    memory {\n        memory.low = \"%.0f\";\n        memory.max = \"%.0f\";\n    }\n}\n", top, G, 50 * G > cgconf
            for (m = 0; m < middles; m++) {
                middle = top "/m" m
                printf "[slice.s%d.m%d]\nmemory_max = \"400M\"\nmemory_low = \"8M\"\n", t, m > cfg
                printf "%s\tcgroup.subtree_control=+memory\tmemory.low=%.0f\tmemory.max=%.0f\n", middle, 8 * M, 400 * M > spec
                printf "group %s {\n    memory {\n        memory.low = \"%.0f\";\n        memory.max = \"%.0f\";\n    }\n}\n", middle, 8 * M, 400 * M > cgconf
                for (l = 0; l < leaves; l++) {
                    leaf = middle "/l" l
                    printf "[slice.s%d.m%d.l%d]\nmemory_high = \"32M\"\nmemory_max = \"40M\"\noom_group = true\n", t, m, l > cfg
                    printf "%s\tmemory.high=%.0f\tmemory.max=%.0f\tmemory.oom.group=1\n", leaf, 32 * M, 40 * M > spec
                    printf "group %s {\n    memory {\n        memory.high = \"%.0f\";\n        memory.max = \"%.0f\";\n        memory.oom.group = \"1\";\n    }\n}\n", leaf, 32 * M, 40 * M > cgconf
                }
            }
        }
    }'
reset_tree

run_apply() { timeit /bin/memslice --cgroup-root "$CG" --config "$CFG" apply; }
run_plan() { timeit /bin/memslice --cgroup-root "$CG" --config "$CFG" plan; }
run_floor_apply() { timeit /bin/floor-apply "$CG" "$SPEC"; }
run_cgconfigparser() { timeit /usr/sbin/cgconfigparser -l "$CGCONF"; }
run_floor_readback() { timeit /bin/floor-readback "$CG" "$SPEC"; }
FULL="cgroup.procs memory.current memory.max memory.high memory.low memory.min memory.events memory.pressure"
TABLE="memory.current memory.max memory.high memory.events memory.pressure"
run_status_json() { timeit /bin/memslice --cgroup-root "$CG" --config "$CFG" status --json; }
run_metrics() { timeit /bin/memslice --cgroup-root "$CG" --config "$CFG" metrics; }
run_status_table() { timeit /bin/memslice --cgroup-root "$CG" --config "$CFG" status; }
# shellcheck disable=SC2086 # the file lists are words
run_floor_status_8() { timeit /bin/floor-status "$CG" "$SPEC" $FULL; }
# shellcheck disable=SC2086
run_floor_status_5() { timeit /bin/floor-status "$CG" "$SPEC" $TABLE; }

# First apply on an empty tree, each run from a cleared root.
run_first() {
    clear_tree
    "run_$1"
}
run_first_memslice() { run_first apply; }
run_first_floor() { run_first floor_apply; }
run_first_cgconfigparser() { run_first cgconfigparser; }
interleave "$FIRST_ROUNDS" first_memslice first_floor first_cgconfigparser
ratio_note "first apply, $groups groups" first_memslice first_floor
ratio_note "first apply, $groups groups" first_memslice first_cgconfigparser

clear_tree
ms --config "$CFG" apply > /tmp/apply.out 2>&1 || fail "apply: $(tail -n 3 /tmp/apply.out)"
ms --config "$CFG" apply | grep -q "(0 writes)" || fail "the re-apply wrote"
/bin/floor-readback "$CG" "$SPEC" > /tmp/readback.out || fail "the floor sees drift: $(head -n 3 /tmp/readback.out)"
# Under TCG with ASLR on, every start translates the program's code anew:
# tens of milliseconds for memslice, next to nothing for a static floor.
# ASLR_SETTINGS (randomize_va_space values) says which ways to read the
# tree: 91 both, where start-up weighs, 92 the guest's default only.
for setting in ${ASLR_SETTINGS:-2}; do
    echo "$setting" > /proc/sys/kernel/randomize_va_space
    interleave "$ROUNDS" apply plan floor_readback
    ratio_note "re-apply (0 writes), $groups groups" apply floor_readback
    ratio_note "plan, $groups groups" plan floor_readback

    interleave "$ROUNDS" status_json metrics floor_status_8 status_table floor_status_5
    ratio_note "status --json, $groups groups" status_json floor_status_8
    ratio_note "metrics, $groups groups" metrics floor_status_8
    ratio_note "status (table), $groups groups" status_table floor_status_5
done
echo 2 > /proc/sys/kernel/randomize_va_space
clear_tree
