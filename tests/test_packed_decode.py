"""Tests of the packed decode kernel against the float64 oracle (CPU, Triton interpreter).

Every test builds its inputs with the harness (``harness.inputs``, through
tests/kernel_inputs.py) in the dtypes under test, hands the oracle float64
copies of the *stored* values, runs the kernel in place, and holds out and
state to the harness's tolerance; the guards around every buffer must be
untouched. Shapes are small because the interpreter runs each program in
Python.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from kernel_inputs import REL_TOL, assert_close, decode_inputs, decode_spec, dims, np64, oracle_step

import kernels  # noqa: F401  (sets TRITON_INTERPRET before the kernel modules load)
from harness.core.layouts import KV, LAYOUTS, PAD_SLOT_ID, VK
from harness.inputs import CaseInputs
from kernels.packed_decode import default_tuning, packed_decode
from reference import oracle

# `kernels.packed_decode` the attribute is the function (re-exported by the
# package); the module itself comes from the import system.
packed_module = importlib.import_module("kernels.packed_decode")

F16, F32 = torch.float16, torch.float32
PAD = PAD_SLOT_ID


def make_inputs(
    *,
    B: int = 3,
    H: int = 2,
    HV: int = 4,
    K: int = 32,
    V: int = 32,
    N: int | None = None,
    slots: list[int] | None = None,
    state_layout: str = VK,
    layout: dict[str, Any] | None = None,
    **fields: Any,
) -> CaseInputs:
    """The harness's inputs with this file's defaults; the pool holds just the slots named."""
    slots = list(range(B)) if slots is None else slots
    N = max([0, *slots]) + 1 if N is None else N
    layout = {"state_layout": state_layout, **(layout or {})}
    return decode_inputs(
        decode_spec(slots=slots, N=N, H=H, HV=HV, K=K, V=V, layout=layout, **fields)
    )


def run_kernel(
    inp: CaseInputs, *, scale: float | None = None, use_qk_l2norm: bool = True, **tuning
) -> None:
    scale = inp.scale if scale is None else scale
    packed_decode(
        *inp.args(), scale=scale, use_qk_l2norm=use_qk_l2norm, state_layout=inp.state_layout,
        **tuning,
    )  # fmt: skip


def max_err(got: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(np64(got) - ref).max()) if ref.size else 0.0


def check(inp: CaseInputs, *, scale: float | None = None, use_qk_l2norm: bool = True, **tuning):
    """Run oracle and kernel on the same inputs; compare out and the whole pool, check guards."""
    ref = oracle_step(inp, scale=scale, use_qk_l2norm=use_qk_l2norm)
    run_kernel(inp, scale=scale, use_qk_l2norm=use_qk_l2norm, **tuning)
    K = dims(inp).K
    assert_close("out", inp.out, ref.out, ref.out_mag, K)
    assert_close("state", inp.state, ref.state, ref.state_mag, K)
    assert inp.guard_violations() == []
    return ref.out, ref.state


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize("layout", LAYOUTS)
def test_square_heads_both_layouts(layout):
    # K == V: a transposed state read has the right shape; only values reveal it.
    check(make_inputs(K=32, V=32, state_layout=layout, slots=[1, 0, 2]))


ORDER_AND_HINTS = [
    {"early_state": 0, "act_first": 0, "load_evict_last": 0, "store_streaming": 0},
    {"early_state": 1, "act_first": 0, "load_evict_last": 0, "store_streaming": 0},
    {"early_state": 1, "act_first": 1, "load_evict_last": 1, "store_streaming": 0},
    {"early_state": 0, "act_first": 1, "load_evict_last": 0, "store_streaming": 1, "pdl": 1},
    {"early_state": 1, "act_first": 0, "load_evict_last": 1, "store_streaming": 1, "pdl": 2},
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_order_and_cache_hints_change_no_bit(layout):
    """The order of the loads and the cache hints are tuning: the math is the same."""
    results = []
    for tuning in ORDER_AND_HINTS:
        inp = make_inputs(B=3, H=1, HV=2, K=24, V=40, state_layout=layout, slots=[2, PAD, 0], N=3)
        check(inp, **tuning)
        results.append((inp.out.clone(), inp.buffers["state"].flat.clone()))
    for out, state in results[1:]:
        assert torch.equal(results[0][0], out)
        assert torch.equal(results[0][1], state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the cache hints act only on a GPU")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_order_and_cache_hints_on_cuda(layout):
    """On a GPU, where the hints reach the hardware, every combination gives the same bits."""
    results = []
    for tuning in ORDER_AND_HINTS:
        inp = make_inputs(
            B=5, H=2, HV=4, K=128, V=128, state_layout=layout, slots=[3, PAD, 0, 5, 1]
        )
        ref = oracle_step(inp)
        args = [t.cuda() for t in inp.args()]
        packed_decode(*args, scale=inp.scale, state_layout=layout, **tuning)
        out, state = args[-1].cpu(), args[5].cpu()
        assert_close(f"out {tuning}", out, ref.out, ref.out_mag, 128)
        assert_close(f"state {tuning}", state, ref.state, ref.state_mag, 128)
        results.append((out, state))
    for out, state in results[1:]:
        assert torch.equal(results[0][0], out)
        assert torch.equal(results[0][1], state)


def _steps_after_late_inputs(layout: str, B: int, **tuning: int) -> tuple[torch.Tensor, ...]:
    """Four decode steps on one pool. Before each of the first three, a kernel that
    lets its dependents launch at once writes one of the step's inputs late: the
    mixed_qkv, the slot indices, the state pool. The fourth follows the third
    directly. Returns (outs, pool) on the CPU."""
    from late_copy import late_copy  # imports Triton: only once the interpreter is set up

    gen = torch.Generator(device="cuda").manual_seed(7)
    H, HV, K, V, steps = 4, 8, 128, 128, 4
    inner = (V, K) if layout == VK else (K, V)
    pool = torch.randn((B, HV, *inner), generator=gen, device="cuda")
    perm = torch.randperm(B, generator=gen, device="cuda").to(torch.int32)
    A_log = torch.rand(HV, generator=gen, device="cuda") - 0.5
    dt_bias = torch.randn(HV, generator=gen, device="cuda")
    qkvs = torch.randn((steps, B, 2 * H * K + HV * V), generator=gen, device="cuda").bfloat16()
    ab = torch.randn((steps, B, 2 * HV), generator=gen, device="cuda").bfloat16()
    qkv_late = torch.full_like(qkvs[0], float("nan"))
    idx_late = torch.full_like(perm, PAD)
    outs = torch.empty((steps, B, HV, V), dtype=torch.bfloat16, device="cuda")
    for i in range(steps):
        qkv, idx = qkvs[i], perm
        if i == 0:
            late_copy(qkvs[i], qkv_late)
            qkv = qkv_late
        elif i == 1:
            late_copy(perm, idx_late)
            idx = idx_late
        elif i == 2:
            staged = pool.clone()
            pool.fill_(float("nan"))
            late_copy(staged, pool)
        packed_decode(
            qkv, ab[i, :, :HV], ab[i, :, HV:], A_log, dt_bias, pool, idx, outs[i],
            scale=K**-0.5, state_layout=layout, **tuning,
        )  # fmt: skip
    torch.cuda.synchronize()
    return outs.cpu(), pool.cpu()


def test_pdl_refused_without_grid_dependency_control(monkeypatch):
    """Compiled for a GPU, pdl needs Triton's gdc intrinsics; the error says so."""
    monkeypatch.setattr(packed_module, "interpreting", lambda: False)
    monkeypatch.setattr(packed_module, "gdc_wait", None)
    with pytest.raises(ValueError, match=r"^pdl: Triton .* no grid dependency control"):
        packed_module._check_pdl(1, torch.zeros(1))
    packed_module._check_pdl(0, torch.zeros(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="grid dependency control needs a GPU")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pdl", [1, 2])
@pytest.mark.parametrize("B", [2, 256])
def test_pdl_step_waits_for_the_kernel_before_it(layout, pdl, B):
    """Launched early (programmatic dependent launch) behind a kernel that lets it
    launch at once but writes one of its inputs late (activations, slot indices or
    state), the step must wait for that write: the same bits as without PDL."""
    ref_outs, ref_pool = _steps_after_late_inputs(layout, B, pdl=0)
    outs, pool = _steps_after_late_inputs(layout, B, pdl=pdl)
    assert torch.equal(outs, ref_outs)
    assert torch.equal(pool, ref_pool)


# (layout, B * HV) -> (store_streaming, load_evict_last, act_first), the defaults
# docs/performance.md describes, at each side of every threshold.
DEFAULT_HINTS = [
    (VK, 1, (1, 0, 1)),
    (VK, 64, (1, 0, 1)),
    (VK, 128, (1, 0, 0)),
    (VK, 512, (1, 0, 0)),
    (VK, 1024, (0, 1, 0)),
    (VK, None, (0, 1, 0)),
    (KV, 1, (1, 0, 0)),
    (KV, 128, (1, 0, 0)),
    (KV, 256, (0, 0, 0)),
    (KV, 512, (0, 0, 1)),
    (KV, 1024, (0, 1, 1)),
    (KV, None, (0, 1, 1)),
]


@pytest.mark.parametrize(("layout", "rows_heads", "want"), DEFAULT_HINTS)
def test_default_hints_by_step_size(layout, rows_heads, want):
    """Streaming stores for small steps, evict_last loads for large ones, never both."""
    tuning = default_tuning(128, 128, layout, rows_heads)
    got = (tuning["store_streaming"], tuning["load_evict_last"], tuning["act_first"])
    assert got == want
    assert tuning["early_state"] == 1


@pytest.mark.parametrize(
    ("K", "V", "layout", "BV"),
    [(48, 100, VK, None), (16, 96, KV, 64)],
)
def test_head_dim_tails(K, V, layout, BV):
    tuning = {} if BV is None else {"BV": BV}
    check(make_inputs(B=2, H=1, HV=2, K=K, V=V, state_layout=layout), **tuning)


def test_v_tiles_with_tail_vk():
    # Several V tiles, the last one partial, on the vk layout.
    check(make_inputs(B=2, H=1, HV=2, K=16, V=40, state_layout=VK), BV=16)


def _wrong_mapping_qkv(inp: CaseInputs) -> np.ndarray:
    """Packed rows whose value head hv reads key head hv % H (one key head per value head)."""
    qkv = np64(inp.mixed_qkv)
    H, HV, K = dims(inp).H, dims(inp).HV, dims(inp).K
    B = qkv.shape[0]
    q = qkv[:, : H * K].reshape(B, H, K)
    k = qkv[:, H * K : 2 * H * K].reshape(B, H, K)
    heads = [hv % H for hv in range(HV)]
    return np.concatenate(
        [q[:, heads].reshape(B, -1), k[:, heads].reshape(B, -1), qkv[:, 2 * H * K :]], axis=1
    )


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_gqa_head_mapping(ratio):
    inp = make_inputs(B=2, H=2, HV=2 * ratio, K=16, V=16, state_layout=KV)
    wrong_out = oracle_step(inp, qkv=_wrong_mapping_qkv(inp)).out
    ref_out, _ = check(inp)
    if ratio > 1:
        # The test discriminates: an hv % H mapping would miss the tolerance by far.
        assert max_err(inp.out, wrong_out) > 100 * REL_TOL[F32] * np.abs(ref_out).max()


@pytest.mark.parametrize(
    ("act", "state_dtype", "param_dtype", "index_dtype", "layout"),
    [
        ("fp16", "fp32", "fp32", "int64", VK),
        ("bf16", "fp32", "bf16", "int32", KV),
        ("fp32", "bf16", "fp32", "int64", KV),
        ("fp32", "fp16", "fp32", "int32", VK),
        ("bf16", "bf16", "bf16", "int64", VK),
        ("fp16", "fp16", "fp16", "int32", KV),
    ],
)
def test_dtypes(act, state_dtype, param_dtype, index_dtype, layout):
    inp = make_inputs(
        act_dtype=act, state_dtype=state_dtype, param_dtype=param_dtype, index_dtype=index_dtype,
        state_layout=layout, slots=[2, 0, 1], K=16, V=32,
    )  # fmt: skip
    check(inp)


@pytest.mark.parametrize(("layout", "index_dtype"), [(VK, "int64"), (KV, "int32")])
def test_padding_rows_and_untouched_slots(layout, index_dtype):
    # Slot 0 is live, slot N-1 is named by nobody (slot -1 must not wrap to it).
    slots = [PAD, 0, 3, PAD, 2]
    N = 6
    inp = make_inputs(N=N, slots=slots, state_layout=layout, index_dtype=index_dtype, K=16, V=16)
    before = inp.state.clone()
    check(inp)
    pad = torch.tensor(slots) == PAD
    assert torch.equal(inp.out[pad], torch.zeros_like(inp.out[pad])), "padding rows not zero"
    assert not torch.signbit(inp.out[pad]).any(), "padding rows hold -0.0"
    for s in range(N):
        if s not in slots:
            assert torch.equal(inp.state[s], before[s]), f"unnamed slot {s} changed"


def test_all_rows_padding():
    inp = make_inputs(N=3, slots=[PAD, PAD], K=16, V=16)
    before = inp.state.clone()
    run_kernel(inp, scale=0.25)
    assert torch.equal(inp.out, torch.zeros_like(inp.out))
    assert torch.equal(inp.state, before)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_strided_views_and_page_padded_pool(layout):
    # mixed_qkv is a column slice of a wider buffer, a/b are views of one [B, 2*HV]
    # buffer, the pool has padding between slots, slots are permuted in a pool
    # larger than the batch.
    inp = make_inputs(
        N=7, slots=[5, 0, 3, 6], state_layout=layout, K=16, V=24, seed=3,
        layout={"qkv_col_offset": 8, "qkv_row_pad": 8, "ab_packed": True, "state_slot_pad": 24},
    )  # fmt: skip
    assert inp.mixed_qkv.stride(0) > inp.mixed_qkv.shape[1]
    assert inp.a.stride(0) == 2 * inp.a.shape[1]
    assert inp.state.stride(0) > inp.state[0].numel()
    pool = inp.state.as_strided((7, inp.state.stride(0)), (inp.state.stride(0), 1))
    gap_before = pool[:, inp.state[0].numel() :].clone()
    untouched = [1, 2, 4]
    before = inp.state[untouched].clone()
    check(inp)
    assert torch.equal(pool[:, inp.state[0].numel() :], gap_before), "page padding written"
    assert torch.equal(inp.state[untouched], before), "unnamed slots changed"


def test_no_l2norm_custom_scale():
    inp = make_inputs(K=16, V=16, state_layout=KV, seed=5)
    with torch.no_grad():
        inp.mixed_qkv.mul_(0.3)  # keep the un-normalised update in a sane range
    check(inp, scale=0.37, use_qk_l2norm=False)


def test_scale_applied_after_norm():
    # With the norm on, scale applied before it would be normalised away.
    inp = make_inputs(K=16, V=16, seed=6)
    unscaled_out = oracle_step(inp, scale=1.0).out
    ref_out, _ = check(inp, scale=3.0)
    assert max_err(inp.out, unscaled_out) > 0.1 * np.abs(ref_out).max()


def test_tiny_norm_qk_epsilon(monkeypatch):
    # |q|, |k| ~ 1e-4: the eps inside the sqrt dominates the normalisation.
    inp = make_inputs(K=16, V=16, state_layout=VK, seed=7)
    H, K = dims(inp).H, dims(inp).K
    with torch.no_grad():
        qk = inp.mixed_qkv[:, : 2 * H * K].unflatten(1, (2 * H, K))
        qk.mul_(1e-4 / qk.norm(dim=-1, keepdim=True))
    scale = K**-0.5
    monkeypatch.setattr(oracle, "L2_EPS", 0.0)
    no_eps_out = oracle_step(inp, scale=scale).out
    monkeypatch.undo()
    ref_out, _ = check(inp, scale=scale)
    assert max_err(inp.out, no_eps_out) > 100 * REL_TOL[F32] * np.abs(ref_out).max()


def test_extreme_gates():
    # a + dt_bias far above the softplus threshold (exp would overflow fp32), far
    # below it, and b saturating the sigmoid both ways: everything stays finite.
    inp = make_inputs(B=4, H=1, HV=2, K=16, V=16, seed=8)
    with torch.no_grad():
        inp.a.copy_(torch.tensor([[150.0, 20.5], [19.5, -150.0], [-30.0, 0.0], [90.0, 5.0]]))
        inp.b.copy_(torch.tensor([[-120.0, 120.0], [0.0, -30.0], [60.0, 1.0], [-1.0, 2.0]]))
        inp.dt_bias.zero_()
        inp.A_log.copy_(torch.tensor([-3.0, -4.0]))
    check(inp)


def test_empty_batch():
    inp = make_inputs(B=1, K=16, V=16)
    empty = replace(
        inp, mixed_qkv=inp.mixed_qkv[:0], a=inp.a[:0], b=inp.b[:0],
        state_indices=inp.state_indices[:0], out=inp.out[:0],
    )  # fmt: skip
    before = inp.state.clone()
    run_kernel(empty, scale=0.25)
    assert torch.equal(inp.state, before)


def test_grid_puts_rows_times_heads_on_axis0():
    # B * HV > 65535 must land on axis 0 (limit 2**31 - 1), not on axes 1/2 (65535).
    grid = packed_module.launch_grid(1024, 96, 128, 32)
    assert grid == (1024 * 96 * 4,)
    for layout in LAYOUTS:
        bv = packed_module.default_tuning(128, 128, layout)["BV"]
        assert bv <= 128 and bv & (bv - 1) == 0


# ------------------------------------------------------------------------ validation


def _valid() -> CaseInputs:
    return make_inputs(B=2, H=2, HV=4, K=16, V=16, N=3)


def _overlap_state(inp: CaseInputs) -> torch.Tensor:
    return inp.state.view(-1)[: inp.out.numel()].view(inp.out.shape)


def _overlap_qkv(inp: CaseInputs) -> torch.Tensor:
    return inp.mixed_qkv.reshape(-1)[: inp.out.numel()].view(inp.out.shape)


VALIDATION_CASES = [
    ("mixed_qkv", "wrong_ndim", lambda i: {"mixed_qkv": i.mixed_qkv[None]}),
    (
        "mixed_qkv",
        "last_dim_not_dense",
        lambda i: {"mixed_qkv": torch.repeat_interleave(i.mixed_qkv, 2, dim=1)[:, ::2]},
    ),
    ("A_log", "not_dense", lambda i: {"A_log": torch.repeat_interleave(i.A_log, 2)[::2]}),
    ("a", "batch_mismatch", lambda i: {"a": i.a[:1]}),
    # H = 2 key heads (2*2*16 = 64 columns) but HV = 3 value heads.
    (
        "mixed_qkv",
        "hv_not_multiple_of_h",
        lambda i: {
            "mixed_qkv": torch.zeros(2, 64 + 3 * 16),
            "a": torch.zeros(2, 3),
            "b": torch.zeros(2, 3),
            "A_log": torch.zeros(3),
            "dt_bias": torch.zeros(3),
            "state": torch.zeros(3, 3, 16, 16),
            "out": torch.zeros(2, 3, 16),
        },
    ),
    ("out", "wrong_shape", lambda i: {"out": torch.zeros(2, 4, 17)}),
    ("out", "wrong_dtype", lambda i: {"out": torch.zeros(2, 4, 16, dtype=F16)}),
    ("out", "overlaps_state", lambda i: {"out": _overlap_state(i)}),
    ("out", "overlaps_mixed_qkv", lambda i: {"out": _overlap_qkv(i)}),
    ("state_indices", "bad_dtype", lambda i: {"state_indices": i.state_indices.to(torch.int16)}),
    ("state_layout", "unknown", lambda i: {"state_layout": "vkv"}),
]


@pytest.mark.parametrize(
    ("name", "mutate"),
    [pytest.param(n, m, id=f"{n}-{w}") for n, w, m in VALIDATION_CASES],
)
def test_validation_error_names_argument(name, mutate):
    inp = _valid()
    inp = replace(inp, **mutate(inp))
    before = inp.state.clone()
    with pytest.raises(ValueError, match=rf"^{name}: "):
        run_kernel(inp, scale=0.25)
    assert torch.equal(inp.state, before)


def test_bad_tuning_arguments():
    inp = _valid()
    with pytest.raises(ValueError, match=r"^BV: "):
        run_kernel(inp, scale=0.25, BV=24)
    with pytest.raises(ValueError, match=r"^pdl: "):
        run_kernel(inp, scale=0.25, pdl=3)
    with pytest.raises(TypeError, match="unknown tuning"):
        run_kernel(inp, scale=0.25, block_k=64)
