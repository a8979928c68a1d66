#!/usr/bin/env bash
# The bench with the field's kernels beside ours, in one run on one card:
# packed, baseline, vLLM's packed decode and FlashInfer's fp32-state decode
# in one table, the target "packed at least as fast as vllm at every B of
# the default grid", and the harness-cost section with both check devices.
#
# Run from anywhere on an H200 whose PYTHONPATH already holds the folder with
# the outside packages (vllm, flashinfer):
#
#   OUT=/tmp/out bash tests/gpu/bench_peers.sh            # reports under $OUT/bench
#   bash tests/gpu/bench_peers.sh --replays 200           # extra options go to the bench
#
# The grid is the default one restricted to layout vk (--layouts vk): both
# peers keep the state as vk only, so a kv case would time packed and
# baseline alone (as docs/bench-h100.md already does), and the vLLM target is
# stated for vk. The timed kernels themselves cost little: per implementation
# and case, 2 warm-up rounds and 105 replays of one graph of R calls, and R
# sets of at least 3x the L2 make a replay between a few tens of microseconds
# and a few milliseconds (B = 1024 at 16/32). What costs is around them: the
# R sets built on the host per case (two 2 GiB pools at B = 1024, 16/32), a
# sampled oracle check per implementation and case, one compile per kernel
# and shape (FlashInfer's CuTe DSL ones are the slowest), the recurrent
# section (its own sets and FLA again for every case) and the CPU check of
# the B = 1024, HV = 64 step (tens of seconds over 16 workers,
# docs/performance.md). Over the full grid of 44 cases that comes to about
# five minutes before FlashInfer's compiles, against a 10-minute limit per
# command; restricted as below, it is about half of that. --no-recurrent
# leaves out the baseline-vs-FLA section (not about peers); --oracle-rows 128
# times the CPU check on 128 rows and scales (the GPU one checks every row).
#
# Prints the bench's own output, then last the peers' side-by-side table, the
# harness's cost and the targets from bench.md. Exit status: the bench's (0,
# 1 when a check failed, 2 when an implementation could not load).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/reports}
DIR=$OUT/bench
mkdir -p "$DIR"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

python3 - <<'PY'
import torch
import triton

from harness.check.device import cuda_unavailable
from harness.impls.registry import ImplError, load_implementation

gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print("torch", torch.__version__, "triton", triton.__version__, gpu)
for name in ("vllm", "flashinfer"):
    try:
        load_implementation(name)
        print(f"{name:12} available")
    except ImplError as exc:
        print(f"{name:12} unavailable: {exc}")
print("GPU check device:", cuda_unavailable() or "cuda (CuPy)")
PY

# The CLI needs pyyaml and jsonschema; the bench alone does not.
if python3 -c "import harness.cli" 2>/dev/null; then
    bench=(python3 -m harness bench)
else
    bench=(python3 -m harness.bench.command)
fi
start=$(date +%s)
# PEERS narrows the peers (a package that cannot load here makes the bench exit 2).
peers=()
for peer in ${PEERS:-vllm flashinfer}; do peers+=(--impl "$peer"); done
"${bench[@]}" "${peers[@]}" --layouts vk --shapes 16/32,4/8 \
    --no-recurrent --oracle-rows 128 --out "$DIR" "$@" 2>&1 | tee "$DIR/console.txt"
rc=${PIPESTATUS[0]}
echo "bench: exit $rc after $(( $(date +%s) - start )) s; files in $DIR"

if [ -f "$DIR/bench.md" ]; then
    # The sections about peers and cost, then the targets, last on the screen.
    echo
    awk '/^## /{show = /^## (Peers|The harness|Targets)/} show' "$DIR/bench.md"
elif [ -f "$DIR/bench.json" ]; then
    echo "no bench.md: the run did not finish; the rows it measured are in $DIR/bench.json"
else
    echo "no report: the bench stopped before its first case (see its error above)"
fi
exit "$rc"
