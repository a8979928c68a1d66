"""FlashInfer's GDN decode kernels as implementations of the decode contract.

Install with ``pip install gdn-harness[flashinfer]``; needs a CUDA device of
compute capability 9.0 or newer (FlashInfer's GDN kernels are CuTe DSL).
Entry point: ``flashinfer.gdn_decode.gated_delta_rule_decode_pretranspose``
(state ``[pool, HV, V, K]``, layout ``vk``), called with its state pool
(``initial_state``) and ``initial_state_indices``, ``state=None``::

    (q, k, v, state, A_log, a, dt_bias, b, scale=None, output=None,
     use_qk_l2norm=True, initial_state=None, initial_state_indices=None, ...)
     -> (output [B, 1, HV, V], initial_state)

q/k/v are ``[B, 1, H|HV, K|V]`` views of ``mixed_qkv`` (its row stride kept)
and a/b ``[B, 1, HV]`` views of the contract's a/b. FlashInfer assumes
aligned q/k/v (32 bytes); a view that is not is handed over as an aligned
copy, as SGLang's FlashInfer backend does. ``A_log`` must be fp32 and
``dt_bias`` bf16 or fp32: parameters in another dtype are widened to fp32,
exactly. The output is taken as FlashInfer returns it (converted by
FlashInfer to the dtype of q) and copied into ``out``.

The two state dtypes take two paths with different padding conventions,
so they are two implementations:

``flashinfer`` (fp32 state)
    The "legacy" pretranspose kernel: a negative index is padding, its
    output row is written as zeros and no slot is touched, which is the
    contract's own convention. K and V must be at least 128 and V a
    multiple of 8, and the slot stride a multiple of 4 elements.
``flashinfer-bf16`` (bf16 state, K = V = 128)
    The bf16-state kernel sends every negative index to slot 0, a
    sacrificial null buffer that it reads and writes, and computes an
    output row that is undefined. That is a null block (``pad:
    nonpositive``: no live row ever has slot 0) whose padding rows are not
    the caller's (``pad_output: unwritten``). The adapter restores slot 0
    after the call and copies only the live rows of the output into
    ``out``, so the harness checks everything FlashInfer promises and
    nothing it documents as undefined.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch

from harness.impls.adapters import _outside

INSTALL_HINT = "FlashInfer is not installed (pip install gdn-harness[flashinfer])"
MODULES = ("flashinfer.gdn_decode",)
OP = "gated_delta_rule_decode_pretranspose"
ALIGN = 32  # bytes FlashInfer assumes for q/k/v
LAYOUT_REASON = (
    "FlashInfer's pretranspose decode stores the state as [pool, HV, V, K] (layout vk) only"
)


def _cuda_reason() -> str | None:
    if not torch.cuda.is_available():
        return "FlashInfer's GDN decode kernels need a CUDA device (compute capability 9.0+)"
    major, minor = torch.cuda.get_device_capability()
    if major < 9:
        return f"FlashInfer's GDN decode kernels need compute capability 9.0+, not {major}.{minor}"
    return None


_module, _op = _outside.import_first("flashinfer", MODULES, OP, INSTALL_HINT, "flashinfer-python")
if "initial_state_indices" not in inspect.signature(_op).parameters:
    raise ImportError(
        f"flashinfer {_outside.installed_version('flashinfer-python')}: {OP} has no state "
        "pool (initial_state_indices); a newer FlashInfer is needed"
    )
if _cuda_reason():
    raise ImportError(_cuda_reason())
# FlashInfer swallows the import errors of its CuTe DSL kernels and falls back
# to paths that then fail per call; say what is missing when it loads instead.
KERNEL_FLAGS = {
    "_PRETRANSPOSE_AVAILABLE": "flashinfer.gdn_kernels.gdn_decode_pretranspose",
    "_GDN_DECODE_BF16_STATE_AVAILABLE": "flashinfer.gdn_kernels.gdn_decode_bf16_state",
}


def _kernels_missing(module: Any) -> str | None:
    """Why FlashInfer's decode kernels did not import, or None when they did."""
    for flag, kernels in KERNEL_FLAGS.items():
        if getattr(module, flag, True):
            continue
        try:
            importlib.import_module(kernels)
        except Exception as exc:  # the error FlashInfer hid
            return f"FlashInfer's decode kernels ({kernels}) do not import: {exc!r}"
        return f"FlashInfer's decode kernels ({kernels}) did not import when it loaded"
    return None


if _kernels_missing(_module):
    raise ImportError(_kernels_missing(_module))


