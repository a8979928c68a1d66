"""The packed GDN single-token decode kernel (the kernel under test).

Why one launch: the unfused path splits ``mixed_qkv`` into contiguous q/k/v
tensors, runs a gating kernel for ``g`` and ``beta``, and only then runs the
recurrent update, so every activation makes extra round trips through
memory and there are three launches per layer. Decode is bound by reading
and writing the recurrent state, so this kernel reads q, k and v straight
out of the packed projection output (honouring its row stride), computes the
gates in registers, and touches each state element exactly once for the read
and once for the write.

The math is docs/design.md's, in fp32 throughout; the only roundings are the final
stores to ``out`` and to the state pool.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

try:  # grid dependency control, for the opt-in programmatic dependent launch
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # a Triton without it can still run every pdl=0 launch
    gdc_launch_dependents = gdc_wait = None

from kernels.runtime import interpreting
from kernels.validate import DecodeDims, check_decode_args

# (BV, num_warps) per state layout, from a sweep on an H100 (Triton 3.6, K = V =
# 128, H/HV 16/32 and 4/8, B 1 to 1024; docs/performance.md). Large batches: vk
# wants many one-warp programs of 8 value rows x 128 contiguous keys, kv wide
# rows of 64 contiguous values. Small batches (B * HV <= SMALL_ROWS_HEADS) are
# latency bound and want still more, smaller programs.
TILING = {"vk": (8, 1), "kv": (64, 4)}
TILING_SMALL = {"vk": (4, 1), "kv": (16, 1)}
SMALL_ROWS_HEADS = 256
NUM_STAGES = 3
# Under the Triton interpreter a program costs the same whatever its size, so
# the CPU runs use wider V tiles (the math per output column is unchanged).
INTERPRET_BLOCK_V = 32
# Cache hints and load order by layout and B * HV, from sweeps on an H100 with
# L2 scrubbed before each timing (docs/performance.md). Small steps end sooner
# with streaming state stores (.cs): without them (and, in vk, without the
# activations first) a B = 1 step takes 1.13-1.27x as long. Larger steps are
# faster when the loaded lines are kept in L2 (evict_last) until the tile is
# written back over them: 0.6-2% from B * HV = 1024. Layout kv wants the
# activation loads issued before the state tile's from 512 (3.2-3.8% there),
# vk only at the smallest steps (up to 2.6%).
# Streaming stores and evict_last loads together lose both gains.
# A programmatic dependent launch (``pdl``) stays off: behind a kernel that does
# not signal its dependents, as in a model, it made small steps slower.
STREAM_STORE_ROWS_HEADS = {"vk": 512, "kv": 128}  # streaming stores up to here
LARGE_ROWS_HEADS = 512  # evict_last loads above here
ACT_FIRST_ROWS_HEADS = {"vk": (0, 64), "kv": (256, math.inf)}  # activations first in (lo, hi]
_TUNING_KEYS = (
    "BV",
    "num_warps",
    "early_state",
    "act_first",
    "load_evict_last",
    "store_streaming",
    "pdl",
)


# Grid: (B * HV * NV,) with NV = cdiv(V, BV), all on axis 0, which allows
#   2**31 - 1 programs, so B * HV > 65535 never overflows (axes 1 and 2 stop at
#   65535). pid = (n * HV + hv) * NV + i_v: the V tiles of one head are
#   neighbours, so programs running together read neighbouring state memory.
# Each program owns one (row n, value head hv, V tile i_v) and the FULL key dim K:
#   q, k: [BK] from mixed_qkv row n, key head h = hv // (HV // H), loaded once;
#   v:    [BV] slice of value head hv;
#   state tile, read once and written once:
#     vk layout (state [N, HV, V, K]): [BV, BK] block, contiguous along K (wide loads);
#     kv layout (state [N, HV, K, V]): [BK, BV] block, contiguous along V.
#   Both reductions (S^T k and S^T q) run over K inside the program, so no
#   cross-program communication is needed.
# Masks: k_mask (offs_k < K) covers the K tail (BK = next_power_of_2(K));
#   v_mask (offs_v < V) covers the V tail; sv_mask is v_mask for a live row
#   (slot >= 0) and empty for a padding row. sv_mask gates every state load and
#   store, so a padding row never touches any slot (its offset is also computed
#   from slot 0, never from -1), and its output row is stored as exact zeros.
# Offsets: the row offsets n * stride and the slot offset slot * stride_s0 are
#   int64 (pools over 2**31 elements exist).
# Order and hints (constexpr, chosen by default_tuning): EARLY_STATE loads the
#   state tile before the gate math, ACT_FIRST issues the activation loads
#   before it, LOAD_EVICT_LAST / STORE_STREAMING set the state's cache hints.
# PDL (launched as a programmatic dependent launch; off by default): every
#   program waits for the previous kernel's writes before its first load, and
#   lets the next kernel launch after its stores (1) or as it starts (2).
@triton.jit
def _packed_decode_kernel(
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
):
    pdl_start(PDL)
    decode_tile(
        tl.program_id(0),
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


@triton.jit
def pdl_start(PDL: tl.constexpr):
    """Launched as a programmatic dependent launch (PDL > 0), a program may start
    while the previous kernel in the stream still runs: wait until its writes are
    visible. PDL == 2 then lets the next kernel launch at once."""
    if PDL:
        gdc_wait()
    if PDL == 2:
        gdc_launch_dependents()


@triton.jit
def pdl_end(PDL: tl.constexpr):
    """PDL == 1: let the next kernel launch, once this program's stores are issued."""
    if PDL == 1:
        gdc_launch_dependents()


