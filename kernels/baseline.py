"""The unfused GDN decode path that the packed kernel replaces.

A serving stack without the packed kernel runs one decode step as three
stages, and so does this module:

1. split ``mixed_qkv`` into contiguous ``q``, ``k`` ``[B, H, K]`` and ``v``
   ``[B, HV, V]`` with torch slicing and ``.contiguous()`` copies;
2. a gating kernel that turns ``a``, ``b``, ``A_log`` and ``dt_bias`` into the
   fp32 decay exponent ``g`` and write strength ``beta`` ``[B, HV]``;
3. a recurrent kernel in the style of FLA's ``fused_recurrent_gated_delta_rule``
   for ``T = 1``, updating the state pool in place through ``state_indices``.

It is meant to be an honest, fast baseline rather than a strawman: the
recurrent stage uses FLA's structure (full ``K`` per program, ``V`` tiles,
flat grid with the V tile fastest), tuned per state layout, so that it can be
timed against FLA's own kernel on pre-split inputs (``baseline_recurrent``).
Its semantics are the contract of docs/design.md, including padding rows, 64-bit
slot offsets, both state layouts and a grid that cannot overflow for
``B * HV > 65535``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime import interpreting
from kernels.validate import (
    check_decode_args,
    check_index_dtype,
    check_layout,
    check_state_pool,
    fail,
)

# Flattened [B, HV] gate elements per program of the gating kernel. Fixed, so
# the kernel compiles once whatever the batch size.
GATE_BLOCK = 256
GATE_NUM_WARPS = 4

# Recurrent tiling per state layout: (V tile width BV, num_warps). Measured
# on one H100 (Triton 3.6, K = V = 128, fp32 state, bf16 activations, B from 1
# to 1024, HV 32 and 64) against FLA's fused_recurrent_gated_delta_rule
# kernel on the same pre-split inputs:
# - vk ([V, K] per head): FLA's own choice, BV = 8 with one warp, matched FLA's
#   state_v_first kernel within 1-2% everywhere; wider tiles gained nothing.
# - kv ([K, V] per head): a program reads BV contiguous elements of each of
#   the K rows, so BV = 8 fetches 32-byte pieces and ran up to 14% slower
#   than FLA at large batch; BV = 32 with four warps ran 10-15% faster than
#   FLA at B >= 32 and as fast below.
RECURRENT_TILING = {"vk": (8, 1), "kv": (32, 4)}
RECURRENT_NUM_STAGES = 3
# Under the Triton interpreter each program costs ~10 ms whatever its block
# size (every tl.sum re-enters the interpreter), so the CPU tier caps BV at
# 32 rather than 8: still several tiles with a masked tail for V > 32, up to
# four times fewer programs. Each output column is computed the same way for
# any BV, so this changes the speed, not the arithmetic.
INTERPRET_BLOCK_V = 32


def default_tiling(V: int, state_layout: str) -> tuple[int, int]:
    """(BV, num_warps) of the recurrent kernel for this V and state layout."""
    bv, num_warps = RECURRENT_TILING[state_layout]
    if interpreting():
        bv = max(bv, INTERPRET_BLOCK_V)
    return min(bv, triton.next_power_of_2(V)), num_warps


# Gating kernel.
#   grid:   (cdiv(B * HV, BLOCK),)  on axis 0 only, which allows 2**31 - 1 programs
#   block:  BLOCK consecutive elements of the row-major [B, HV] gate arrays
#   owns:   g[e] and beta[e] for e in [pid * BLOCK, pid * BLOCK + BLOCK), masked
#           at n_elem; element e is row e // HV, value head e % HV, and a / b
#           are read through their row strides (they are often views of one
#           packed [B, 2*HV] buffer).
@triton.jit
def _gdn_gating_kernel(
    a_ptr,
    b_ptr,
    A_log_ptr,
    dt_bias_ptr,
    g_ptr,
    beta_ptr,
    n_elem,
    stride_a,
    stride_b,
    HV: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elem
    row = offs // HV
    hv = offs % HV

    a = tl.load(a_ptr + row * stride_a + hv, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + row * stride_b + hv, mask=mask, other=0.0).to(tl.float32)
    A_log = tl.load(A_log_ptr + hv, mask=mask, other=0.0).to(tl.float32)
    dt_bias = tl.load(dt_bias_ptr + hv, mask=mask, other=0.0).to(tl.float32)

    # softplus(x) = x above the threshold 20, else log(1 + exp(x)). exp only
    # sees min(x, 20), so it cannot overflow. log(1 + e) loses everything when
    # 1 + e rounds to 1 (x below about -17); the factor e / ((1 + e) - 1)
    # corrects for the rounding of 1 + e (the classic log1p identity), which
    # keeps g accurate to a few ulps for very negative x as well.
    x = a + dt_bias
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    d = w - 1.0
    sp_small = tl.where(d == 0.0, e, tl.log(w) * (e / tl.where(d == 0.0, 1.0, d)))
    softplus = tl.where(x > 20.0, x, sp_small)
    g = -tl.exp(A_log) * softplus
    # sigmoid(b) = 1 / (1 + exp(-b)), evaluated through e = exp(-|b|) <= 1 so
    # that exp never overflows and beta keeps its relative accuracy for very
    # negative b (e / (1 + e) there).
    e_b = tl.exp(-tl.abs(b))
    beta = tl.where(b >= 0.0, 1.0 / (1.0 + e_b), e_b / (1.0 + e_b))

    tl.store(g_ptr + offs, g, mask=mask)
    tl.store(beta_ptr + offs, beta, mask=mask)


# Recurrent kernel (one decode step, T = 1).
#   grid:   (cdiv(V, BV) * B * HV,), flat on axis 0 (limit 2**31 - 1), so no
#           batch size overflows it (axes 1 and 2 stop at 65535). The V tile
#           is the fastest-varying part of the program id, as in FLA: programs
#           that run side by side cover neighbouring tiles of one head's
#           state, which keeps DRAM access local. A 2D (B * HV, NV) grid
#           measured up to 3x slower on the kv layout on an H100 for that
#           reason.
#   block:  the state tile is [BV, BK] for layout vk ([V, K] per head, K the
#           fast dim) and [BK, BV] for layout kv ([K, V] per head); BK is
#           next_pow2(K), the whole key dim, because S^T k and S^T q reduce
#           over K; BV is a slice of V (RECURRENT_TILING).
#   owns:   with pid = (n * HV + hv) * NV + i_v: row n, value head hv, value
#           columns [i_v * BV, i_v * BV + BV) of out[n, hv] and of the state
#           slot state[state_indices[n], hv] (the index read through its
#           stride); it reads q/k of key head
#           h = hv // (HV // H), v[n, hv, tile], g[n, hv] and beta[n, hv].
#           Tails (K < BK, V not a multiple of BV) are masked on every access.
#           A padding row (slot < 0) stores zeros to its out tile and touches
#           no state. Slot offsets are computed in int64.
@triton.jit
def _gdn_recurrent_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    g_ptr,
    beta_ptr,
    state_ptr,
    idx_ptr,
    out_ptr,
    scale,
    stride_state_slot,
    stride_idx,
    H: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    STATE_VK: tl.constexpr,
    USE_QK_L2NORM: tl.constexpr,
):
    NV = (V + BV - 1) // BV
    pid = tl.program_id(0).to(tl.int64)
    i_v = pid % NV
    i_nh = pid // NV
    i_n = i_nh // HV
    i_hv = i_nh % HV
    i_h = i_hv // (HV // H)

    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    mask_k = o_k < K
    mask_v = o_v < V
    p_out = out_ptr + i_nh * V + o_v

    slot = tl.load(idx_ptr + i_n * stride_idx).to(tl.int64)
    if slot >= 0:
        b_q = tl.load(q_ptr + (i_n * H + i_h) * K + o_k, mask=mask_k, other=0.0).to(tl.float32)
        b_k = tl.load(k_ptr + (i_n * H + i_h) * K + o_k, mask=mask_k, other=0.0).to(tl.float32)
        b_v = tl.load(v_ptr + i_nh * V + o_v, mask=mask_v, other=0.0).to(tl.float32)
        b_g = tl.load(g_ptr + i_nh).to(tl.float32)
        b_beta = tl.load(beta_ptr + i_nh).to(tl.float32)
        if USE_QK_L2NORM:
            b_q = b_q / tl.sqrt(tl.sum(b_q * b_q, axis=0) + 1e-6)
            b_k = b_k / tl.sqrt(tl.sum(b_k * b_k, axis=0) + 1e-6)
        b_q = b_q * scale

        p_slot = state_ptr + slot * stride_state_slot + i_hv * (K * V)
        if STATE_VK:
            p_h = p_slot + o_v[:, None] * K + o_k[None, :]
            mask_h = mask_v[:, None] & mask_k[None, :]
        else:
            p_h = p_slot + o_k[:, None] * V + o_v[None, :]
            mask_h = mask_k[:, None] & mask_v[None, :]
        b_h = tl.load(p_h, mask=mask_h, other=0.0).to(tl.float32)

        b_h = b_h * tl.exp(b_g)
        if STATE_VK:
            b_u = (b_v - tl.sum(b_h * b_k[None, :], axis=1)) * b_beta
            b_h = b_h + b_u[:, None] * b_k[None, :]
            b_o = tl.sum(b_h * b_q[None, :], axis=1)
        else:
            b_u = (b_v - tl.sum(b_h * b_k[:, None], axis=0)) * b_beta
            b_h = b_h + b_k[:, None] * b_u[None, :]
            b_o = tl.sum(b_h * b_q[:, None], axis=0)

        tl.store(p_h, b_h.to(p_h.dtype.element_ty), mask=mask_h)
        tl.store(p_out, b_o.to(p_out.dtype.element_ty), mask=mask_v)
    else:
        # CUDA-graph replay reuses the output buffer: padding must be written.
        zeros = tl.zeros([BV], dtype=tl.float32)
        tl.store(p_out, zeros.to(p_out.dtype.element_ty), mask=mask_v)


def _check_recurrent_args(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    state_indices: torch.Tensor,
    out: torch.Tensor,
    state_layout: str,
) -> tuple[int, int, int, int, int]:
    """Check the pre-split inputs of ``baseline_recurrent``; return (B, H, HV, K, V).

    The kernel indexes q/k/v/g/beta/out as dense arrays and the state as dense
    slots, so anything else would be read wrongly rather than fail; these
    checks turn that into a ``ValueError`` naming the argument.
    """
    check_layout(state_layout)
    tensors = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "state": state,
               "state_indices": state_indices, "out": out}  # fmt: skip
    ndims = {"q": 3, "k": 3, "v": 3, "g": 2, "beta": 2, "state": 4, "state_indices": 1, "out": 3}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            fail(name, f"expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != ndims[name]:
            fail(name, f"expected {ndims[name]} dims, got shape {tuple(t.shape)}")
        if t.device != q.device:
            fail(name, f"is on {t.device}, but q is on {q.device}")
        if name not in ("state", "state_indices") and not t.is_contiguous():
            fail(name, f"must be contiguous, got strides {tuple(t.stride())}")
    check_index_dtype(state_indices)
    _, HV, K, V = check_state_pool(state, state_layout)
    B, H = q.shape[0], q.shape[1]
    expected = {"q": (B, H, K), "k": (B, H, K), "v": (B, HV, V), "g": (B, HV),
                "beta": (B, HV), "state_indices": (B,), "out": (B, HV, V)}  # fmt: skip
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            fail(name, f"shape must be {shape}, got {tuple(tensors[name].shape)}")
    if H == 0 or HV % H:
        fail("q", f"HV={HV} is not a multiple of H={H}")
    return B, H, HV, K, V


def _launch_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    state_indices: torch.Tensor,
    out: torch.Tensor,
    *,
    B: int,
    H: int,
    HV: int,
    K: int,
    V: int,
    scale: float,
    use_qk_l2norm: bool,
    state_layout: str,
    block_v: int | None,
    num_warps: int | None,
) -> None:
    if B == 0:
        return
    BK = triton.next_power_of_2(K)
    default_bv, default_warps = default_tiling(V, state_layout)
    BV = block_v if block_v is not None else default_bv
    grid = (triton.cdiv(V, BV) * B * HV,)
    _gdn_recurrent_kernel[grid](
        q, k, v, g, beta, state, state_indices, out,
        float(scale), state.stride(0), state_indices.stride(0),
        H=H, HV=HV, K=K, V=V, BK=BK, BV=BV,
        STATE_VK=state_layout == "vk", USE_QK_L2NORM=bool(use_qk_l2norm),
        num_warps=num_warps if num_warps is not None else default_warps,
        num_stages=RECURRENT_NUM_STAGES,
    )  # fmt: skip


def baseline_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    state_indices: torch.Tensor,
    out: torch.Tensor,
    *,
    scale: float,
    use_qk_l2norm: bool = True,
    state_layout: str = "vk",
    block_v: int | None = None,
    num_warps: int | None = None,
) -> None:
    """Recurrent stage alone, on pre-split contiguous inputs (stage 3 of the baseline).

    Exposed on its own so that a benchmark can time it against FLA's
    ``fused_recurrent_gated_delta_rule`` on the same inputs, without the
    split and gating stages. ``q``, ``k`` are ``[B, H, K]``, ``v`` and ``out``
    ``[B, HV, V]``, ``g`` (the log-space decay) and ``beta`` (post-sigmoid)
    ``[B, HV]``, all contiguous; ``state`` and ``state_indices`` as in the
    contract. Writes ``out`` and updates ``state`` in place. ``block_v`` and
    ``num_warps`` override the tiling for tuning experiments.
    """
    B, H, HV, K, V = _check_recurrent_args(
        q, k, v, g, beta, state, state_indices, out, state_layout
    )
    if block_v is not None and (block_v < 1 or block_v & (block_v - 1)):
        fail("block_v", f"must be a power of two, got {block_v}")
    _launch_recurrent(
        q, k, v, g, beta, state, state_indices, out,
        B=B, H=H, HV=HV, K=K, V=V, scale=scale, use_qk_l2norm=use_qk_l2norm,
        state_layout=state_layout, block_v=block_v, num_warps=num_warps,
    )  # fmt: skip


def baseline_gates(
    a: torch.Tensor, b: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gating stage alone: fp32 ``g`` and ``beta`` ``[B, HV]`` from already validated inputs.

    fp32 outputs on purpose: rounding beta or g to the activation dtype here
    is a known upstream bug whose error compounds over decode steps.
    """
    B, HV = a.shape
    g = torch.empty((B, HV), dtype=torch.float32, device=a.device)
    beta = torch.empty((B, HV), dtype=torch.float32, device=a.device)
    n_elem = B * HV
    if n_elem == 0:
        return g, beta
    grid = (triton.cdiv(n_elem, GATE_BLOCK),)
    _gdn_gating_kernel[grid](
        a, b, A_log, dt_bias, g, beta, n_elem, a.stride(0), b.stride(0),
        HV=HV, BLOCK=GATE_BLOCK, num_warps=GATE_NUM_WARPS,
    )  # fmt: skip
    return g, beta


