"""Do state lines loaded ``evict_last`` stay in L2 after the step, and whom does that help?

A load with the ``evict_last`` policy marks its L2 line to be evicted after
lines of normal priority. When a step loads its state that way, the last
lines it touched may stay in L2 long after it ends. Two things follow, and
this probe measures both on one case:

* a *later step on the same state* may find part of it in L2 and run faster
  than it would from DRAM: inside one bench case, every implementation timed
  after one with ``evict_last`` loads would be flattered;
* a *neighbour* kernel that relies on L2 (here: one that re-reads a buffer of
  0.6 x L2 in every call) may find less L2 to work with.

Each row starts from a scrubbed L2 (``harness/bench/l2scrub.py``), runs one step over every
input set (or nothing), optionally scrubs again, then times the row's kernel.

Usage (on a GPU): ``python benchmarks/l2_residue_probe.py [--shape 16/32 --layout kv --batch 32]``.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import triton

from harness.bench.config import parse_shapes
from harness.bench.inputsets import probe_case
from harness.bench.l2scrub import BLOCK, L2Scrubber, read
from harness.bench.timing import l2_bytes, time_calls
from kernels.packed_decode import packed_decode

NEIGHBOUR_L2_FRACTION = 0.6
NEIGHBOUR_CALLS = 10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="16/32")
    p.add_argument("--layout", default="kv")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--replays", type=int, default=50)
    args = p.parse_args()
    device = torch.device("cuda")
    (shape,) = parse_shapes(args.shape)
    l2 = l2_bytes(device)
    sets = probe_case(shape, args.batch, args.layout, device)
    scrub = L2Scrubber(device, l2)
    neighbour_buf = torch.randn(int(NEIGHBOUR_L2_FRACTION * l2) // 4, device=device)
    sink = torch.empty(triton.cdiv(neighbour_buf.numel(), BLOCK), device=device)

    steps = {
        "plain": partial(packed_decode, act_first=0, load_evict_last=0, store_streaming=0),
        "evict_last": partial(packed_decode, act_first=0, load_evict_last=1, store_streaming=0),
    }
    step_calls = {name: sets.calls(f) for name, f in steps.items()}

    def run_once(name: str | None) -> None:
        for call in step_calls[name] if name is not None else []:
            call()
        torch.cuda.synchronize()

    def time(calls) -> float:
        return time_calls(calls, device, args.replays, use_graph=True, scrub=False).median_us

    neighbour = [lambda: read(neighbour_buf, sink)] * NEIGHBOUR_CALLS
    card = torch.cuda.get_device_name(device)
    print(f"card: {card} | L2 {l2 >> 20} MiB | {shape.label} {args.layout} B={args.batch}")
    print(f"{sets.count} input sets | us per call, median of {args.replays} graph replays")
    for before in (None, "plain", "evict_last"):
        for scrub_after in (False, True):
            rows = {"neighbour": neighbour, **{f"step {n}": c for n, c in step_calls.items()}}
            for what, calls in rows.items():
                scrub()
                run_once(before)
                if scrub_after:
                    scrub()
                label = f"after {before or 'nothing'}{' + scrub' if scrub_after else ''}"
                print(f"{label:>28} {what:>18} {time(calls):9.2f}", flush=True)


if __name__ == "__main__":
    main()
