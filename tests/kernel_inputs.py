"""Decode-step inputs for the kernel tests (test_baseline.py, test_packed_decode.py).

Both kernels take the same eight arguments, and holding either one to the
float64 oracle needs the same awkward variants of them: mixed_qkv as a column
slice of a wider NaN-filled buffer, a and b as views of one packed buffer, a
state pool with page padding between slots, padding rows whose inputs must
not be read, and guard elements around the pool and the output so that a
stray write shows. Building them here gives both kernels the same inputs from
the same seeds, and a new variant reaches both test files at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.inputs.build import ARG_NAMES

GUARD = 16
"""Elements before and after the state pool and the output that no kernel may write."""

STATE_SENTINEL = -777.0
"""Value of the state pool's guard elements and page padding."""


@dataclass
class DecodeInputs:
    """One decode step's arguments, the buffers behind them, and the sizes the checks need."""

    mixed_qkv: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    A_log: torch.Tensor
    dt_bias: torch.Tensor
    state: torch.Tensor
    state_indices: torch.Tensor
    out: torch.Tensor
    qkv_store: torch.Tensor  # [B, cols] buffer that mixed_qkv is a column slice of
    state_store: torch.Tensor  # flat: GUARD, N page-padded slots, GUARD
    out_store: torch.Tensor  # flat: GUARD, out, GUARD
    layout: str
    H: int
    K: int
    V: int

    def args(self) -> tuple[torch.Tensor, ...]:
        """The eight tensors in the order both decode entry points take them."""
        return tuple(getattr(self, name) for name in ARG_NAMES)


def packed_qkv(
    gen: torch.Generator,
    *,
    B: int,
    width: int,
    qk_cols: int,
    dtype: torch.dtype,
    col_offset: int = 0,
    extra_cols: int = 0,
    qk_scale: float = 1.0,
    pad_rows: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal q|k|v rows of ``width`` columns as a slice of a NaN-filled buffer.

    The first ``qk_cols`` columns (q and k) are multiplied by ``qk_scale``; rows in
    ``pad_rows`` are NaN, since no kernel may read them. Returns (buffer, slice).
    """
    store = torch.full((B, col_offset + width + extra_cols), float("nan"), dtype=dtype)
    qkv = store[:, col_offset : col_offset + width]
    vals = torch.randn(B, width, generator=gen)
    vals[:, :qk_cols] *= qk_scale
    qkv.copy_(vals.to(dtype))
    qkv[list(pad_rows)] = float("nan")
    return store, qkv


def gate_inputs(
    gen: torch.Generator,
    *,
    B: int,
    HV: int,
    act: torch.dtype,
    param_dtype: torch.dtype,
    ab_packed: bool = False,
    b_scale: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, A_log, dt_bias) for the gates.

    a and b are [B, HV] in ``act``, b spread by ``b_scale``; with ``ab_packed`` they
    are the two halves of one [B, 2 * HV] buffer. A_log (uniform in [-1, 1)) and
    dt_bias are [HV] in ``param_dtype``.
    """
    if ab_packed:
        ab = torch.empty(B, 2 * HV, dtype=act)
        a, b = ab[:, :HV], ab[:, HV:]
    else:
        a, b = torch.empty(B, HV, dtype=act), torch.empty(B, HV, dtype=act)
    a.copy_(torch.randn(B, HV, generator=gen).to(act))
    b.copy_((b_scale * torch.randn(B, HV, generator=gen)).to(act))
    A_log = (torch.rand(HV, generator=gen) * 2 - 1).to(param_dtype)
    dt_bias = torch.randn(HV, generator=gen).to(param_dtype)
    return a, b, A_log, dt_bias


def guarded_state_pool(
    gen: torch.Generator,
    *,
    N: int,
    HV: int,
    K: int,
    V: int,
    layout: str,
    dtype: torch.dtype,
    slot_pad: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pool of N slots holding 0.5 * normal values, inside a flat sentinel-filled buffer.

    A slot is [HV, V, K] for layout "vk" and [HV, K, V] for "kv"; ``slot_pad``
    sentinel elements follow each slot and GUARD more sit at both ends of the
    buffer. Returns (buffer, pool view).
    """
    slot_shape = (HV, V, K) if layout == "vk" else (HV, K, V)
    slot_stride = HV * K * V + slot_pad
    store = torch.full((2 * GUARD + N * slot_stride,), STATE_SENTINEL, dtype=dtype)
    strides = (slot_stride, slot_shape[1] * slot_shape[2], slot_shape[2], 1)
    pool = store[GUARD:].as_strided((N, *slot_shape), strides)
    pool.copy_((0.5 * torch.randn(N, *slot_shape, generator=gen)).to(dtype))
    return store, pool


def guarded_out(B: int, HV: int, V: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A NaN-filled [B, HV, V] output inside a flat NaN buffer with GUARD elements at both ends.

    NaN shows any element the kernel leaves unwritten. Returns (buffer, out view).
    """
    store = torch.full((2 * GUARD + B * HV * V,), float("nan"), dtype=dtype)
    return store, store[GUARD : GUARD + B * HV * V].view(B, HV, V)


def decode_inputs(
    *,
    B: int,
    H: int,
    HV: int,
    K: int,
    V: int,
    N: int,
    slots: Sequence[int],
    act: torch.dtype = torch.float32,
    state_dtype: torch.dtype = torch.float32,
    param_dtype: torch.dtype = torch.float32,
    index_dtype: torch.dtype = torch.int32,
    layout: str = "vk",
    qkv_col_offset: int = 0,
    qkv_extra_cols: int = 0,
    qk_scale: float = 1.0,
    ab_packed: bool = False,
    b_scale: float = 2.0,
    slot_pad: int = 0,
    seed: int = 0,
) -> DecodeInputs:
    """Deterministic inputs for one decode step of B rows reading pool slots ``slots``.

    A negative slot marks a padding row, whose mixed_qkv row is NaN. Values are
    drawn from one generator seeded with ``seed``, in argument order.
    """
    assert len(slots) == B
    gen = torch.Generator().manual_seed(seed)
    qkv_store, mixed_qkv = packed_qkv(
        gen, B=B, width=2 * H * K + HV * V, qk_cols=2 * H * K, dtype=act,
        col_offset=qkv_col_offset, extra_cols=qkv_extra_cols, qk_scale=qk_scale,
        pad_rows=[i for i, s in enumerate(slots) if s < 0],
    )  # fmt: skip
    a, b, A_log, dt_bias = gate_inputs(
        gen, B=B, HV=HV, act=act, param_dtype=param_dtype, ab_packed=ab_packed, b_scale=b_scale
    )
    state_store, state = guarded_state_pool(
        gen, N=N, HV=HV, K=K, V=V, layout=layout, dtype=state_dtype, slot_pad=slot_pad
    )
    out_store, out = guarded_out(B, HV, V, act)
    return DecodeInputs(
        mixed_qkv=mixed_qkv, a=a, b=b, A_log=A_log, dt_bias=dt_bias, state=state,
        state_indices=torch.tensor(list(slots), dtype=index_dtype), out=out,
        qkv_store=qkv_store, state_store=state_store, out_store=out_store,
        layout=layout, H=H, K=K, V=V,
    )  # fmt: skip