def baseline_decode(
    mixed_qkv: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
    state: torch.Tensor,
    state_indices: torch.Tensor,
    out: torch.Tensor,
    *,
    scale: float,
    use_qk_l2norm: bool = True,
    state_layout: str = "vk",
) -> None:
    """One GDN decode step through the unfused path (split, gate, recur); the contract.

    Writes ``out [B, HV, V]`` and updates ``state`` in place, for the rows
    whose ``state_indices`` entry is a slot; padding rows (negative index) get
    zeros and touch no slot. Arguments are validated first, by the same
    checks as the packed wrapper, so both reject the same inputs alike.
    """
    dims = check_decode_args(
        mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, state_layout
    )
    B, H, HV, K, V = dims.B, dims.H, dims.HV, dims.K, dims.V
    if B == 0:
        return
    # Stage 1: what an unfused stack does with the projection output, one
    # contiguous copy per operand (honours mixed_qkv's row stride by way of
    # torch's strided views).
    q = mixed_qkv[:, : H * K].reshape(B, H, K).contiguous()
    k = mixed_qkv[:, H * K : 2 * H * K].reshape(B, H, K).contiguous()
    v = mixed_qkv[:, 2 * H * K : 2 * H * K + HV * V].reshape(B, HV, V).contiguous()
    # Stage 2: gates in fp32.
    g, beta = baseline_gates(a, b, A_log, dt_bias)
    # Stage 3: the recurrence, in place on the pool.
    _launch_recurrent(
        q, k, v, g, beta, state, state_indices, out,
        B=B, H=H, HV=HV, K=K, V=V, scale=scale, use_qk_l2norm=use_qk_l2norm,
        state_layout=state_layout, block_v=None, num_warps=None,
    )  # fmt: skip
