# apply is all or nothing on the real kernel: a second apply that enables
# controllers and creates groups is refused by the kernel part-way (the
# app slice allows one descendant, cgroup.max.descendants), and the groups
# and controllers it made are taken back, so every group and knob reads as
# before. Value write-backs are proven on the emulated root (tests/cli).
. /scenarios/lib.sh
reset_tree

cat > $CONF/small.toml <<'TOML'
[slice.ops]
memory_min = "32M"
[slice.app]
memory_max = "256M"
TOML
cat > $CONF/big.toml <<'TOML'
[slice.ops]
memory_min = "32M"
[slice.app]
memory_max = "256M"
[slice.app.web]
memory_max = "128M"
[slice.app.db]
memory_max = "64M"
[slice.app.cron]
TOML
ms --config $CONF/small.toml apply > /tmp/apply1.out 2>&1 || fail "first apply: $(cat /tmp/apply1.out)"
echo 1 > "$CG/app/cgroup.max.descendants"

# Every group, with each of its control files' values.
listing() {
    for dir in $(find "$CG/ops" "$CG/app" -type d | sort); do
        echo "group ${dir#$CG/}"
        for file in cgroup.subtree_control memory.min memory.low memory.high memory.max memory.swap.max memory.oom.group; do
            [ -f "$dir/$file" ] && echo "  $file $(cat "$dir/$file")"
        done
    done
    echo "root cgroup.subtree_control $(cat "$CG/cgroup.subtree_control")"
}
listing > /tmp/before
ms --config $CONF/big.toml apply > /tmp/apply2.out 2>&1
status=$?
cat /tmp/apply2.out
expect_eq "$status" 1 "the refused apply's exit status"
grep -q "apply failed at change .* \`create  app/db\`" /tmp/apply2.out || fail "the failing change is not named"
grep -q "Resource temporarily unavailable" /tmp/apply2.out || fail "the kernel's refusal is not named"
grep -q "were undone: the tree is as it was" /tmp/apply2.out || fail "no word of the rollback"
listing > /tmp/after
diff /tmp/before /tmp/after || fail "the tree differs after the failed apply"
[ -d "$CG/app/web" ] && fail "app/web, created by the failed apply, is still there"

echo 10 > "$CG/app/cgroup.max.descendants"
ms --config $CONF/big.toml apply > /tmp/apply3.out 2>&1 || fail "apply once allowed: $(cat /tmp/apply3.out)"
expect_eq "$(cat "$CG/app/db/memory.max")" "$((64 << 20))" "app/db memory.max"
undone=$(grep -o "the [0-9]* change(s) made before it were undone" /tmp/apply2.out)
echo "real kernel refused change $(grep -o 'apply failed at change [0-9]* of [0-9]*' /tmp/apply2.out | cut -d' ' -f5-7) (EAGAIN, cgroup.max.descendants); $undone; $(wc -l < /tmp/before) lines of groups and knobs read back unchanged" > "$NOTES"
