"""Where each argument of a case lives: its backing buffers and the views cut from them.

Strides are exactly what ``LayoutSpec`` asks for (column slices of a wider
``mixed_qkv``, packed or padded ``a``/``b``, padding after each state slot);
every column no view covers is a hole that keeps the guard sentinel.
"""

from __future__ import annotations

import torch

from harness.core.dtypes import torch_dtype
from harness.core.layouts import slot_shape
from harness.core.spec import CaseSpec
from harness.inputs.buffers import BufferLayout, ViewRef, dense


def _qkv_layout(spec: CaseSpec, act: torch.dtype) -> tuple[BufferLayout, ViewRef]:
    off, pad, D = spec.layout.qkv_col_offset, spec.layout.qkv_row_pad, spec.qkv_width
    width = off + D + pad
    holes = []
    if off:
        holes.append((0, off, "the unused columns before mixed_qkv"))
    if pad:
        holes.append((off + D, width, "the unused columns after mixed_qkv"))
    lay = BufferLayout("mixed_qkv", act, spec.B, width, tuple(holes))
    return lay, lay.ref((spec.B, D), (width, 1), off)


def _ab_layouts(spec: CaseSpec, act: torch.dtype) -> tuple[list[BufferLayout], dict]:
    B, HV, pad = spec.B, spec.HV, spec.layout.ab_row_pad
    if spec.layout.ab_packed:
        width = 2 * HV + pad
        holes = ((2 * HV, width, "the row padding after a and b"),) if pad else ()
        lay = BufferLayout("ab", act, B, width, holes)
        refs = {"a": lay.ref((B, HV), (width, 1), 0), "b": lay.ref((B, HV), (width, 1), HV)}
        return [lay], refs
    layouts, refs = [], {}
    for name in ("a", "b"):
        holes = ((HV, HV + pad, f"the row padding of {name}"),) if pad else ()
        lay = BufferLayout(name, act, B, HV + pad, holes)
        layouts.append(lay)
        refs[name] = lay.ref((B, HV), (HV + pad, 1))
    return layouts, refs


def _state_layout(spec: CaseSpec) -> tuple[BufferLayout, ViewRef]:
    HV, K, V, pad = spec.HV, spec.K, spec.V, spec.layout.state_slot_pad
    slot = HV * V * K
    holes = ((slot, slot + pad, "slot padding"),) if pad else ()
    dtype = torch_dtype(spec.state_dtype)
    lay = BufferLayout("state", dtype, spec.pool, slot + pad, holes, row_name="slot")
    inner = slot_shape(spec.layout.state_layout, K, V)
    size = (spec.pool, HV, *inner)
    return lay, lay.ref(size, (slot + pad, V * K, inner[1], 1))


def case_layout(spec: CaseSpec) -> tuple[list[BufferLayout], dict[str, ViewRef]]:
    """Every backing buffer of a case and where each argument lives in them."""
    act = torch_dtype(spec.act_dtype)
    param = act if spec.param_dtype == "act" else torch_dtype(spec.param_dtype)
    layouts: list[BufferLayout] = []
    refs: dict[str, ViewRef] = {}
    lay, refs["mixed_qkv"] = _qkv_layout(spec, act)
    layouts.append(lay)
    ab, ab_refs = _ab_layouts(spec, act)
    layouts += ab
    refs.update(ab_refs)
    for name, dtype, size in (
        ("A_log", param, (spec.HV,)),
        ("dt_bias", param, (spec.HV,)),
        ("state_indices", torch_dtype(spec.index_dtype), (spec.B,)),
        ("out", act, (spec.B, spec.HV, spec.V)),
    ):
        lay, refs[name] = dense(name, dtype, size)
        layouts.append(lay)
    lay, refs["state"] = _state_layout(spec)
    layouts.append(lay)
    return layouts, refs


def estimate_bytes(spec: CaseSpec) -> int:
    """Device bytes of one copy of a case's inputs (backing buffers, pads and
    guards included), so runners can skip or chunk cases that would not fit.
    Temporaries of the build (at most a few hundred MiB) are not counted."""
    return sum(lay.nbytes for lay in case_layout(spec)[0])
