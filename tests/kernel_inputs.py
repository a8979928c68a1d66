"""Decode-step inputs and the oracle check for the kernel tests (test_baseline.py,
test_packed_decode.py).

The inputs are the harness's own (``harness.inputs.build_inputs``), so the
kernels meet exactly the layouts a case file describes: mixed_qkv as a column
slice of a wider buffer, a and b as views of one packed buffer, a state pool
with padding after each slot, and sentinel guards around every buffer that
``CaseInputs.guard_violations`` checks bit-exactly. One step is added here:
the mixed_qkv rows of padding rows are set to NaN, so that a kernel reading a
row it must skip shows in its outputs.

Results are held to the harness's per-element bound
(``harness.check.tolerance``) against the float64 oracle and its magnitudes,
and, as before the kernel tests shared the harness's builder, to a bound on
the largest error relative to max|oracle| (``REL_TOL``), so that nothing is
looser than it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from factories import spec

from harness.check.tolerance import resolve
from harness.core.dtypes import DTYPES
from harness.core.layouts import PAD_SLOT_ID, VK
from harness.core.spec import CaseSpec, Tolerance
from harness.inputs import CaseInputs, build_inputs
from reference import oracle

# The largest error allowed relative to max|oracle|, by the dtype of the stored result.
REL_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def decode_spec(
    *,
    slots: Sequence[int],
    N: int,
    layout: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    **fields: Any,
) -> CaseSpec:
    """A case of one decode step whose rows name ``slots`` (``PAD_SLOT_ID``: padding)
    in a pool of ``N``; fp32 activations and a state of N(0, 0.25) unless told."""
    return spec(
        B=len(slots),
        pool=N,
        slots={"indices": tuple(slots)},
        layout=layout or {},
        values={"state_std": 0.5, **(values or {})},
        **{"act_dtype": "fp32", **fields},
    )


def decode_inputs(case: CaseSpec) -> CaseInputs:
    """The harness's inputs of ``case``, padding rows of mixed_qkv set to NaN."""
    inputs = build_inputs(case)
    pad = inputs.state_indices.to(torch.int64) == PAD_SLOT_ID
    inputs.mixed_qkv[pad] = float("nan")
    return inputs


@dataclass(frozen=True)
class Dims:
    H: int
    HV: int
    K: int
    V: int


def dims(inputs: CaseInputs) -> Dims:
    """Head counts and sizes, read off the arguments' shapes."""
    HV, V = inputs.out.shape[1:]
    K = inputs.state.shape[3] if inputs.state_layout == VK else inputs.state.shape[2]
    H = (inputs.mixed_qkv.shape[1] - HV * V) // (2 * K)
    return Dims(H, HV, K, V)


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy().copy()


@dataclass
class OracleStep:
    """The oracle's out [B, HV, V] and state pool (in the arguments' layout), float64,
    with the magnitude of every element (zero where nothing is computed)."""

    out: np.ndarray
    state: np.ndarray
    out_mag: np.ndarray
    state_mag: np.ndarray


def oracle_step(
    inputs: CaseInputs,
    *,
    scale: float | None = None,
    use_qk_l2norm: bool | None = None,
    qkv: np.ndarray | None = None,
) -> OracleStep:
    """The float64 oracle on the stored input values (``qkv`` replaces mixed_qkv's);
    ``inputs`` is not touched. ``scale`` and ``use_qk_l2norm`` default to the inputs'."""
    scale = inputs.scale if scale is None else scale
    norm = inputs.use_qk_l2norm if use_qk_l2norm is None else use_qk_l2norm
    qkv = np64(inputs.mixed_qkv) if qkv is None else qkv
    a, b, A_log, dt_bias = (np64(t) for t in (inputs.a, inputs.b, inputs.A_log, inputs.dt_bias))
    idx = inputs.state_indices.to(torch.int64).numpy()
    state = np64(inputs.state)
    out = np.zeros(tuple(inputs.out.shape))
    layout = inputs.state_layout
    oracle.decode_step(
        qkv, a, b, A_log, dt_bias, state, idx, out,
        scale=scale, use_qk_l2norm=norm, state_layout=layout,
    )  # fmt: skip
    out_mag, state_mag = np.zeros_like(out), np.zeros_like(state)
    rows = np.flatnonzero(idx >= 0)
    d = dims(inputs)
    H = (qkv.shape[1] - d.HV * d.V) // (2 * d.K)  # of ``qkv``, as decode_step reads it
    if rows.size:
        res = oracle.decode_rows(
            qkv[rows], a[rows], b[rows], A_log, dt_bias,
            oracle.to_kv(np64(inputs.state)[idx[rows]], layout),
            H=H, scale=scale, use_qk_l2norm=norm, with_magnitude=True,
        )  # fmt: skip
        out_mag[rows] = res.out_mag
        state_mag[idx[rows]] = oracle.to_kv(res.state_mag, layout)
    return OracleStep(out, state, out_mag, state_mag)


def dtype_name(dtype: torch.dtype) -> str:
    """The harness's name (``bf16``, ...) for a torch dtype."""
    return next(n for n, d in DTYPES.items() if d.torch_name == str(dtype).split(".")[-1])


def assert_close(what: str, got: torch.Tensor, ref: np.ndarray, mag: np.ndarray, K: int) -> None:
    """``got`` is finite, within the harness's per-element bound of ``ref`` and
    within ``REL_TOL`` of max|ref|."""
    g = np64(got)
    assert np.isfinite(g).all(), f"{what}: non-finite values"
    if ref.size == 0:
        return
    err = np.abs(g - ref)
    tol = resolve(Tolerance(), dtype_name(got.dtype), K)
    ratio = err / tol.bound(ref, mag)
    worst = tuple(int(i) for i in np.unravel_index(int(ratio.argmax()), ratio.shape))
    assert ratio.max() <= 1.0, (
        f"{what}: error {err[worst]:.3e} at {worst} is {ratio.max():.3g} x the bound "
        f"{tol.describe()}"
    )
    rel = REL_TOL[got.dtype] * max(float(np.abs(ref).max()), 1e-30)
    assert err.max() <= rel, f"{what}: max abs err {err.max():.3e} > {rel:.3e} ({got.dtype})"
