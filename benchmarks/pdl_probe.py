"""What does a programmatic dependent launch (``pdl``) save a decode step, and when?

``gdn-harness bench`` times a graph of packed steps back to back. With
``pdl=1`` each step may be launched while the step before it still runs, and
waits (``griddepcontrol.wait``) before its first load; the saving there is
the launch of one step hidden behind the tail of the one before. In a model
the step follows another kernel (the convolution, a GEMM), which may or may
not let its dependents launch early. So each step is timed here after a
*predecessor*, a kernel of about a step's size that copies a buffer:

* ``back to back``: the packed steps alone (as the bench times them);
* ``after plain``: the predecessor never signals its dependents, so a PDL step
  can launch only as the predecessor ends;
* ``after signal``: the predecessor signals (``griddepcontrol.launch_dependents``)
  at its start, as a PDL-aware kernel may.

The cost of the step is the time of the pair minus the predecessor's alone,
all in one graph per row (median of the replays), one call per input set.

Usage (on a GPU): ``python benchmarks/pdl_probe.py [--shapes 16/32,4/8] [--batches 1,2,4,8,64]``.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents

from harness.bench.config import Shape, parse_ints, parse_shapes
from harness.bench.inputsets import probe_case
from harness.bench.timing import time_calls
from kernels.packed_decode import packed_decode

PRED_BLOCK = 1024


# Grid: (cdiv(N, PRED_BLOCK),), 4 warps. Program p copies src[p * PRED_BLOCK:][:PRED_BLOCK]
#   to dst (tail masked). SIGNAL lets a PDL dependent launch before this grid ends.
@triton.jit
def _predecessor_kernel(src_ptr, dst_ptr, N, BLOCK: tl.constexpr, SIGNAL: tl.constexpr):
    if SIGNAL:
        gdc_launch_dependents()
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=mask) + 1.0, mask=mask)


def _predecessor(src: torch.Tensor, dst: torch.Tensor, signal: bool):
    n = src.numel()
    return lambda: _predecessor_kernel[(triton.cdiv(n, PRED_BLOCK),)](
        src, dst, n, BLOCK=PRED_BLOCK, SIGNAL=signal, num_warps=4
    )


def _pair(first, second):
    def call():
        first()
        second()

    return call


def probe_row(
    shape: Shape, B: int, layout: str, device: torch.device, replays: int
) -> dict[str, float]:
    """Microseconds per step for each (order, pdl) at one (shape, layout, B)."""
    case = probe_case(shape, B, layout, device)
    sets = case.count
    # The predecessor moves about as many bytes as the step's state.
    numel = max(1 << 16, B * shape.HV * shape.K * shape.V)
    src = [torch.randn(numel, device=device) for _ in range(sets)]
    dst = [torch.empty(numel, device=device) for _ in range(sets)]

    def steps(pdl: int):
        return case.calls(partial(packed_decode, pdl=pdl))

    def time(calls) -> float:
        return time_calls(calls, device, replays, use_graph=True).median_us

    row = {}
    for pdl in (0, 1):
        row[f"back to back pdl={pdl}"] = time(steps(pdl))
    for signal, name in ((False, "after plain"), (True, "after signal")):
        preds = [_predecessor(src[i], dst[i], signal) for i in range(sets)]
        alone = time(preds)
        row[f"{name}: predecessor"] = alone
        for pdl in (0, 1):
            pairs = [_pair(p, s) for p, s in zip(preds, steps(pdl), strict=True)]
            row[f"{name} pdl={pdl}"] = time(pairs) - alone
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="16/32,4/8")
    p.add_argument("--batches", default="1,2,4,8,64")
    p.add_argument("--layouts", default="vk,kv")
    p.add_argument("--replays", type=int, default=100)
    args = p.parse_args()
    device = torch.device("cuda")
    print(f"card: {torch.cuda.get_device_name(device)} | triton {triton.__version__}")
    print("us per step; 'after ...' rows: the pair's time minus the predecessor's")
    for shape in parse_shapes(args.shapes):
        for layout in args.layouts.split(","):
            for B in parse_ints(args.batches):
                for name, us in probe_row(shape, B, layout, device, args.replays).items():
                    print(f"{shape.label:>6} {layout} B={B:<5} {name:>28} {us:9.2f}", flush=True)


if __name__ == "__main__":
    main()
