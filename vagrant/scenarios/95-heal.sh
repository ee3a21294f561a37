# A protected hog fills the app slice, the kernel kills the web service
# instead; `heal check` in a loop waits out the 3 s day grace, kills the hog
# (cgroup.kill on app/tasks) and restarts the web service, which answers
# again. Then the same with the clock inside the night window: the 60 s
# night grace applies and nothing is killed within it.
. /scenarios/lib.sh
CFG=$CONF/heal.toml
heal_check() { ms --config $CFG heal check "$@"; }

run_outage() {
    reset_tree
    rm -rf /tmp/heal /tmp/heal.log
    ms --config $CFG apply > /dev/null 2>&1 || fail "apply"
    /scenarios/start-web.sh || fail "start web"
    timeout 5 wget -q -O - http://127.0.0.1:8080/ | grep -q "shop is up" || fail "web does not answer before the outage"
    heal_check > /tmp/first.log 2>&1 || fail "first heal check: $(cat /tmp/first.log)"
    ms --config $CFG protect --name import -- hog 300M 600 > /tmp/hog.log 2>&1 &
    hog=$!
    # busybox 1.35's `wget -T` segfaults (exit 139), which would end this
    # loop at once and prove nothing: timeout(1) bounds each try instead,
    # and only "refused" or "no answer within 2 s" counts as down.
    i=0
    while :; do
        timeout 2 wget -q -O /dev/null http://127.0.0.1:8080/ 2>/dev/null
        status=$?
        case $status in
            0) ;;
            1 | 124 | 143) break ;;
            *) fail "wget failed in an unexpected way (exit $status)" ;;
        esac
        i=$((i + 1))
        [ $i -gt 100 ] && fail "the hog never took the web service down: $(cat /tmp/hog.log)"
        sleep 0.1
    done
    down_at=$(cut -d' ' -f1 /proc/uptime)
    echo "web down (wget exit $status) after $i tries"
}

# Day: the clock is outside the night window.
sed "s/^timezone = .*/timezone = \"UTC\"/" /scenarios/heal.toml > $CFG
run_outage
i=0
while ! grep -q "^acted:" /tmp/heal.log 2>/dev/null; do
    heal_check >> /tmp/heal.log 2>&1
    i=$((i + 1))
    [ $i -gt 60 ] && fail "heal never acted: $(tail -5 /tmp/heal.log)"
    sleep 0.5
done
acted_at=$(cut -d' ' -f1 /proc/uptime)
grep "^acted:\|killed:" /tmp/heal.log
waited=$(awk -v a="$down_at" -v b="$acted_at" 'BEGIN { print b - a }')
echo "acted ${waited}s after the web service went down" | tee "$NOTES"
awk -v w="$waited" 'BEGIN { exit !(w >= 3) }' || fail "acted after ${waited}s, before the 3 s grace"
grep -q "killed: app/tasks; restarted: web" /tmp/heal.log || fail "the action did not kill app/tasks and restart web"
wait $hog
expect_eq "$?" "137" "the protected hog's memslice exit status"
grep -q "was killed by memslice heal: web down for .* past the 3s day grace" /tmp/hog.log \
    || fail "the killed task's memslice does not say the healer's reason: $(cat /tmp/hog.log)"
timeout 5 wget -q -O - http://127.0.0.1:8080/ | grep -q "shop is up" || fail "web does not answer after healing"
heal_check | grep -q "^up:" || fail "heal check does not see the site up"

# Night: a window around the current UTC time, grace 60 s.
now=$(date -u +%s)
window="$(date -u -d @$((now - 120)) +%H:%M)-$(date -u -d @$((now + 600)) +%H:%M)"
sed "s/^grace_day = .*/grace_day = \"3s\"\nnight = \"$window\"/" /scenarios/heal.toml > $CFG
run_outage
end=$(( $(date -u +%s) + 8 ))
while [ "$(date -u +%s)" -lt $end ]; do
    heal_check >> /tmp/heal.log 2>&1
    sleep 0.5
done
grep -q "^acted:" /tmp/heal.log && fail "acted within the night grace: $(grep acted /tmp/heal.log)"
kill -0 $hog 2>/dev/null || fail "the protected hog was killed at night within the grace"
heal_check --json > /tmp/night.json 2>/dev/null
grep -q '"night": true' /tmp/night.json || fail "not night in $window: $(cat /tmp/night.json)"
grep -q '"grace_seconds": 60' /tmp/night.json || fail "night grace not in force: $(cat /tmp/night.json)"
grep -q '"act": false' /tmp/night.json || fail "would act within the night grace"
echo "night window $window: no action within 8 s of a 60 s grace" >> "$NOTES"
echo 1 > $CG/app/tasks/cgroup.kill
wait $hog
expect_eq "$?" "137" "the night hog's memslice exit status after the cleanup kill"
