"""A pure-torch implementation of the decode contract with planted bugs.

``decode`` is a straightforward vectorised fp32 implementation of docs/design.md's
decode step (reads every input through the views it is given, so strides are
honoured; padding rows get exact zeros and touch no slot). ``bug=NAME``
switches on one planted bug, each a faithful model of a bug that such
kernels have actually had (see ``BUGS``), not an arbitrary corruption.

Every planted bug is also a module-level contract callable of the same name,
so the harness can run it as ``--impl tests.planted.bugs:NAME``; ``correct``
is the bug-free one. ``PLANTED`` lists the bug names; ``BUGS[name].check``
is the harness check that must catch it, ``BUGS[name].bug_class`` the
docs/design.md bug class it models (tags as in ``tests/test_case_library.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

L2_EPS = 1e-6
SOFTPLUS_THRESHOLD = 20.0
ROW_BLOCK = 4  # rows per program of the modelled blocked kernel (batch_tail)


@dataclass(frozen=True)
class Bug:
    check: str  # the harness check that must report it
    bug_class: str  # the docs/design.md bug class (case library tag)
    doc: str


BUGS: dict[str, Bug] = {
    "qkv_row_stride": Bug(
        "values",
        "qkv-row-stride",
        "mixed_qkv read as if dense (row stride = its width), ignoring stride(0)",
    ),
    "ab_row_stride": Bug(
        "values",
        "ab-row-stride",
        "a and b read as if dense [B, HV] (row stride HV), ignoring stride(0)",
    ),
    "slot_from_row": Bug(
        "values",
        "slot-from-row",
        "a live row's state slot is its row number instead of state_indices[row]",
    ),
    "padding_unwritten": Bug(
        "padding",
        "padding-unwritten",
        "padding rows are skipped: their output rows are never written",
    ),
    "padding_slot_wrap": Bug(
        "untouched-slots",
        "padding-writes-slot",
        "padding rows output zeros but still update slot -1 (wraps to the last slot)",
    ),
    "slot0_as_padding": Bug(
        "values",
        "slot0-as-padding",
        "slot 0 is taken for padding (test slot > 0): its row is zeroed, its slot kept",
    ),
    "gqa_mod": Bug(
        "values",
        "gqa-mapping",
        "value head hv reads key head hv % H instead of hv // (HV // H)",
    ),
    "scale_before_norm": Bug(
        "values",
        "scale-before-norm",
        "q is scaled before the L2 norm (which then undoes the scale)",
    ),
    "eps_outside_sqrt": Bug(
        "values",
        "eps-placement",
        "L2 norm divides by sqrt(sum(x*x)) + eps instead of sqrt(sum(x*x) + eps)",
    ),
    "dt_bias_bf16": Bug(
        "values",
        "dt-bias-precision",
        "dt_bias is rounded to bf16 before a + dt_bias",
    ),
    "a_log_bf16": Bug(
        "values",
        "a-log-precision",
        "A_log is rounded to bf16 before exp(A_log)",
    ),
    "softplus_overflow": Bug(
        "values",
        "softplus-threshold",
        "softplus as log(1 + exp(x)) in fp32 with no threshold: exp overflows for x > 88",
    ),
    "beta_bf16": Bug(
        "values",
        "beta-bf16",
        "beta = sigmoid(b) is rounded to bf16 (the upstream gating-kernel bug)",
    ),
    "decay_after_update": Bug(
        "values",
        "decay-after-update",
        "the delta rule runs on the undecayed state and the decay is applied afterwards",
    ),
    "output_old_state": Bug(
        "values",
        "output-old-state",
        "out = S^T q is computed from the decayed state before the rank-1 update",
    ),
    "transposed_state": Bug(
        "values",
        "transposed-layout",
        "the state pool is read and written as if it had the other layout (vk <-> kv)",
    ),
    "k_tail": Bug(
        "values",
        "head-dim-tail",
        "the K mask bound is the largest power of two <= K: the tail of q, k and the "
        "state rows k >= that bound are neither loaded nor stored",
    ),
    "v_tail": Bug(
        "values",
        "head-dim-tail",
        "the V mask bound is the largest power of two <= V: the value tail of v, out "
        "and the state is neither loaded nor stored",
    ),
    "batch_tail": Bug(
        "values",
        "batch-tail",
        f"rows are handled in blocks of {ROW_BLOCK} and the grid is B // {ROW_BLOCK}: "
        "the rows of a partial last block are never processed",
    ),
    "state_bf16": Bug(
        "values",
        "state-bf16-rounding",
        "the new state is rounded through bf16 before the store, whatever the state dtype",
    ),
    "out_bf16": Bug(
        "values",
        "output-bf16-rounding",
        "the output is rounded through bf16 before the store, whatever the activation dtype",
    ),
    "out_of_bounds_write": Bug(
        "guards",
        "guard-writes",
        "the output store has no V-tail mask: each head writes next_pow2(V) columns, so "
        "the last head spills past the end of out",
    ),
    "input_modified": Bug(
        "inputs",
        "input-modified",
        "the L2-normalised q and k are written back into mixed_qkv",
    ),
    "nondeterministic": Bug(
        "determinism",
        "nondeterminism",
        "the K reductions run in opposite orders on consecutive calls (as split-K atomics may)",
    ),
}

PLANTED: list[str] = list(BUGS)
_CALLS = itertools.count()


def _floor_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


def _kv_view(state: torch.Tensor, layout: str, K: int, V: int) -> torch.Tensor:
    """``[N, HV, K, V]`` view of the pool's memory, read as layout ``layout``."""
    N, HV = state.shape[0], state.shape[1]
    s0, s1, off = state.stride(0), state.stride(1), state.storage_offset()
    if layout == "kv":
        return state.as_strided((N, HV, K, V), (s0, s1, V, 1), off)
    return state.as_strided((N, HV, V, K), (s0, s1, K, 1), off).transpose(2, 3)