@triton.jit
def decode_tile(
    pid,
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
):
    """The work of tile ``pid``: one (row, value head, V tile), as described above."""
    NV: tl.constexpr = (V + BV - 1) // BV
    pid_v = pid % NV
    pid_bh = pid // NV
    n = pid_bh // HV
    hv = pid_bh % HV
    h = hv // (HV // H)
    n64 = n.to(tl.int64)

    offs_k = tl.arange(0, BK)
    offs_v = pid_v * BV + tl.arange(0, BV)
    k_mask = offs_k < K
    v_mask = offs_v < V

    slot = tl.load(idx_ptr + n).to(tl.int64)
    # With ACT_FIRST the activation loads, which do not depend on the slot, are
    # issued while the slot index is in flight (docs/performance.md).
    if ACT_FIRST:
        q, k, v, x, bb, A_log = _load_activations(
            qkv_ptr, a_ptr, b_ptr, A_log_ptr, dt_bias_ptr, n64, h, hv,
            stride_qkv, stride_a, stride_b, offs_k, offs_v, k_mask, v_mask, H, K, V,
        )  # fmt: skip
    live = slot >= 0
    slot = tl.maximum(slot, 0)
    # State mask along V: empty for a padding row (written as a bound rather than
    # `v_mask & live`, which the Triton interpreter rejects for a scalar `live`).
    sv_mask = offs_v < tl.where(live, V, 0)

    s_base = state_ptr + slot * stride_s0 + hv.to(tl.int64) * (K * V)
    if STATE_VK:  # tile [BV, BK]: element (v, k) at v * K + k
        s_ptrs = s_base + offs_v[:, None] * K + offs_k[None, :]
        s_mask = sv_mask[:, None] & k_mask[None, :]
    else:  # tile [BK, BV]: element (k, v) at k * V + v
        s_ptrs = s_base + offs_k[:, None] * V + offs_v[None, :]
        s_mask = k_mask[:, None] & sv_mask[None, :]
    # Issued before the gate math, which then overlaps the load's latency.
    if EARLY_STATE:
        S = _load_state(s_ptrs, s_mask, LOAD_EVICT_LAST)
    if not ACT_FIRST:
        q, k, v, x, bb, A_log = _load_activations(
            qkv_ptr, a_ptr, b_ptr, A_log_ptr, dt_bias_ptr, n64, h, hv,
            stride_qkv, stride_a, stride_b, offs_k, offs_v, k_mask, v_mask, H, K, V,
        )  # fmt: skip
    if USE_L2NORM:
        q = q / tl.sqrt(tl.sum(q * q, axis=0) + 1e-6)
        k = k / tl.sqrt(tl.sum(k * k, axis=0) + 1e-6)
    q = q * scale

    # Gates in fp32: g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b).
    # softplus(x) = x above 20, else log1p(exp(x)). log(1 + e) alone loses the
    # relative accuracy of small e to the rounding of 1 + e (all of it once
    # 1 + e == 1); the factor e / ((1 + e) - 1) undoes that rounding.
    e_x = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e_x
    d = w - 1.0
    log1p_e = tl.where(d == 0.0, e_x, tl.log(w) * (e_x / tl.where(d == 0.0, 1.0, d)))
    softplus = tl.where(x > 20.0, x, log1p_e)
    g = -tl.exp(A_log) * softplus
    decay = tl.exp(g)
    e = tl.exp(-tl.abs(bb))  # in (0, 1]: never overflows
    beta = tl.where(bb >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    if not EARLY_STATE:
        S = _load_state(s_ptrs, s_mask, LOAD_EVICT_LAST)
    S = S * decay
    if STATE_VK:
        u = (v - tl.sum(S * k[None, :], axis=1)) * beta
        S = S + u[:, None] * k[None, :]
        o = tl.sum(S * q[None, :], axis=1)
    else:
        u = (v - tl.sum(S * k[:, None], axis=0)) * beta
        S = S + k[:, None] * u[None, :]
        o = tl.sum(S * q[:, None], axis=0)
    S = S.to(state_ptr.dtype.element_ty)
    if STORE_STREAMING:
        tl.store(s_ptrs, S, mask=s_mask, cache_modifier=".cs")
    else:
        tl.store(s_ptrs, S, mask=s_mask)

    o = tl.where(live, o, 0.0)
    out_ptrs = out_ptr + pid_bh.to(tl.int64) * V + offs_v
    tl.store(out_ptrs, o.to(out_ptr.dtype.element_ty), mask=v_mask)


@triton.jit
def _load_state(s_ptrs, s_mask, EVICT_LAST: tl.constexpr):
    """The state tile in fp32; EVICT_LAST keeps its lines in L2 until the tile is written."""
    if EVICT_LAST:
        S = tl.load(s_ptrs, mask=s_mask, other=0.0, eviction_policy="evict_last")
    else:
        S = tl.load(s_ptrs, mask=s_mask, other=0.0)
    return S.to(tl.float32)


@triton.jit
def _load_activations(
    qkv_ptr,
    a_ptr,
    b_ptr,
    A_log_ptr,
    dt_bias_ptr,
    n64,
    h,
    hv,
    stride_qkv,
    stride_a,
    stride_b,
    offs_k,
    offs_v,
    k_mask,
    v_mask,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
):
    """q, k, v straight from the packed row, a + dt_bias, b and A_log, all in fp32."""
    row = qkv_ptr + n64 * stride_qkv
    q = tl.load(row + h * K + offs_k, mask=k_mask, other=0.0).to(tl.float32)
    k = tl.load(row + H * K + h * K + offs_k, mask=k_mask, other=0.0).to(tl.float32)
    v = tl.load(row + 2 * H * K + hv * V + offs_v, mask=v_mask, other=0.0).to(tl.float32)
    x = tl.load(a_ptr + n64 * stride_a + hv).to(tl.float32)
    x = x + tl.load(dt_bias_ptr + hv).to(tl.float32)
    bb = tl.load(b_ptr + n64 * stride_b + hv).to(tl.float32)
    A_log = tl.load(A_log_ptr + hv).to(tl.float32)
    return q, k, v, x, bb, A_log


def default_tuning(
    K: int, V: int, state_layout: str = "vk", rows_heads: int | None = None
) -> dict[str, int]:
    """Default launch parameters for this shape, layout and B * HV (see ``TILING``)."""
    n = math.inf if rows_heads is None else rows_heads  # unknown: tuned as the largest
    BV, num_warps = (TILING_SMALL if n <= SMALL_ROWS_HEADS else TILING)[state_layout]
    if interpreting():
        BV = max(BV, INTERPRET_BLOCK_V)
    lo, hi = ACT_FIRST_ROWS_HEADS[state_layout]
    return {
        "BV": min(BV, triton.next_power_of_2(V)),
        "num_warps": num_warps,
        "early_state": 1,
        "act_first": int(lo < n <= hi),
        "load_evict_last": int(n > LARGE_ROWS_HEADS),
        "store_streaming": int(n <= STREAM_STORE_ROWS_HEADS[state_layout]),
        "pdl": 0,
    }


def launch_options(
    dims: DecodeDims, params: dict[str, int], use_qk_l2norm: bool, state_layout: str
) -> dict[str, int | bool]:
    """The kernel's compile-time arguments and launch options for ``params``
    (``default_tuning``'s keys), shared by every launcher of ``decode_tile``.
    The interpreter runs launches one after another and has no grid dependency
    control, so there ``pdl`` is dropped; ``launch_pdl`` is passed only when
    set, since a Triton without it rejects the option."""
    pdl = 0 if interpreting() else int(params["pdl"])
    options = {
        "H": dims.H, "HV": dims.HV, "K": dims.K, "V": dims.V,
        "BK": triton.next_power_of_2(dims.K), "BV": int(params["BV"]),
        "USE_L2NORM": bool(use_qk_l2norm), "STATE_VK": state_layout == "vk",
        "EARLY_STATE": bool(params["early_state"]), "ACT_FIRST": bool(params["act_first"]),
        "LOAD_EVICT_LAST": bool(params["load_evict_last"]),
        "STORE_STREAMING": bool(params["store_streaming"]),
        "PDL": pdl, "num_warps": int(params["num_warps"]), "num_stages": NUM_STAGES,
    }  # fmt: skip
    return {**options, "launch_pdl": True} if pdl else options


def _check_pdl(pdl: int, state: torch.Tensor) -> None:
    """A programmatic dependent launch needs grid dependency control: in Triton,
    and on the GPU (Hopper, sm_90, or newer)."""
    if pdl not in (0, 1, 2):
        raise ValueError(f"pdl: must be 0, 1 or 2, got {pdl!r}")
    if not pdl or interpreting():
        return
    if gdc_wait is None:
        raise ValueError(f"pdl: Triton {triton.__version__} has no grid dependency control")
    if state.is_cuda and torch.cuda.get_device_capability(state.device)[0] < 9:
        name = torch.cuda.get_device_name(state.device)
        raise ValueError(f"pdl: needs a GPU of compute capability 9.0 or newer, not {name}")


def launch_grid(B: int, HV: int, V: int, BV: int) -> tuple[int]:
    """The launch grid: every (row, head, V tile) on axis 0 (up to 2**31 - 1)."""
    return (B * HV * triton.cdiv(V, BV),)


def packed_decode(
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
    **tuning: int,
) -> None:
    """One GDN decode step in a single launch: write ``out``, update ``state`` in place.

    Follows the implementation contract of docs/design.md. Optional tuning keyword
    arguments (``default_tuning`` gives each shape's): ``BV`` (power of two,
    the value-tile width), ``num_warps``, ``early_state`` (1: load the state
    tile before the gate math, which then hides part of its latency; 0: after,
    as the math reads), ``act_first`` (1: issue the activation loads before the
    state tile's), ``load_evict_last`` (1: keep the loaded state lines in L2 for
    their write), ``store_streaming`` (1: streaming state stores) and ``pdl``
    (1 or 2: a programmatic dependent launch, which may start before the
    previous kernel in the stream ends and waits for its writes; 1 lets the
    next kernel launch after this one's stores, 2 as it starts; 0, the
    default, a plain launch). None of them changes a bit of the result.
    ``pdl`` pays only behind a kernel that lets its dependents launch early,
    and costs time behind one that does not (docs/performance.md); it needs
    a Hopper or newer GPU, and the interpreter ignores it.
    """
    dims = check_decode_args(
        mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, state_layout
    )
    unknown = set(tuning) - set(_TUNING_KEYS)
    if unknown:
        raise TypeError(f"packed_decode: unknown tuning arguments {sorted(unknown)}")
    defaults = default_tuning(dims.K, dims.V, state_layout, dims.B * dims.HV)
    params = {**defaults, **tuning}
    BV = int(params["BV"])
    if BV < 1 or BV & (BV - 1):
        raise ValueError(f"BV: must be a power of two, got {BV}")
    _check_pdl(params["pdl"], state)
    if dims.B == 0 or dims.HV == 0 or dims.V == 0:
        return
    _packed_decode_kernel[launch_grid(dims.B, dims.HV, dims.V, BV)](
        mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out,
        mixed_qkv.stride(0), a.stride(0), b.stride(0), state.stride(0),
        float(scale), **launch_options(dims, params, use_qk_l2norm, state_layout),
    )  # fmt: skip
