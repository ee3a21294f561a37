# vm-timeout: 3600
# Provisioning and reading a 10,010-group tree: memslice against the C
# floors and cgconfigparser (see tree-bench.sh). Minutes under TCG, so
# only in the full benchmark run (MEMSLICE_VM_BENCH=full).
. /scenarios/lib.sh
. /scenarios/bench.sh
if [ "$BENCH" != full ]; then
    echo "the 10,010-group tree is measured with MEMSLICE_VM_BENCH=full" | tee -a "$NOTES"
    exit 0
fi
TOPS=10 MIDDLES=100 LEAVES=9
ROUNDS=5 FIRST_ROUNDS=1
. /scenarios/tree-bench.sh
