"""Argument validation shared by the packed and baseline wrappers.

Both wrappers promise the same contract (docs/design.md), so they reject the same
bad arguments with the same messages. Every error is a ``ValueError`` that
names the argument and says what is wrong, raised before any launch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ACT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
STATE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
INDEX_DTYPES = (torch.int32, torch.int64)
STATE_LAYOUTS = ("vk", "kv")


@dataclass(frozen=True)
class DecodeDims:
    """Sizes of one decode step, derived from the argument shapes."""

    B: int
    H: int
    HV: int
    K: int
    V: int
    N: int


def fail(name: str, what: str) -> None:
    """Raise the ValueError every check uses: ``"<argument>: <what is wrong>"``."""
    raise ValueError(f"{name}: {what}")


def check_layout(state_layout: str) -> None:
    if state_layout not in STATE_LAYOUTS:
        fail("state_layout", f"must be one of {STATE_LAYOUTS}, got {state_layout!r}")


def check_index_dtype(state_indices: torch.Tensor) -> None:
    if state_indices.dtype not in INDEX_DTYPES:
        fail("state_indices", f"dtype must be int32 or int64, got {state_indices.dtype}")


def check_state_pool(state: torch.Tensor, state_layout: str) -> tuple[int, int, int, int]:
    """Dense slots (only ``stride(0)`` may be padded) of positive size; (N, HV, K, V)."""
    if (
        state.stride(3) != 1
        or state.stride(2) != state.shape[3]
        or (state.stride(1) != state.shape[2] * state.shape[3])
    ):
        fail(
            "state",
            "each slot must be dense [HV, *, *] (only stride(0) may be padded), "
            f"got strides {tuple(state.stride())}",
        )
    if state.shape[0] > 1 and state.stride(0) < state.shape[1] * state.shape[2] * state.shape[3]:
        fail("state", f"stride(0)={state.stride(0)} is smaller than one slot")
    N, HV = state.shape[0], state.shape[1]
    if state_layout == "vk":
        V, K = state.shape[2], state.shape[3]
    else:
        K, V = state.shape[2], state.shape[3]
    for name, size in (("K", K), ("V", V), ("HV", HV)):
        if size == 0:
            fail("state", f"{name} must be positive, got shape {tuple(state.shape)}")
    return N, HV, K, V


def _check_ndim(name: str, t: torch.Tensor, ndim: int, shape_doc: str) -> None:
    if not isinstance(t, torch.Tensor):
        fail(name, f"expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        fail(name, f"expected {ndim} dims {shape_doc}, got shape {tuple(t.shape)}")


def _check_last_dense(name: str, t: torch.Tensor) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        fail(name, f"last dim must be dense (stride 1), got strides {tuple(t.stride())}")


def _check_dense(name: str, t: torch.Tensor) -> None:
    if not t.is_contiguous():
        fail(name, f"must be dense (contiguous), got strides {tuple(t.stride())}")


def _span(t: torch.Tensor) -> tuple[int, int]:
    """Byte range [lo, hi) that a strided tensor can touch."""
    start = t.data_ptr()
    if t.numel() == 0:
        return start, start
    extent = sum((s - 1) * st for s, st in zip(t.shape, t.stride(), strict=True)) + 1
    return start, start + extent * t.element_size()


def _overlaps(x: torch.Tensor, y: torch.Tensor) -> bool:
    if x.device != y.device:
        return False
    (a0, a1), (b0, b1) = _span(x), _span(y)
    return a0 < b1 and b0 < a1


def check_decode_args(
    mixed_qkv: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
    state: torch.Tensor,
    state_indices: torch.Tensor,
    out: torch.Tensor,
    state_layout: str,
) -> DecodeDims:
    """Validate every argument of the contract and return the derived sizes."""
    check_layout(state_layout)
    _check_ndim("mixed_qkv", mixed_qkv, 2, "[B, 2*H*K + HV*V]")
    _check_ndim("a", a, 2, "[B, HV]")
    _check_ndim("b", b, 2, "[B, HV]")
    _check_ndim("A_log", A_log, 1, "[HV]")
    _check_ndim("dt_bias", dt_bias, 1, "[HV]")
    _check_ndim("state", state, 4, "[N, HV, V, K] (vk) or [N, HV, K, V] (kv)")
    _check_ndim("state_indices", state_indices, 1, "[B]")
    _check_ndim("out", out, 3, "[B, HV, V]")

    tensors = {
        "mixed_qkv": mixed_qkv,
        "a": a,
        "b": b,
        "A_log": A_log,
        "dt_bias": dt_bias,
        "state": state,
        "state_indices": state_indices,
        "out": out,
    }
    device = mixed_qkv.device
    for name, t in tensors.items():
        if t.device != device:
            fail(name, f"is on {t.device}, but mixed_qkv is on {device}")

    act = mixed_qkv.dtype
    if act not in ACT_DTYPES:
        fail("mixed_qkv", f"dtype must be fp16, bf16 or fp32, got {act}")
    for name in ("a", "b"):
        if tensors[name].dtype != act:
            fail(name, f"dtype {tensors[name].dtype} differs from mixed_qkv's {act}")
    for name in ("A_log", "dt_bias"):
        if tensors[name].dtype not in (torch.float32, act):
            fail(
                name, f"dtype must be fp32 or the activation dtype {act}, got {tensors[name].dtype}"
            )
    if state.dtype not in STATE_DTYPES:
        fail("state", f"dtype must be fp32, bf16 or fp16, got {state.dtype}")
    check_index_dtype(state_indices)
    if out.dtype != act:
        fail("out", f"dtype {out.dtype} differs from mixed_qkv's {act}")

    for name in ("mixed_qkv", "a", "b"):
        _check_last_dense(name, tensors[name])
    for name in ("A_log", "dt_bias", "out"):
        _check_dense(name, tensors[name])
    N, HV, K, V = check_state_pool(state, state_layout)
    B = mixed_qkv.shape[0]
    for name in ("a", "b", "state_indices", "out"):
        if tensors[name].shape[0] != B:
            fail(name, f"batch size {tensors[name].shape[0]} differs from mixed_qkv's {B}")
    for name in ("a", "b", "A_log", "dt_bias"):
        if tensors[name].shape[-1] != HV:
            fail(name, f"has {tensors[name].shape[-1]} heads, state has HV={HV}")
    if tuple(out.shape) != (B, HV, V):
        fail("out", f"shape must be {(B, HV, V)}, got {tuple(out.shape)}")
    qk_width = mixed_qkv.shape[1] - HV * V
    if qk_width <= 0 or qk_width % (2 * K):
        fail(
            "mixed_qkv", f"width {mixed_qkv.shape[1]} is not 2*H*K + HV*V for K={K}, V={V}, HV={HV}"
        )
    H = qk_width // (2 * K)
    if HV % H:
        fail("mixed_qkv", f"HV={HV} is not a multiple of H={H}")

    for name in ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state", "state_indices"):
        if _overlaps(out, tensors[name]):
            fail("out", f"overlaps {name}")
    for name in ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state_indices"):
        if _overlaps(state, tensors[name]):
            fail("state", f"overlaps {name}")
    return DecodeDims(B=B, H=H, HV=HV, K=K, V=V, N=N)
