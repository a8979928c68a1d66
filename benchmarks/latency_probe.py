"""How fast can a B = 1 step be on this card? Minimal kernels with the step's
memory pattern, timed exactly like ``gdn-harness bench`` times the packed kernel.

At B = 1 the step is latency bound: launch, then a chain of dependent DRAM
round trips (slot index -> state tile -> store). Each probe keeps one more
piece of that chain, so the gaps between rows show what each piece costs;
``index+tiles stream`` is the floor that any packed kernel with this tiling
and these hints would pay:

* ``launch``: one program that stores one int;
* ``tiles``: the packed kernel's grid at B = 1 (HV x V / BV one-warp programs),
  each reading its [BV, K] fp32 state tile at a fixed slot and writing it back;
  ``tiles BV/w`` the same with other tile heights and warps per program;
* ``index+tiles``: the same, with the slot read from ``state_indices`` first;
* ``... stream``: the same two with streaming cache hints (``evict_first``
  loads, ``.cs`` stores; the packed kernel's small steps take the stores);
* ``packed``: the packed kernel itself (all of the above, plus q/k/v, gates,
  the two reductions and the output);
* ``kv ...``: the same in layout kv, where a program's tile is [K, BV] columns
  of a [K, V] head (``kv tiles BV/w`` for other widths), and ``kv packed``.

Usage (on a GPU): ``python benchmarks/latency_probe.py [--shapes 16/32,4/8]``.
"""

from __future__ import annotations

import argparse

import torch
import triton
import triton.language as tl

from harness.bench.config import Shape, parse_shapes
from harness.bench.inputsets import probe_case
from harness.bench.timing import time_calls
from kernels.packed_decode import default_tuning, packed_decode

TILE_SWEEP = ((1, 1), (2, 1), (8, 1), (8, 2), (16, 4), (32, 4), (64, 8))
KV_TILE_SWEEP = ((8, 1), (16, 2), (32, 1), (32, 4))


# Grid: (1,); one program stores one int: the cost of a launch inside a graph.
@triton.jit
def _launch_kernel(out_ptr):
    tl.store(out_ptr, 1)


# Grid: (cdiv(HV * V, BV),), num_warps each. Program p owns value rows
#   [p * BV, (p + 1) * BV) of one slot (tail masked) x all K keys, read and
#   written once: in vk a [BV, K] block of rows; in kv (STATE_KV) head
#   p * BV // V's [K, BV] block of columns (V a multiple of BV). With USE_INDEX
#   the slot is idx_ptr[0] of the pool at state_ptr; without, state_ptr is the
#   slot itself. STREAM loads evict_first and stores .cs.
@triton.jit
def _tiles_kernel(
    state_ptr,
    idx_ptr,
    stride_s0,
    ROWS,
    K: tl.constexpr,
    V: tl.constexpr,
    BV: tl.constexpr,
    USE_INDEX: tl.constexpr,
    STREAM: tl.constexpr,
    STATE_KV: tl.constexpr,
):
    pid = tl.program_id(0)
    base = state_ptr
    if USE_INDEX:
        base = state_ptr + tl.load(idx_ptr).to(tl.int64) * stride_s0
    offs_v = pid * BV + tl.arange(0, BV)
    offs_k = tl.arange(0, K)
    if STATE_KV:  # column v of head hv = row // V at hv * K * V + k * V + v % V
        mask = (offs_v < ROWS)[None, :]
        cols = (offs_v // V) * (K * V) + offs_v % V
        ptrs = base + offs_k[:, None] * V + cols[None, :]
    else:
        mask = (offs_v < ROWS)[:, None]
        ptrs = base + offs_v[:, None] * K + offs_k[None, :]
    if STREAM:
        s = tl.load(ptrs, mask=mask, other=0.0, eviction_policy="evict_first")
        tl.store(ptrs, s * 0.5, mask=mask, cache_modifier=".cs")
    else:
        s = tl.load(ptrs, mask=mask, other=0.0)
        tl.store(ptrs, s * 0.5, mask=mask)


def probe_calls(shape: Shape, layout: str, device: torch.device) -> dict[str, list]:
    """Each probe's calls at B = 1 for ``shape`` in ``layout``, one per input set."""
    case = probe_case(shape, 1, layout, device)
    sets, pool = case.count, case.pool
    tune = default_tuning(shape.K, shape.V, layout, shape.HV)
    rows_total = shape.HV * shape.V  # one slot's value rows (vk) or columns (kv)
    flag = torch.zeros(sets, dtype=torch.int32, device=device)

    def tiles(
        i: int,
        use_index: bool,
        BV: int = tune["BV"],
        warps: int = tune["num_warps"],
        stream: bool = False,
    ):
        idx = case.indices(i)
        state = pool if use_index else pool[i]  # set i owns slot i at B = 1
        return lambda: _tiles_kernel[(triton.cdiv(rows_total, BV),)](
            state, idx, pool.stride(0), rows_total, K=shape.K, V=shape.V, BV=BV,
            USE_INDEX=use_index, STREAM=stream, STATE_KV=layout == "kv", num_warps=warps,
        )  # fmt: skip

    sweep = TILE_SWEEP if layout == "vk" else KV_TILE_SWEEP
    calls = {
        "tiles": [tiles(i, False) for i in range(sets)],
        "index+tiles": [tiles(i, True) for i in range(sets)],
        "tiles stream": [tiles(i, False, stream=True) for i in range(sets)],
        "index+tiles stream": [tiles(i, True, stream=True) for i in range(sets)],
        "packed": case.calls(packed_decode),
        **{f"tiles {bv}/{w}": [tiles(i, False, bv, w) for i in range(sets)] for bv, w in sweep},
    }
    if layout == "vk":
        launch = [(lambda i=i: _launch_kernel[(1,)](flag[i:])) for i in range(sets)]
        return {"launch": launch, **calls}
    return {f"kv {name}": c for name, c in calls.items()}


def probe(
    shape: Shape, device: torch.device, replays: int, layouts: tuple[str, ...] = ("vk", "kv")
) -> dict[str, float]:
    """Microseconds per call of each probe, timed as the bench times a step."""
    return {
        name: time_calls(calls, device, replays, use_graph=True).median_us
        for layout in layouts
        for name, calls in probe_calls(shape, layout, device).items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="16/32,4/8")
    p.add_argument("--replays", type=int, default=200)
    args = p.parse_args()
    device = torch.device("cuda")
    print(f"card: {torch.cuda.get_device_name(device)} | triton {triton.__version__}")
    print(f"{'shape':>8} {'probe':>22} {'us/call':>8}")
    for shape in parse_shapes(args.shapes):
        for name, us in probe(shape, device, args.replays).items():
            print(f"{shape.label:>8} {name:>22} {us:8.2f}")


if __name__ == "__main__":
    main()
