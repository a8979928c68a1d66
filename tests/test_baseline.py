"""Tests of the unfused baseline (kernels/baseline.py) against the float64 oracle.

They run the Triton kernels under the interpreter on CPU, so shapes stay
small (B <= 5, K and V <= 48 mostly, a few tail shapes up to 100). Each case
builds its inputs with the harness (``harness.inputs``, through
tests/kernel_inputs.py), hands the baseline torch tensors and the oracle
float64 copies of the same stored values, and holds the results to the
harness's tolerance. Beyond the values, every case checks that the
NaN-poisoned output is fully written, that padding rows are exact zeros, that
every state slot no live row names is bit-identical, that no guard or
padding element of any buffer changed, and that the inputs are left
unmodified.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from kernel_inputs import assert_close, decode_inputs, decode_spec, dims, np64, oracle_step

import kernels  # noqa: F401  (sets TRITON_INTERPRET before the kernel modules load)
from harness.core.layouts import KV, LAYOUTS, PAD_SLOT_ID, VK
from harness.inputs import CaseInputs, bits
from kernels.baseline import baseline_decode, baseline_gates, baseline_recurrent
from reference.oracle import gates

F32, F16 = torch.float32, torch.float16
PAD = PAD_SLOT_ID


def make_case(
    *,
    B: int = 3,
    H: int = 1,
    HV: int = 2,
    K: int = 16,
    V: int = 32,
    N: int | None = None,
    slots: list[int] | None = None,
    state_layout: str = VK,
    layout: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    **fields: Any,
) -> CaseInputs:
    """The harness's inputs with this file's defaults; the pool has one slot more than
    the batch, b is spread as N(0, 4)."""
    slots = list(range(B)) if slots is None else slots
    N = B + 1 if N is None else N
    layout = {"state_layout": state_layout, **(layout or {})}
    values = {"beta_std": 2.0, **(values or {})}
    return decode_inputs(
        decode_spec(slots=slots, N=N, H=H, HV=HV, K=K, V=V, layout=layout, values=values, **fields)
    )


def unnamed_slots(case: CaseInputs) -> list[int]:
    """Slots of the pool that no live row names."""
    named = set(case.state_indices.tolist())
    return [s for s in range(case.state.shape[0]) if s not in named]


def run_and_check(
    case: CaseInputs,
    *,
    scale: float | None = None,
    use_qk_l2norm: bool = True,
) -> None:
    """Run baseline_decode and check values, padding, untouched memory and inputs."""
    scale = case.scale if scale is None else scale
    before = case.snapshot()
    ref = oracle_step(case, scale=scale, use_qk_l2norm=use_qk_l2norm)
    unnamed = unnamed_slots(case)
    unnamed_before = case.state[unnamed].clone()

    baseline_decode(*case.args(), scale=scale, use_qk_l2norm=use_qk_l2norm,
                    state_layout=case.state_layout)  # fmt: skip

    idx = case.state_indices.to(torch.int64)
    pad = idx == PAD
    assert not torch.isnan(case.out).any(), "output not fully written"
    if pad.any():
        assert torch.equal(case.out[pad], torch.zeros_like(case.out[pad])), "padding rows not zero"
        assert not torch.signbit(case.out[pad]).any(), "padding rows hold -0.0"
    K = dims(case).K
    assert_close("out", case.out, ref.out, ref.out_mag, K)
    live = idx[~pad]
    ref_live, mag_live = ref.state[live.numpy()], ref.state_mag[live.numpy()]
    assert_close("state", case.state[live], ref_live, mag_live, K)

    assert torch.equal(bits(case.state[unnamed]), bits(unnamed_before)), "unnamed slots changed"
    assert case.guard_violations() == [], "write outside the arguments (guards, padding)"
    assert case.changed_inputs(before) == []


# --- values against the oracle ------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
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
    case = make_case(H=H, HV=HV, K=K, V=V, N=5, slots=[3, 0, 1], state_layout=layout, seed=H + K)
    run_and_check(case)


@pytest.mark.parametrize("act", ["fp32", "fp16", "bf16"], ids=["act32", "act16", "actbf16"])
@pytest.mark.parametrize("state_dtype", ["fp32", "bf16", "fp16"], ids=["st32", "stbf16", "st16"])
def test_dtypes(act: str, state_dtype: str) -> None:
    # Alternate layout and index dtype across the grid so each meets every dtype.
    n = ["fp32", "fp16", "bf16"].index(act) + ["fp32", "bf16", "fp16"].index(state_dtype)
    case = make_case(
        H=1, HV=2, K=16, V=32, N=4, slots=[2, 0, 3], act_dtype=act, state_dtype=state_dtype,
        state_layout=LAYOUTS[n % 2], index_dtype=("int32", "int64")[(n // 2) % 2], seed=n,
    )  # fmt: skip
    run_and_check(case)


@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
@pytest.mark.parametrize("act", ["bf16", "fp16"])
def test_params_in_activation_dtype(index_dtype: str, act: str) -> None:
    case = make_case(B=2, H=1, HV=3, K=16, V=16, act_dtype=act, param_dtype="act",
                     index_dtype=index_dtype, seed=7)  # fmt: skip
    run_and_check(case)


# --- padding and slot handling ------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
def test_padding_rows(layout: str, index_dtype: str) -> None:
    # Slot 0 is live; the last slot (5) is named by no row, so slot -1 must
    # not wrap to it; padding rows' inputs are NaN and must not be read.
    case = make_case(H=1, HV=2, K=16, V=32, N=6, slots=[2, PAD, 0, PAD, 4],
                     state_layout=layout, index_dtype=index_dtype, seed=11)  # fmt: skip
    run_and_check(case)


def test_all_rows_padding() -> None:
    case = make_case(H=1, HV=2, K=16, V=16, N=3, slots=[PAD, PAD, PAD], seed=12)
    run_and_check(case)


def test_permuted_slots_pool_larger_than_batch() -> None:
    # Slots come from state_indices, not the row number.
    case = make_case(H=2, HV=4, K=16, V=16, N=11, slots=[7, 2, 10, 5], state_layout=KV, seed=13)
    run_and_check(case)


# --- strides and views ------------------------------------------------------------------


def test_mixed_qkv_column_slice_of_wider_buffer() -> None:
    # Row stride larger than the row, nonzero start column; the rest is guarded.
    case = make_case(H=2, HV=4, K=16, V=16, layout={"qkv_col_offset": 5, "qkv_row_pad": 19},
                     seed=14)  # fmt: skip
    assert case.mixed_qkv.stride(0) > case.mixed_qkv.shape[1]
    run_and_check(case)


def test_a_b_views_of_one_packed_buffer() -> None:
    case = make_case(B=4, H=1, HV=3, K=16, V=16, layout={"ab_packed": True}, seed=15)
    assert case.a.stride(0) == 2 * case.a.shape[1]
    run_and_check(case)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_page_padded_state(layout: str) -> None:
    # stride(0) exceeds one slot; the gaps hold a sentinel that must survive.
    case = make_case(H=1, HV=2, K=16, V=48, N=5, slots=[4, PAD, 1], state_layout=layout,
                     layout={"state_slot_pad": 37}, seed=16)  # fmt: skip
    assert case.state.stride(0) > case.state[0].numel()
    run_and_check(case)


def test_strided_state_indices() -> None:
    # validate.py does not require state_indices to be dense: honour its stride.
    case = make_case(H=1, HV=2, K=16, V=16, N=6, slots=[5, PAD, 0], seed=17)
    wide = torch.full((3, 2), 99, dtype=case.state_indices.dtype)
    wide[:, 0] = case.state_indices
    case.set_loose("state_indices", wide[:, 0])
    run_and_check(case)


# --- options and numerics ---------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_without_qk_l2norm(layout: str) -> None:
    case = make_case(H=1, HV=2, K=16, V=32, state_layout=layout, values={"qkv_std": 0.2},
                     seed=18)  # fmt: skip
    run_and_check(case, use_qk_l2norm=False)


def test_custom_scale() -> None:
    case = make_case(H=2, HV=4, K=32, V=16, seed=19)
    run_and_check(case, scale=0.37)


@pytest.mark.parametrize("act", ["fp32", "bf16"])
def test_tiny_norm_q_k(act: str) -> None:
    # |q|, |k| ~ 1e-4: sum(q*q) ~ 1e-8 is far below the 1e-6 epsilon, so the
    # epsilon placement (inside the sqrt, after the sum) decides the result.
    tiny = {"tiny_qk": True, "tiny_qk_norm": 1e-4}
    case = make_case(H=1, HV=2, K=16, V=16, act_dtype=act, values=tiny, seed=20)
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
    g_ref, beta_ref = gates(np64(a), np64(b), np64(A_log), np64(dt_bias))
    assert g.dtype == beta.dtype == F32
    # atol: fp32's smallest normal; g at x = -100 is subnormal (and flushed on GPU).
    np.testing.assert_allclose(np64(g), g_ref, rtol=2e-6, atol=1.2e-38)
    np.testing.assert_allclose(np64(beta), beta_ref, rtol=2e-6, atol=1.2e-38)


def test_empty_batch() -> None:
    case = make_case(B=0, H=1, HV=2, K=16, V=16, N=2, slots=[], seed=21)
    before = case.buffers["state"].flat.clone()
    baseline_decode(*case.args(), scale=0.25)
    assert torch.equal(case.buffers["state"].flat, before)


# --- the recurrent stage alone -----------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "block_v", "num_warps"),
    [(VK, None, None), (KV, None, None), (VK, 8, 1), (KV, 4, 2)],
)
def test_baseline_recurrent_on_presplit_inputs(
    layout: str, block_v: int | None, num_warps: int | None
) -> None:
    # V = 100 with block_v 8 or 4 exercises the GPU's narrow tiling and its tail.
    B, H, HV, K, V = 3, 1, 2, 48, 100
    case = make_case(H=H, HV=HV, K=K, V=V, N=4, slots=[3, PAD, 0], state_layout=layout, seed=22)
    ref = oracle_step(case)
    unnamed_before = case.state[[1, 2]].clone()
    q = case.mixed_qkv[:, : H * K].reshape(B, H, K).contiguous()
    k = case.mixed_qkv[:, H * K : 2 * H * K].reshape(B, H, K).contiguous()
    v = case.mixed_qkv[:, 2 * H * K :].reshape(B, HV, V).contiguous()
    g, beta = baseline_gates(case.a, case.b, case.A_log, case.dt_bias)

    baseline_recurrent(q, k, v, g, beta, case.state, case.state_indices, case.out,
                       scale=case.scale, state_layout=layout, block_v=block_v,
                       num_warps=num_warps)  # fmt: skip

    assert torch.equal(case.out[1], torch.zeros_like(case.out[1]))
    assert_close("out", case.out, ref.out, ref.out_mag, K)
    assert_close("state", case.state[[3, 0]], ref.state[[3, 0]], ref.state_mag[[3, 0]], K)
    assert torch.equal(bits(case.state[[1, 2]]), bits(unnamed_before))
    assert case.guard_violations() == []

    # The full wrapper is split + gates + this stage: the same bits.
    fresh = make_case(H=H, HV=HV, K=K, V=V, N=4, slots=[3, PAD, 0], state_layout=layout, seed=22)
    if block_v is None:
        baseline_decode(*fresh.args(), scale=fresh.scale, state_layout=layout)
        assert torch.equal(fresh.out, case.out)
        assert torch.equal(fresh.buffers["state"].flat, case.buffers["state"].flat)


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
