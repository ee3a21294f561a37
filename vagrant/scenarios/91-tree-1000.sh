# vm-timeout: 1200
# Provisioning and reading a 1,000-group tree: memslice against the C
# floors and cgconfigparser (see tree-bench.sh).
. /scenarios/lib.sh
. /scenarios/bench.sh
TOPS=10 MIDDLES=9 LEAVES=10
ROUNDS=$(rounds_for 1 9) FIRST_ROUNDS=$(rounds_for 1 3) ASLR_SETTINGS="2 0"
. /scenarios/tree-bench.sh
