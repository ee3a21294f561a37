# Drop-ins under the systemd driver: a file in slices.d/ beside the main
# config changes a limit, and systemd's unit and the kernel's file both
# show it; a broken drop-in refuses the whole config, naming its own file
# and line, and nothing changes. The scenarios' config is copied into a
# directory of its own, so no other scenario sees the drop-ins; the end
# restores the limit the others expect.
CFG=/usr/local/lib/memslice-vm/scenarios/slices.toml
fail() { echo "FAIL: $*"; exit 1; }
dir=/etc/memslice-dropins
rm -rf $dir
mkdir -m 0755 $dir $dir/slices.d
cp $CFG $dir/slices.toml
limit() {
    shown=$(systemctl show -p MemoryMax --value app.slice)
    kernel=$(cat /sys/fs/cgroup/app.slice/memory.max)
    [ "$shown" = "$1" ] && [ "$kernel" = "$1" ] || fail "app.slice MemoryMax=$shown, memory.max=$kernel, expected $1"
}

memslice --config $dir/slices.toml apply > /tmp/dropin0.out 2>&1 || fail "apply: $(cat /tmp/dropin0.out)"
limit $((192 << 20))

printf '# a bigger app side on this node\n[slice.app]\nmemory_max = "224M"\n' > $dir/slices.d/50-app.toml
memslice --config $dir/slices.toml apply > /tmp/dropin1.out 2>&1 || fail "apply with the drop-in: $(cat /tmp/dropin1.out)"
cat /tmp/dropin1.out
limit $((224 << 20))
echo "50-app.toml: app.slice MemoryMax and memory.max 224M"

printf '[slice.app]\nmemory_maxx = "1G"\n' > $dir/slices.d/60-typo.toml
memslice --config $dir/slices.toml apply > /tmp/dropin2.out 2>&1
status=$?
cat /tmp/dropin2.out
[ $status = 2 ] || fail "a broken drop-in: exit $status, expected 2"
grep -q "$dir/slices.d/60-typo.toml:2:[0-9]*: slice.app.memory_maxx" /tmp/dropin2.out || fail "the refusal does not name the drop-in and its line"
grep -q "nothing was changed" /tmp/dropin2.out || fail "the refusal does not say nothing was changed"
limit $((224 << 20))
echo "60-typo.toml: refused with exit 2 naming its file, line and key; nothing changed"

rm -rf $dir/slices.d
memslice --config $dir/slices.toml apply > /tmp/dropin3.out 2>&1 || fail "apply without drop-ins: $(cat /tmp/dropin3.out)"
limit $((192 << 20))
rm -rf $dir
echo "a drop-in raised app.slice to 224M (systemctl show and memory.max agree); a broken one was refused with exit 2, naming its file and line, and nothing changed" > "$NOTES"
