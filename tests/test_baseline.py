"""Tests of the unfused baseline (kernels/baseline.py) against the float64 oracle.

They run the Triton kernels under the interpreter on CPU, so shapes stay
small (B <= 5, K and V <= 48 mostly, a few tail shapes up to 100). Each case
builds its inputs from a seed (tests/kernel_inputs.py), hands the baseline
torch tensors and the oracle float64 copies of the same stored values, and
compares. Beyond the values, every case checks that the NaN-poisoned output
is fully written, that padding rows are exact zeros, that every state element
outside the live slots (other slots, page padding between slots, guard
elements) is bit-identical, and that the inputs are left unmodified.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from kernel_inputs import GUARD, DecodeInputs, decode_inputs

import kernels  # noqa: F401  (sets TRITON_INTERPRET before the kernel modules load)
from kernels.baseline import baseline_decode, baseline_gates, baseline_recurrent
from reference.oracle import decode_step, gates

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
# Largest error allowed, as a fraction of max|ref|, for results stored in each
# dtype: a few units of the final rounding (bf16 eps 7.8e-3, fp16 9.8e-4), and
# for fp32 far below any bf16 rounding of an intermediate.
TOL = {F32: 1e-5, F16: 2e-3, BF16: 1e-2}
BITS = {F32: torch.int32, F16: torch.int16, BF16: torch.int16}


def make_case(
    *,
    B: int = 3,
    H: int = 1,
    HV: int = 2,
    K: int = 16,
    V: int = 32,
    N: int | None = None,
    slots: list[int] | None = None,
    **options: Any,
) -> DecodeInputs:
    """``decode_inputs`` with this file's defaults; the pool has one slot more than the batch."""
    slots = list(range(B)) if slots is None else slots
    N = B + 1 if N is None else N
    return decode_inputs(B=B, H=H, HV=HV, K=K, V=V, N=N, slots=slots, **options)


def input_snapshot(case: DecodeInputs) -> dict[str, torch.Tensor]:
    """Copies of the inputs no kernel may modify (all of mixed_qkv's buffer included)."""
    names = ("qkv_store", "a", "b", "A_log", "dt_bias", "state_indices")
    return {name: getattr(case, name).clone() for name in names}


def _np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy().copy()


def oracle(case: DecodeInputs, *, scale: float, use_qk_l2norm: bool = True):
    """Float64 oracle on the stored input values; returns (out, state) in float64."""
    state = _np64(case.state)
    out = np.zeros(tuple(case.out.shape), np.float64)
    decode_step(
        _np64(case.mixed_qkv), _np64(case.a), _np64(case.b), _np64(case.A_log),
        _np64(case.dt_bias), state, case.state_indices.numpy(), out,
        scale=scale, use_qk_l2norm=use_qk_l2norm, state_layout=case.layout,
    )  # fmt: skip
    return out, state


def assert_close(name: str, got: torch.Tensor, ref: np.ndarray, dtype: torch.dtype) -> None:
    got64 = _np64(got)
    assert np.isfinite(got64).all(), f"{name}: non-finite values"
    if ref.size == 0:
        return
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = np.abs(got64 - ref)
    worst = np.unravel_index(int(err.argmax()), err.shape)
    assert err.max() <= TOL[dtype] * scale, (
        f"{name}: max error {err.max():.3e} at {worst} exceeds {TOL[dtype]:g} * max|ref| "
        f"= {TOL[dtype] * scale:.3e}"
    )


def live_mask(case: DecodeInputs) -> torch.Tensor:
    """Elements of state_store that belong to a slot named by a live row."""
    mask = torch.zeros(case.state_store.numel(), dtype=torch.bool)
    slot_elems = case.state[0].numel()
    for s in case.state_indices.tolist():
        if s >= 0:
            start = GUARD + s * case.state.stride(0)
            mask[start : start + slot_elems] = True
    return mask