def _dense_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` read as if its rows were packed (row stride = row length)."""
    rows, width = t.shape
    return t.as_strided((rows, width), (width, 1), t.storage_offset())


def _l2norm(x: torch.Tensor, eps_outside: bool) -> torch.Tensor:
    sq = (x * x).sum(dim=-1, keepdim=True)
    if eps_outside:
        return x / (torch.sqrt(sq) + L2_EPS)
    return x / torch.sqrt(sq + L2_EPS)


def _softplus(x: torch.Tensor, overflow: bool) -> torch.Tensor:
    if overflow:
        return torch.log(1.0 + torch.exp(x))
    small = torch.log1p(torch.exp(torch.clamp(x, max=SOFTPLUS_THRESHOLD)))
    return torch.where(x > SOFTPLUS_THRESHOLD, x, small)


def _dot_k(x: torch.Tensor, S: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """``sum_k x[r, h, k] * S[r, h, k, v]`` (over K in the order ``perm`` if given)."""
    if perm is not None:
        x, S = x[..., perm], S[..., perm, :]
    return torch.einsum("rhk,rhkv->rhv", x, S)


def decode(
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
    bug: str | None = None,
) -> None:
    """The contract in fp32 torch, with the planted bug ``bug`` (None: correct)."""
    if bug is not None and bug not in BUGS:
        raise ValueError(f"unknown planted bug {bug!r}; known: {PLANTED}")
    B, D = mixed_qkv.shape
    HV = state.shape[1]
    if state_layout == "vk":
        V, K = state.shape[2], state.shape[3]
    else:
        K, V = state.shape[2], state.shape[3]
    H = (D - HV * V) // (2 * K)
    dev = mixed_qkv.device
    f32 = torch.float32

    # Which rows run, and the slot each one uses.
    idx = state_indices.to(torch.int64)
    rows = torch.arange(B, device=dev)
    live = idx > 0 if bug == "slot0_as_padding" else idx >= 0
    handled = torch.ones(B, dtype=torch.bool, device=dev)
    if bug == "batch_tail":
        handled = rows < (B // ROW_BLOCK) * ROW_BLOCK
    computed = (torch.ones_like(live) if bug == "padding_slot_wrap" else live) & handled
    pad_rows = (~live & handled).nonzero().flatten()
    r = computed.nonzero().flatten()
    slots = (rows if bug == "slot_from_row" else idx)[r]  # -1 wraps to N - 1 in torch
    R = r.numel()

    # Masks of the modelled tail bugs (all-true when the bug is off).
    Kb = _floor_pow2(K) if bug == "k_tail" else K
    Vb = _floor_pow2(V) if bug == "v_tail" else V
    kmask = (torch.arange(K, device=dev) < Kb).to(f32)
    vmask = (torch.arange(V, device=dev) < Vb).to(f32)

    # q, k, v through the mixed_qkv view (its row stride honoured unless the bug).
    qkv = _dense_rows(mixed_qkv) if bug == "qkv_row_stride" else mixed_qkv
    x = qkv[r].to(f32)
    q = x[:, : H * K].reshape(R, H, K) * kmask
    k = x[:, H * K : 2 * H * K].reshape(R, H, K) * kmask
    v = x[:, 2 * H * K :].reshape(R, HV, V) * vmask
    if bug == "scale_before_norm":
        q = q * scale
    if use_qk_l2norm:
        q = _l2norm(q, bug == "eps_outside_sqrt")
        k = _l2norm(k, bug == "eps_outside_sqrt")
        if bug == "input_modified":  # normalised "in place" in the packed buffer
            mixed_qkv[r, : H * K] = q.reshape(R, -1).to(mixed_qkv.dtype)
            mixed_qkv[r, H * K : 2 * H * K] = k.reshape(R, -1).to(mixed_qkv.dtype)
    if bug != "scale_before_norm":
        q = q * scale
    hv = torch.arange(HV, device=dev)
    key_head = hv % H if bug == "gqa_mod" else hv // (HV // H)
    q, k = q[:, key_head], k[:, key_head]  # [R, HV, K]

    # Gates.
    av = _dense_rows(a) if bug == "ab_row_stride" else a
    bv = _dense_rows(b) if bug == "ab_row_stride" else b
    dt = dt_bias.to(torch.bfloat16) if bug == "dt_bias_bf16" else dt_bias
    al = A_log.to(torch.bfloat16) if bug == "a_log_bf16" else A_log
    xg = av[r].to(f32) + dt.to(f32)
    g = -torch.exp(al.to(f32)) * _softplus(xg, bug == "softplus_overflow")
    beta = torch.sigmoid(bv[r].to(f32))
    if bug == "beta_bf16":
        beta = beta.to(torch.bfloat16).to(f32)
    decay = torch.exp(g)[..., None, None]
    beta = beta[..., None]

    # The delta rule on the gathered states [R, HV, K, V].
    perm = None
    if bug == "nondeterministic":
        # Consecutive calls always reduce in opposite orders, so a case either
        # shows the bug on every pair of runs or never (it needs K >= 3).
        perm = torch.arange(K, device=dev)
        if next(_CALLS) % 2:
            perm = perm.flip(0)
    layout = state_layout
    if bug == "transposed_state":
        layout = "kv" if state_layout == "vk" else "vk"
    pool = _kv_view(state, layout, K, V)
    S0 = pool[slots].to(f32) * kmask[:, None] * vmask
    if bug == "decay_after_update":
        u = (v - _dot_k(k, S0, perm)) * beta
        S_dec = S0 * decay
        S_new = (S0 + k[..., :, None] * u[..., None, :]) * decay
    else:
        S_dec = S0 * decay
        u = (v - _dot_k(k, S_dec, perm)) * beta
        S_new = S_dec + k[..., :, None] * u[..., None, :]
    o = _dot_k(q, S_dec if bug == "output_old_state" else S_new, perm)

    # Stores.
    if bug == "state_bf16":
        S_new = S_new.to(torch.bfloat16)
    pool[:, :, :Kb, :Vb][slots] = S_new[:, :, :Kb, :Vb].to(state.dtype)
    if bug == "out_bf16":
        o = o.to(torch.bfloat16)
    out[:, :, :Vb][r] = o[..., :Vb].to(out.dtype)
    if bug != "padding_unwritten":
        out[pad_rows] = 0
    if bug == "out_of_bounds_write":
        spill = _next_pow2(V) - V
        if spill and out.numel():
            flat = out.as_strided((out.numel() + spill,), (1,), out.storage_offset())
            flat[out.numel() :] = 0  # the masked-off columns of the last head


def _contract(bug: str | None):
    """A module-level contract callable running ``decode`` with ``bug``."""

    def fn(
        mixed_qkv,
        a,
        b,
        A_log,
        dt_bias,
        state,
        state_indices,
        out,
        *,
        scale,
        use_qk_l2norm=True,
        state_layout="vk",
    ) -> None:
        decode(
            mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out,
            scale=scale, use_qk_l2norm=use_qk_l2norm, state_layout=state_layout, bug=bug,
        )  # fmt: skip

    fn.__name__ = fn.__qualname__ = bug or "correct"
    fn.__doc__ = "The decode contract without planted bugs." if bug is None else BUGS[bug].doc
    return fn


correct = _contract(None)
qkv_row_stride = _contract("qkv_row_stride")
ab_row_stride = _contract("ab_row_stride")
slot_from_row = _contract("slot_from_row")
padding_unwritten = _contract("padding_unwritten")
padding_slot_wrap = _contract("padding_slot_wrap")
slot0_as_padding = _contract("slot0_as_padding")
gqa_mod = _contract("gqa_mod")
scale_before_norm = _contract("scale_before_norm")
eps_outside_sqrt = _contract("eps_outside_sqrt")
dt_bias_bf16 = _contract("dt_bias_bf16")
a_log_bf16 = _contract("a_log_bf16")
softplus_overflow = _contract("softplus_overflow")
beta_bf16 = _contract("beta_bf16")
decay_after_update = _contract("decay_after_update")
output_old_state = _contract("output_old_state")
transposed_state = _contract("transposed_state")
k_tail = _contract("k_tail")
v_tail = _contract("v_tail")
batch_tail = _contract("batch_tail")
state_bf16 = _contract("state_bf16")
out_bf16 = _contract("out_bf16")
out_of_bounds_write = _contract("out_of_bounds_write")
input_modified = _contract("input_modified")
nondeterministic = _contract("nondeterministic")

assert all(callable(globals().get(name)) for name in PLANTED)