def _common_unsupported(case: Any) -> str | None:
    if case.layout.state_layout != "vk":
        return LAYOUT_REASON
    if case.act_dtype not in ("bf16", "fp16"):
        return f"FlashInfer takes q/k/v/a/b in bf16 or fp16 only, not {case.act_dtype}"
    if case.H <= 0 or case.HV % case.H:
        return f"FlashInfer needs HV to be a multiple of H (HV={case.HV}, H={case.H})"
    return None


def unsupported_fp32(case: Any) -> str | None:
    """What the fp32-state path rejects: other state dtypes, K or V below 128,
    V not a multiple of 8, a slot stride that is not a multiple of 4 elements."""
    reason = _common_unsupported(case)
    if reason:
        return reason
    if case.state_dtype != "fp32":
        return f"the fp32-state path of FlashInfer (state {case.state_dtype}: see flashinfer-bf16)"
    if case.K < 128 or case.V < 128 or case.V % 8:
        return (
            "FlashInfer's fp32-state decode needs K, V >= 128 and V % 8 == 0 "
            f"(K={case.K}, V={case.V})"
        )
    if (case.HV * case.K * case.V + case.layout.state_slot_pad) % 4:
        return "FlashInfer's fp32-state decode needs a slot stride that is a multiple of 4"
    return None


def unsupported_bf16(case: Any) -> str | None:
    """What the bf16-state path rejects: other state dtypes, K or V other than 128."""
    reason = _common_unsupported(case)
    if reason:
        return reason
    if case.state_dtype != "bf16":
        return f"the bf16-state path of FlashInfer (state {case.state_dtype}: see flashinfer)"
    if case.K != 128 or case.V != 128:
        return f"FlashInfer's bf16-state decode has K = V = 128 only (K={case.K}, V={case.V})"
    return None


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when FlashInfer's alignment holds, else an aligned copy."""
    if t.data_ptr() % ALIGN == 0 and (t.stride(0) * t.element_size()) % ALIGN == 0:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _fp32(p: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> torch.Tensor:
    return p if p.dtype in allowed else p.float()


def _call(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, scale, use_qk_l2norm, layout):
    """Run FlashInfer on the pool; returns its output as ``[B, HV, V]``."""
    _outside.require_vk(layout, LAYOUT_REASON)
    H, HV, K, V = _outside.dims(mixed_qkv, state)
    q, k, v = (_aligned(t).unsqueeze(1) for t in _outside.split_qkv(mixed_qkv, H, HV, K, V))
    output, _ = _op(
        q=q,
        k=k,
        v=v,
        state=None,
        A_log=_fp32(A_log, (torch.float32,)),
        a=a.unsqueeze(1),
        dt_bias=_fp32(dt_bias, (torch.float32, torch.bfloat16)),
        b=b.unsqueeze(1),
        scale=float(scale),
        use_qk_l2norm=bool(use_qk_l2norm),
        initial_state=state,
        initial_state_indices=state_indices,
    )
    return output.view(mixed_qkv.shape[0], HV, V)


def flashinfer_decode(
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
    """The contract through FlashInfer's fp32-state pretranspose decode."""
    if mixed_qkv.shape[0] == 0:
        return
    fresh = _call(
        mixed_qkv, a, b, A_log, dt_bias, state, state_indices, scale, use_qk_l2norm, state_layout
    )
    out.copy_(fresh)


def flashinfer_bf16_decode(
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
    """The contract through FlashInfer's bf16-state decode, slot 0 its null block."""
    if mixed_qkv.shape[0] == 0:
        return
    null_slot = state[0].clone()  # FlashInfer's sacrificial slot: padding rows scribble on it
    fresh = _call(
        mixed_qkv, a, b, A_log, dt_bias, state, state_indices, scale, use_qk_l2norm, state_layout
    )
    state[0].copy_(null_slot)
    live = _outside.live_rows(state_indices, _outside.PAD_NONPOSITIVE)
    _outside.keep_padding_rows(out, fresh, live)


_outside.declare(
    flashinfer_decode,
    pad=_outside.PAD_NEGATIVE,
    pad_output=_outside.OUT_ZERO,
    unsupported=unsupported_fp32,
)
_outside.declare(
    flashinfer_bf16_decode,
    pad=_outside.PAD_NONPOSITIVE,
    pad_output=_outside.OUT_UNWRITTEN,
    unsupported=unsupported_bf16,
)

__all__ = [
    "INSTALL_HINT",
    "flashinfer_bf16_decode",
    "flashinfer_decode",
    "unsupported_bf16",
    "unsupported_fp32",
]