def run_and_check(
    case: DecodeInputs,
    *,
    scale: float | None = None,
    use_qk_l2norm: bool = True,
) -> None:
    """Run baseline_decode and check values, padding, untouched memory and inputs."""
    scale = case.K**-0.5 if scale is None else scale
    before = input_snapshot(case)
    ref_out, ref_state = oracle(case, scale=scale, use_qk_l2norm=use_qk_l2norm)
    store_before = case.state_store.clone()
    out_guards_before = torch.cat([case.out_store[:GUARD], case.out_store[-GUARD:]]).clone()

    baseline_decode(*case.args(), scale=scale, use_qk_l2norm=use_qk_l2norm,
                    state_layout=case.layout)  # fmt: skip

    idx = case.state_indices.to(torch.int64)
    pad = idx < 0
    assert not torch.isnan(case.out).any(), "output not fully written"
    if pad.any():
        assert torch.equal(case.out[pad], torch.zeros_like(case.out[pad])), "padding rows not zero"
        assert not torch.signbit(case.out[pad]).any(), "padding rows hold -0.0"
    assert_close("out", case.out, ref_out, case.out.dtype)
    live_slots = idx[~pad]
    assert_close("state", case.state[live_slots], ref_state[live_slots.numpy()], case.state.dtype)

    bits = BITS[case.state.dtype]
    untouched = ~live_mask(case)
    assert torch.equal(
        case.state_store.view(bits)[untouched], store_before.view(bits)[untouched]
    ), "state memory outside the live slots changed (other slots, page padding or guards)"
    out_guards = torch.cat([case.out_store[:GUARD], case.out_store[-GUARD:]])
    assert torch.equal(
        out_guards.view(BITS[case.out.dtype]), out_guards_before.view(BITS[case.out.dtype])
    ), "write outside out"

    act_bits = BITS[case.mixed_qkv.dtype]
    assert torch.equal(before["qkv_store"].view(act_bits), case.qkv_store.view(act_bits)), (
        "mixed_qkv buffer modified"
    )
    for name in ("a", "b", "A_log", "dt_bias", "state_indices"):
        assert torch.equal(before[name], getattr(case, name)), f"{name} modified"


# --- values against the oracle ------------------------------------------------------


@pytest.mark.parametrize("layout", ["vk", "kv"])
@pytest.mark.parametrize(
    ("H", "HV", "K", "V"),
    [
        (1, 1, 32, 32),  # K == V: a transposed read shows only in the values
        (2, 2, 48, 48),  # head ratio 1 with H > 1
        (2, 4, 48, 100),  # ratio 2, tails in K and V (V spans several tiles)
        (2, 6, 16, 96),  # ratio 3, small K
    ],
)
def test_matches_oracle_shapes(layout: str, H: int, HV: int, K: int, V: int) -> None:
    case = make_case(B=3, H=H, HV=HV, K=K, V=V, N=5, slots=[3, 0, 1], layout=layout, seed=H + K)
    run_and_check(case)


