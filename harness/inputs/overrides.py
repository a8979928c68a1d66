"""Argument overrides for error cases: one mutator per key of ``OVERRIDE_KEYS``.

An error case (``CaseSpec.overrides``) breaks one argument of otherwise valid
inputs, so that the wrappers' validation must reject it with a message that
names the argument. Each mutator changes a clone of the built inputs, giving
any new tensor guarded storage of its own so the guard checks still apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from harness.core.dtypes import dtype as dtype_row
from harness.inputs.buffers import (
    BufferLayout,
    GuardedBuffer,
    ViewRef,
    allocate,
    dense,
    dense_strides,
    materialize,
)
from harness.inputs.build import CaseInputs

OVERRIDE_KEYS: dict[str, str] = {
    "state_layout": "string passed as the state_layout keyword, whatever it is",
    "out_dtype": "bf16/fp16/fp32: out becomes a new dense [B, HV, V] tensor of that dtype",
    "out_shape": "list of ints: out becomes a new dense tensor of that shape",
    "out_alias": "'state' or 'mixed_qkv': out becomes a view overlapping that tensor's memory",
    "index_dtype": "dtype name (e.g. int16, fp32): state_indices converted to it",
    "qkv_last_stride": "int >= 1: mixed_qkv rebuilt with that stride on its last dim",
    "a_rows": "int: a rebuilt with that many rows (copied rows, zeros beyond)",
    "A_log_stride": "int >= 1: A_log becomes a non-dense view with that stride",
    "qkv_width_delta": "int: mixed_qkv narrower (<0) or wider (>0) by that many columns",
    "state_ndim": "int >= 1: state viewed with that many dims (merged or leading 1s)",
    "a_device": "device string (e.g. 'meta'): a moved to that device",
}


def _dtype(name: object) -> torch.dtype:
    return dtype_row(name).torch  # type: ignore[arg-type]


def _positive(key: str, value: object) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"override {key} must be an int >= 1, got {value!r}")
    return value


def _new_dense(
    inp: CaseInputs, name: str, dtype: torch.dtype, size: tuple[int, ...]
) -> tuple[GuardedBuffer, ViewRef]:
    """A fresh guarded dense buffer for argument ``name``, zero-filled."""
    lay, ref = dense(name, dtype, size)
    buf = allocate(lay, inp.device)
    materialize(buf, ref).zero_()
    return buf, ref


def _copy_overlap(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy the common leading block of two same-rank tensors."""
    if src.device.type == "meta" or dst.dim() != src.dim():
        return
    block = tuple(slice(0, min(x, y)) for x, y in zip(dst.shape, src.shape, strict=True))
    dst[block].copy_(src[block])


def _ov_state_layout(inp: CaseInputs, value: object) -> None:
    inp.state_layout = str(value)


def _ov_out_dtype(inp: CaseInputs, value: object) -> None:
    buf, ref = _new_dense(inp, "out", _dtype(value), tuple(inp.out.shape))
    inp.set_view("out", buf, ref)
    inp.poison_out()


def _ov_out_shape(inp: CaseInputs, value: object) -> None:
    size = tuple(int(x) for x in value)  # type: ignore[union-attr]
    buf, ref = _new_dense(inp, "out", inp.out.dtype, size)
    inp.set_view("out", buf, ref)
    inp.poison_out()


