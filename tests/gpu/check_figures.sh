#!/usr/bin/env bash
# The GPU figures of the check on the GPU (docs/performance.md, the H200
# section), from the repository root, through the lent-GPU tool:
#
#     bash tests/gpu/check_figures.sh [PART ...]     # results under $OUT (or gpu-figures/)
#
# PARTs, each logged to its own file, each going on when another fails:
#   validation  the GPU check against the CPU's, and the timing table
#   profile     where the harness's time goes: array passes, copies, the
#               statistics kernel, the runner's cProfile
#   ncu         the statistics kernel under Nsight Compute
#   nightly     the whole nightly job, timed per step (about 8 minutes: a
#               call of its own)
# Default: validation profile ncu (about 3 minutes).
set -u
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-figures}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(validation profile ncu)
for part in "${parts[@]}"; do
    case $part in
    validation)
        python3 tests/gpu/check_device_validation.py --json "$out/validation.json" \
            >"$out/validation.txt" 2>&1
        rc=$?
        ;;
    profile)
        python3 tests/gpu/profile_harness.py --out "$out" >"$out/profile.txt" 2>&1
        rc=$?
        ;;
    ncu)
        ncu --kernel-name regex:cell_stats --launch-skip 2 --launch-count 1 \
            --section SpeedOfLight --section Occupancy --section WarpStateStats \
            --section ComputeWorkloadAnalysis \
            python3 tests/gpu/profile_harness.py --parts kernel >"$out/ncu-cells.txt" 2>&1
        rc=$?
        ;;
    nightly)
        GDN_REPORTS=/tmp/gdn-reports GDN_HYPOTHESIS_DB=/tmp/gdn-hdb bash .ci/nightly-gpu \
            >"$out/nightly.log" 2>&1
        rc=$?
        grep '^===' "$out/nightly.log"
        cp /tmp/gdn-reports/fuzz.log /tmp/gdn-reports/bench/bench.md "$out/" 2>/dev/null
        ;;
    *)
        echo "unknown part $part (validation, profile, ncu, nightly)" >&2
        continue
        ;;
    esac
    echo "$part: exit $rc"
done