@pytest.mark.parametrize("act", [F32, F16, BF16], ids=["act32", "act16", "actbf16"])
@pytest.mark.parametrize("state_dtype", [F32, BF16, F16], ids=["st32", "stbf16", "st16"])
def test_dtypes(act: torch.dtype, state_dtype: torch.dtype) -> None:
    # Alternate layout and index dtype across the grid so each meets every dtype.
    n = [F32, F16, BF16].index(act) + [F32, BF16, F16].index(state_dtype)
    case = make_case(
        B=3, H=1, HV=2, K=16, V=32, N=4, slots=[2, 0, 3], act=act, state_dtype=state_dtype,
        layout=("vk", "kv")[n % 2], index_dtype=(torch.int32, torch.int64)[(n // 2) % 2],
        seed=n,
    )  # fmt: skip
    run_and_check(case)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("act", [BF16, F16])
def test_params_in_activation_dtype(index_dtype: torch.dtype, act: torch.dtype) -> None:
    case = make_case(B=2, H=1, HV=3, K=16, V=16, act=act, param_dtype=act,
                     index_dtype=index_dtype, seed=7)  # fmt: skip
    run_and_check(case)


# --- padding and slot handling ------------------------------------------------------


@pytest.mark.parametrize("layout", ["vk", "kv"])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_padding_rows(layout: str, index_dtype: torch.dtype) -> None:
    # Slot 0 is live; the last slot (5) is named by no row, so slot -1 must
    # not wrap to it; padding rows' inputs are NaN and must not be read.
    case = make_case(B=5, H=1, HV=2, K=16, V=32, N=6, slots=[2, -1, 0, -1, 4],
                     layout=layout, index_dtype=index_dtype, seed=11)  # fmt: skip
    run_and_check(case)


def test_all_rows_padding() -> None:
    case = make_case(B=3, H=1, HV=2, K=16, V=16, N=3, slots=[-1, -1, -1], seed=12)
    run_and_check(case)


def test_permuted_slots_pool_larger_than_batch() -> None:
    # Slots come from state_indices, not the row number.
    case = make_case(B=4, H=2, HV=4, K=16, V=16, N=11, slots=[7, 2, 10, 5], layout="kv", seed=13)
    run_and_check(case)


# --- strides and views ------------------------------------------------------------------


def test_mixed_qkv_column_slice_of_wider_buffer() -> None:
    # Row stride larger than the row, nonzero start column; the rest is NaN.
    case = make_case(B=3, H=2, HV=4, K=16, V=16, qkv_col_offset=5, qkv_extra_cols=19, seed=14)
    assert case.mixed_qkv.stride(0) > case.mixed_qkv.shape[1]
    run_and_check(case)


def test_a_b_views_of_one_packed_buffer() -> None:
    case = make_case(B=4, H=1, HV=3, K=16, V=16, ab_packed=True, seed=15)
    assert case.a.stride(0) == 2 * case.a.shape[1]
    run_and_check(case)


@pytest.mark.parametrize("layout", ["vk", "kv"])
def test_page_padded_state(layout: str) -> None:
    # stride(0) exceeds one slot; the gaps hold a sentinel that must survive.
    case = make_case(B=3, H=1, HV=2, K=16, V=48, N=5, slots=[4, -1, 1], slot_pad=37,
                     layout=layout, seed=16)  # fmt: skip
    assert case.state.stride(0) > case.state[0].numel()
    run_and_check(case)


def test_strided_state_indices() -> None:
    # validate.py does not require state_indices to be dense: honour its stride.
    case = make_case(B=3, H=1, HV=2, K=16, V=16, N=6, slots=[5, -1, 0], seed=17)
    wide = torch.full((3, 2), 99, dtype=case.state_indices.dtype)
    wide[:, 0] = case.state_indices
    case.state_indices = wide[:, 0]
    run_and_check(case)


# --- options and numerics ---------------------------------------------------------------


@pytest.mark.parametrize("layout", ["vk", "kv"])
def test_without_qk_l2norm(layout: str) -> None:
    case = make_case(B=3, H=1, HV=2, K=16, V=32, layout=layout, qk_scale=0.2, seed=18)
    run_and_check(case, use_qk_l2norm=False)


def test_custom_scale() -> None:
    case = make_case(B=3, H=2, HV=4, K=32, V=16, seed=19)
    run_and_check(case, scale=0.37)


@pytest.mark.parametrize("act", [F32, BF16])
def test_tiny_norm_q_k(act: torch.dtype) -> None:
    # sum(q*q) ~ 1e-8 * K is far below the 1e-6 epsilon, so the epsilon
    # placement (inside the sqrt, after the sum) decides the result.
    case = make_case(B=3, H=1, HV=2, K=16, V=16, act=act, qk_scale=1e-4, seed=20)
    run_and_check(case)


def test_gates_extremes() -> None:
    # softplus on both sides of the threshold 20 and far below it (where
    # log(1 + exp(x)) in fp32 would round to 0), and sigmoid at both ends.
    x = torch.tensor([-100.0, -30.0, -17.5, -5.0, 0.0, 3.0, 19.9, 20.0, 20.1, 40.0, 90.0])
    a = x[None, :].clone()
    b = torch.tensor([[-120.0, -30.0, -5.0, -1.0, 0.0, 0.5, 2.0, 10.0, 30.0, 90.0, 120.0]])
    A_log = torch.linspace(-2.0, 2.0, x.numel())
    dt_bias = torch.zeros(x.numel())
    g, beta = baseline_gates(a, b, A_log, dt_bias)
    g_ref, beta_ref = gates(_np64(a), _np64(b), _np64(A_log), _np64(dt_bias))
    assert g.dtype == beta.dtype == F32
    # atol: fp32's smallest normal; g at x = -100 is subnormal (and flushed on GPU).
    np.testing.assert_allclose(_np64(g), g_ref, rtol=2e-6, atol=1.2e-38)
    np.testing.assert_allclose(_np64(beta), beta_ref, rtol=2e-6, atol=1.2e-38)


def test_empty_batch() -> None:
    case = make_case(B=0, H=1, HV=2, K=16, V=16, N=2, slots=[], seed=21)
    before = case.state_store.clone()
    baseline_decode(*case.args(), scale=0.25)
    assert torch.equal(case.state_store, before)


# --- the recurrent stage alone -----------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "block_v", "num_warps"),
    [("vk", None, None), ("kv", None, None), ("vk", 8, 1), ("kv", 4, 2)],
)
def test_baseline_recurrent_on_presplit_inputs(
    layout: str, block_v: int | None, num_warps: int | None
) -> None:
    # V = 100 with block_v 8 or 4 exercises the GPU's narrow tiling and its tail.
    B, H, HV, K, V = 3, 1, 2, 48, 100
    case = make_case(B=B, H=H, HV=HV, K=K, V=V, N=4, slots=[3, -1, 0], layout=layout, seed=22)
    ref_out, ref_state = oracle(case, scale=K**-0.5)
    store_before = case.state_store.clone()
    q = case.mixed_qkv[:, : H * K].reshape(B, H, K).contiguous()
    k = case.mixed_qkv[:, H * K : 2 * H * K].reshape(B, H, K).contiguous()
    v = case.mixed_qkv[:, 2 * H * K :].reshape(B, HV, V).contiguous()
    g, beta = baseline_gates(case.a, case.b, case.A_log, case.dt_bias)

    baseline_recurrent(q, k, v, g, beta, case.state, case.state_indices, case.out,
                       scale=K**-0.5, state_layout=layout, block_v=block_v,
                       num_warps=num_warps)  # fmt: skip

    assert torch.equal(case.out[1], torch.zeros_like(case.out[1]))
    assert_close("out", case.out, ref_out, F32)
    assert_close("state", case.state[[3, 0]], ref_state[[3, 0]], F32)
    untouched = ~live_mask(case)
    assert torch.equal(case.state_store[untouched].view(torch.int32),
                       store_before[untouched].view(torch.int32))  # fmt: skip

    # The full wrapper is split + gates + this stage: the same bits.
    fresh = make_case(B=B, H=H, HV=HV, K=K, V=V, N=4, slots=[3, -1, 0], layout=layout, seed=22)
    if block_v is None:
        baseline_decode(*fresh.args(), scale=K**-0.5, state_layout=layout)
        assert torch.equal(fresh.out, case.out)
        assert torch.equal(fresh.state_store, case.state_store)


# --- validation ------------------------------------------------------------------------


def test_decode_validates_arguments() -> None:
    case = make_case(B=2, H=1, HV=2, K=16, V=16, seed=23)
    with pytest.raises(ValueError, match=r"^state_layout"):
        baseline_decode(*case.args(), scale=0.25, state_layout="kvv")
    args = list(case.args())
    args[7] = case.out.to(F16)  # out dtype differs from mixed_qkv's
    with pytest.raises(ValueError, match=r"^out"):
        baseline_decode(*args, scale=0.25)
    args = list(case.args())
    args[1] = case.a[:, :1]  # wrong head count
    with pytest.raises(ValueError, match=r"^a"):
        baseline_decode(*args, scale=0.25)
    args = list(case.args())
    args[6] = case.state_indices.to(torch.int16)
    with pytest.raises(ValueError, match=r"^state_indices"):
        baseline_decode(*args, scale=0.25)
    assert torch.isnan(case.out).all(), "nothing may run before validation passes"


def test_recurrent_validates_arguments() -> None:
    B, H, HV, K, V = 2, 1, 2, 16, 16
    q = torch.randn(B, H, K)
    k = torch.randn(B, H, K)
    v = torch.randn(B, HV, V)
    g, beta = torch.zeros(B, HV), torch.ones(B, HV)
    state = torch.zeros(3, HV, V, K)
    idx = torch.tensor([0, 1], dtype=torch.int32)
    out = torch.empty(B, HV, V)
    ok = dict(q=q, k=k, v=v, g=g, beta=beta, state=state, state_indices=idx, out=out)
    bad_cases = [
        ("q", dict(q=torch.randn(B, H, 2 * K)[:, :, ::2])),  # not contiguous
        ("g", dict(g=torch.zeros(B, HV + 1))),
        ("v", dict(v=torch.randn(B, HV, V + 1))),
        ("state_indices", dict(state_indices=idx.to(torch.float32))),
        ("state", dict(state=torch.zeros(3, HV, 2 * V, K)[:, :, ::2])),
    ]
    for name, change in bad_cases:
        kw = {**ok, **change}
        with pytest.raises(ValueError, match=rf"^{name}"):
            baseline_recurrent(**kw, scale=0.25)
    with pytest.raises(ValueError, match=r"^block_v"):
        baseline_recurrent(**ok, scale=0.25, block_v=12)
    with pytest.raises(ValueError, match=r"^state_layout"):
        baseline_recurrent(**ok, scale=0.25, state_layout="xy")