def _ov_out_alias(inp: CaseInputs, value: object) -> None:
    target = inp.refs.get(str(value)) if value in ("state", "mixed_qkv") else None
    if target is None:
        raise ValueError(f"out_alias must be 'state' or 'mixed_qkv' (a buffer view), got {value!r}")
    dtype, size = inp.out.dtype, tuple(inp.out.shape)
    start = target.offset * target.dtype.itemsize
    if start % dtype.itemsize:
        raise ValueError(f"out_alias={value}: offset not aligned for {dtype}")
    ref = ViewRef(target.buffer, dtype, size, dense_strides(size), start // dtype.itemsize)
    flat = inp.buffers[target.buffer].flat
    if (ref.offset + math.prod(size)) * dtype.itemsize > flat.numel() * flat.element_size():
        raise ValueError(f"out_alias={value}: {value} is too small to hold out")
    inp.set_view("out", None, ref)


def _ov_index_dtype(inp: CaseInputs, value: object) -> None:
    dtype = _dtype(value)
    buf, ref = _new_dense(inp, "state_indices", dtype, tuple(inp.state_indices.shape))
    materialize(buf, ref).copy_(inp.state_indices.to(dtype))
    inp.set_view("state_indices", buf, ref)


def _ov_qkv_last_stride(inp: CaseInputs, value: object) -> None:
    step, old = _positive("qkv_last_stride", value), inp.mixed_qkv
    B, D = old.shape
    width = max(1, (D - 1) * step + 1)
    lay = BufferLayout("mixed_qkv", old.dtype, B, width)
    buf, ref = allocate(lay, old.device), lay.ref((B, D), (width, step))
    materialize(buf, ref).copy_(old)
    inp.set_view("mixed_qkv", buf, ref)


def _ov_a_rows(inp: CaseInputs, value: object) -> None:
    rows = int(value)  # type: ignore[call-overload]
    buf, ref = _new_dense(inp, "a", inp.a.dtype, (rows, inp.a.shape[1]))
    _copy_overlap(materialize(buf, ref), inp.a)
    inp.set_view("a", buf, ref)


def _ov_A_log_stride(inp: CaseInputs, value: object) -> None:
    step, old = _positive("A_log_stride", value), inp.A_log
    HV = old.shape[0]
    lay = BufferLayout("A_log", old.dtype, 1, max(1, (HV - 1) * step + 1))
    buf, ref = allocate(lay, old.device), lay.ref((HV,), (step,))
    materialize(buf, ref).copy_(old)
    inp.set_view("A_log", buf, ref)


def _ov_qkv_width_delta(inp: CaseInputs, value: object) -> None:
    B, D = inp.mixed_qkv.shape
    width = D + int(value)  # type: ignore[call-overload]
    if width < 0:
        raise ValueError(f"qkv_width_delta={value} makes mixed_qkv narrower than 0 columns")
    buf, ref = _new_dense(inp, "mixed_qkv", inp.mixed_qkv.dtype, (B, width))
    _copy_overlap(materialize(buf, ref), inp.mixed_qkv)
    inp.set_view("mixed_qkv", buf, ref)


def _ov_state_ndim(inp: CaseInputs, value: object) -> None:
    ndim, ref = _positive("state_ndim", value), inp.refs["state"]
    if ref is None or len(ref.size) != 4:
        raise ValueError("state_ndim applies to the built 4-dim state view only")
    (N, HV, d2, d3), slot = ref.size, ref.stride[0]
    shapes = {
        1: ((N * slot,), (1,)),
        2: ((N, HV * d2 * d3), (slot, 1)),
        3: ((N, HV, d2 * d3), (slot, d2 * d3, 1)),
        4: (ref.size, ref.stride),
    }
    lead = max(0, ndim - 4)
    size, stride = shapes[min(ndim, 4)]
    size, stride = (1,) * lead + size, (N * slot,) * lead + stride
    inp.set_view("state", None, ViewRef(ref.buffer, ref.dtype, size, stride, ref.offset))


def _ov_a_device(inp: CaseInputs, value: object) -> None:
    inp.set_loose("a", inp.a.to(str(value)))


MUTATORS = {
    "state_layout": _ov_state_layout,
    "out_dtype": _ov_out_dtype,
    "out_shape": _ov_out_shape,
    "out_alias": _ov_out_alias,
    "index_dtype": _ov_index_dtype,
    "qkv_last_stride": _ov_qkv_last_stride,
    "a_rows": _ov_a_rows,
    "A_log_stride": _ov_A_log_stride,
    "qkv_width_delta": _ov_qkv_width_delta,
    "state_ndim": _ov_state_ndim,
    "a_device": _ov_a_device,
}
assert set(MUTATORS) == set(OVERRIDE_KEYS)


def apply_overrides(
    inputs: CaseInputs, overrides: Mapping[str, object] | Iterable[tuple[str, object]]
) -> CaseInputs:
    """Raw argument changes for error cases (``CaseSpec.overrides``), applied in
    order to a clone of ``inputs`` (which is left as it was). Keys are listed
    in :data:`OVERRIDE_KEYS`; an unknown key raises ValueError."""
    items = list(overrides.items() if isinstance(overrides, Mapping) else overrides)
    for key, _ in items:
        if key not in MUTATORS:
            raise ValueError(f"unknown override {key!r}; known: {', '.join(OVERRIDE_KEYS)}")
    result = inputs.clone()
    for key, value in items:
        MUTATORS[key](result, value)
    return result
