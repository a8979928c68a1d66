#!/usr/bin/env bash
# Run every outside kernel's adapter on the GPU contract cases and the CPU-tier
# cases, on a GPU machine that got the kernels from prepare_outside_kernels.sh.
#
# Run from the repository root with .gpu/outside carried (and, for FlashInfer,
# every .gpu/fi-part-N carried in earlier calls to the same machine):
#
#   bash tests/gpu/run_outside_kernels.sh                  # reports under $OUT
#   IMPLS="vllm sglang" bash tests/gpu/run_outside_kernels.sh -k "padding"
#
# Extra arguments go to every `gdn-harness run` (e.g. --cuda-graph, -k EXPR).
# Prints pass / fail / crash / skip per adapter, the first failures of each,
# and where the reports are. Exit status: 0 when every adapter ran (failures
# are findings to read), 2 when one could not load.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/reports/outside}
OUTSIDE=${OUTSIDE:-$ROOT/.gpu/outside}
FI_SITE=$ROOT/.gpu/fi-site
IMPLS=${IMPLS:-"vllm vllm-sigmoid-gating sglang flashinfer flashinfer-bf16"}
CASES=${CASES:-"cases/gpu/contract_h100.yaml cases/cpu"}
mkdir -p "$OUT"

# FlashInfer arrives in parts (one per call); unpack once all of them are here.
if [ -f .gpu/fi-part-0/count ] && [ ! -d "$FI_SITE/flashinfer" ]; then
    want=$(cat .gpu/fi-part-0/count)
    have=$(ls -d .gpu/fi-part-* | wc -l)
    if [ "$have" -ge "$want" ]; then
        stage=$(mktemp -d)
        for n in $(seq 0 $((want - 1))); do cat ".gpu/fi-part-$n/chunk"; done | tar -xf - -C "$stage"
        python3 -m pip install -q --no-deps --no-index --target "$FI_SITE" "$stage"/*.whl
        tar -xJf "$stage/flashinfer.tar.xz" -C "$FI_SITE"
        rm -rf "$stage"
    else
        echo "FlashInfer: $have of $want parts here; carry the others first"
    fi
fi

# A folder on PYTHONPATH is no site folder: its .pth files (nvidia-cutlass-dsl
# puts its `cutlass` package on the path with one) are read only through
# site.addsitedir, which this sitecustomize does at start-up.
HOOK=$(mktemp -d)
echo "import site; site.addsitedir('$FI_SITE')" >"$HOOK/sitecustomize.py"
export PYTHONPATH="$HOOK:$ROOT:$OUTSIDE:$FI_SITE${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
    torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
python3 -m harness impls

status=0
for impl in $IMPLS; do
    # shellcheck disable=SC2086
    python3 -m harness run --impl "$impl" --tier all $CASES --report-dir "$OUT" \
        --run-name "$impl" "$@" > "$OUT/$impl.log" 2>&1
    rc=$?
    [ "$rc" -ge 2 ] && status=2
    python3 - "$OUT" "$impl" "$rc" <<'PY'
import json
import sys
from pathlib import Path

out, impl, rc = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
summary = out / impl / "summary.json"
if not summary.exists():
    tail = (out / f"{impl}.log").read_text().strip().splitlines()[-3:]
    print(f"{impl:22} did not run (exit {rc}):", *tail, sep="\n    ")
    sys.exit()
counts = json.loads(summary.read_text())["counts"]
print(f"{impl:22} " + "  ".join(f"{k} {v}" for k, v in counts.items()) + f"  (exit {rc})")
shown = 0
for line in (out / impl / "results.jsonl").read_text().splitlines():
    row = json.loads(line)
    if row.get("status") in ("failed", "crashed") and shown < 5:
        shown += 1
        first = (row.get("violations") or [{}])[0]
        message = first.get("message", row.get("reason", ""))
        print(f"    {row['status']}: {row['id']}: {str(message)[:240]}")
PY
done
echo "reports: $OUT/<impl>/ (summary.md, errors.md, results.jsonl); logs: $OUT/<impl>.log"
exit $status
