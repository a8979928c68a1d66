"""Variants of the packed kernel, for sweeps through ``gdn-harness bench --impl``.

Tiling: the packed kernel with one (BV, num_warps) choice, e.g.
``gdn-harness bench --impl benchmarks.packed_variants:bv16_w2``; ``late``
loads the state tile after the gate math (the order before ``early_state``).

Load order and cache hints, each at every B: ``plain`` (none of them, the
kernel before ``act_first``, ``load_evict_last`` and ``store_streaming``),
``act0`` / ``act1`` (the default hints, activations loaded after / before the
state), ``stream_all`` (streaming stores only), ``keep_all`` (evict_last
loads only) and ``keep_act1`` (evict_last loads, activations first).

Persistent grid: ``p<programs per SM>_s<loop stages>`` launches a fixed number
of programs that loop over the tiles of the flat grid (with the default
tuning), so no program is launched per tile and the loop may prefetch the
next tile while the current one computes, e.g.
``gdn-harness bench --impl benchmarks.packed_variants:p16_s2``.
"""

from __future__ import annotations

from functools import cache, partial

import torch
import triton
import triton.language as tl

from kernels import packed_decode
from kernels.packed_decode import (
    decode_tile,
    default_tuning,
    launch_options,
    pdl_end,
    pdl_start,
)
from kernels.validate import check_decode_args

bv4_w1 = partial(packed_decode, BV=4, num_warps=1)
bv8_w2 = partial(packed_decode, BV=8, num_warps=2)
bv16_w1 = partial(packed_decode, BV=16, num_warps=1)
bv16_w2 = partial(packed_decode, BV=16, num_warps=2)
bv32_w2 = partial(packed_decode, BV=32, num_warps=2)
bv32_w8 = partial(packed_decode, BV=32, num_warps=8)
bv64_w4 = partial(packed_decode, BV=64, num_warps=4)
late = partial(packed_decode, early_state=0)  # state tile loaded after the gate math
bv2_w1 = partial(packed_decode, BV=2, num_warps=1)
bv8_w1 = partial(packed_decode, BV=8, num_warps=1)
bv32_w1 = partial(packed_decode, BV=32, num_warps=1)
bv32_w4 = partial(packed_decode, BV=32, num_warps=4)
bv64_w2 = partial(packed_decode, BV=64, num_warps=2)
bv64_w8 = partial(packed_decode, BV=64, num_warps=8)

# Load order and cache hints (the tiling stays the default's).
plain = partial(packed_decode, act_first=0, load_evict_last=0, store_streaming=0)
act0 = partial(packed_decode, act_first=0)
act1 = partial(packed_decode, act_first=1)
stream_all = partial(packed_decode, act_first=0, load_evict_last=0, store_streaming=1)
keep_all = partial(packed_decode, act_first=0, load_evict_last=1, store_streaming=0)
keep_act1 = partial(packed_decode, act_first=1, load_evict_last=1, store_streaming=0)


# Grid: (min(TILES, programs),) with TILES = B * HV * cdiv(V, BV), the flat
#   grid's tile count. Program p owns tiles p, p + P, p + 2P, ... (P programs),
#   each tile exactly the flat kernel's program (see kernels/packed_decode.py:
#   one row, one value head, BV values x all K keys, masks for the K and V
#   tails and for padding rows). LOOP_STAGES > 1 lets Triton pipeline the
#   loop's loads across iterations. PDL as in the flat kernel: wait for the
#   previous kernel before the first tile; let the next one launch after the
#   last tile (1) or at the start (2).
@triton.jit
def _persistent_kernel(
    qkv_ptr,
    a_ptr,
    b_ptr,
    A_log_ptr,
    dt_bias_ptr,
    state_ptr,
    idx_ptr,
    out_ptr,
    stride_qkv,
    stride_a,
    stride_b,
    stride_s0,
    scale,
    TILES,
    H: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    USE_L2NORM: tl.constexpr,
    STATE_VK: tl.constexpr,
    EARLY_STATE: tl.constexpr,
    ACT_FIRST: tl.constexpr,
    LOAD_EVICT_LAST: tl.constexpr,
    STORE_STREAMING: tl.constexpr,
    PDL: tl.constexpr,
    LOOP_STAGES: tl.constexpr,
):
    pdl_start(PDL)
    for t in tl.range(tl.program_id(0), TILES, tl.num_programs(0), num_stages=LOOP_STAGES):
        decode_tile(
            t,
            qkv_ptr,
            a_ptr,
            b_ptr,
            A_log_ptr,
            dt_bias_ptr,
            state_ptr,
            idx_ptr,
            out_ptr,
            stride_qkv,
            stride_a,
            stride_b,
            stride_s0,
            scale,
            H,
            HV,
            K,
            V,
            BK,
            BV,
            USE_L2NORM,
            STATE_VK,
            EARLY_STATE,
            ACT_FIRST,
            LOAD_EVICT_LAST,
            STORE_STREAMING,
        )
    pdl_end(PDL)


@cache
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


def persistent(
    mixed_qkv,
    a,
    b,
    A_log,
    dt_bias,
    state,
    state_indices,
    out,
    *,
    scale: float,
    use_qk_l2norm: bool = True,
    state_layout: str = "vk",
    per_sm: int = 16,
    loop_stages: int = 1,
) -> None:
    """The packed step on a persistent grid of ``per_sm`` programs per SM."""
    dims = check_decode_args(
        mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, state_layout
    )
    if dims.B == 0 or dims.HV == 0 or dims.V == 0:
        return
    tune = default_tuning(dims.K, dims.V, state_layout, dims.B * dims.HV)
    tiles = dims.B * dims.HV * triton.cdiv(dims.V, tune["BV"])
    grid = (min(tiles, per_sm * _sm_count(state.device)),)
    _persistent_kernel[grid](
        mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out,
        mixed_qkv.stride(0), a.stride(0), b.stride(0), state.stride(0),
        float(scale), tiles, LOOP_STAGES=loop_stages,
        **launch_options(dims, tune, use_qk_l2norm, state_layout),
    )  # fmt: skip


p8_s1 = partial(persistent, per_sm=8, loop_stages=1)
p16_s1 = partial(persistent, per_sm=16, loop_stages=1)
p32_s1 = partial(persistent, per_sm=32, loop_stages=1)
p8_s2 = partial(persistent, per_sm=8, loop_stages=2)
p16_s2 = partial(persistent, per_sm=16, loop_stages=2)
p32_s2 = partial(persistent, per_sm=32, loop_stages=2)

# Programmatic dependent launch: each step may launch while the one before it
# runs, and waits before its first load; it lets its own dependents launch
# after its stores (pdl1) or as it starts (pdl2).
pdl1 = partial(packed_decode, pdl=1)
pdl2 = partial(packed_decode, pdl=2)
