"""Tests of the flash-linear-attention adapter (harness/adapters/fla.py).

The adapter tests need ``fla-core`` (``pip install gdn-harness[fla]``) and
are skipped, with the reason, without it; the test of the message a missing
``fla-core`` gives runs everywhere. Cases are tiny: without CUDA FLA's
kernel runs under the Triton interpreter, one Python call per program.
"""

from __future__ import annotations

import sys

import pytest
import torch

from harness.core.spec import CaseSpec, ExpectError, LayoutSpec, SlotSpec
from harness.impls.registry import ImplError, available_impls, load_implementation
from harness.run.result import PASSED, SKIPPED
from harness.run.runner import run_case

MISSING = "fla-core is not installed (pip install gdn-harness[fla])"


@pytest.fixture(scope="module")
def fla():
    """The loaded ``fla`` implementation; skips the test when fla-core is missing."""
    try:
        return load_implementation("fla")
    except ImplError as exc:
        pytest.skip(f"FLA adapter unavailable: {exc}")


def case(name: str, **kw) -> CaseSpec:
    fields = dict(file="fla.yaml", name=name, line=1, B=4, H=1, HV=2, K=8, V=6, pool=6, seed=3)
    fields.update(kw)
    return CaseSpec(**fields)


def test_fla_is_listed_and_not_builtin(fla):
    assert "fla" in available_impls()
    assert fla.spec == "fla" and fla.builtin is False
    assert callable(getattr(fla.fn, "unsupported", None))


def test_missing_fla_core_names_the_extra(monkeypatch):
    # Runs with or without fla-core: hide it, and the adapter module with it.
    monkeypatch.setitem(sys.modules, "fla", None)
    monkeypatch.delitem(sys.modules, "harness.impls.adapters.fla", raising=False)
    with pytest.raises(ImplError) as exc:
        load_implementation("fla")
    assert MISSING in str(exc.value) and "'fla'" in str(exc.value)
    assert "fla" in available_impls()  # still listed: `gdn-harness impls` says why


CASES = [
    case("plain"),
    case("kv_layout", layout=LayoutSpec(state_layout="kv")),
    case(
        "padding_strides_gqa",
        B=6,
        H=2,
        HV=6,
        K=5,
        V=7,
        pool=9,
        index_dtype="int64",
        slots=SlotSpec(padding="alternate", order="permutation", slot0_live=True),
        layout=LayoutSpec(qkv_row_pad=5, qkv_col_offset=3, ab_packed=True, state_slot_pad=4),
    ),
    case("all_padding", slots=SlotSpec(padding="all")),
    case(
        "bf16_state_kv_steps",
        state_dtype="bf16",
        param_dtype="act",
        steps=3,
        layout=LayoutSpec(state_layout="kv", ab_row_pad=2),
        slots=SlotSpec(padding="random", order="spread"),
    ),
    case("fp16_no_l2norm_scale", act_dtype="fp16", use_qk_l2norm=False, scale=0.3),
]


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name)
def test_fla_passes_tiny_cases(fla, spec):
    result = run_case(spec, fla, None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations] or result.reason


def test_fla_against_baseline(fla):
    """With the baseline too: the three-way comparison and the drift budget."""
    baseline = load_implementation("baseline")
    spec = case("with_baseline", B=3, steps=2, slots=SlotSpec(padding="first"))
    result = run_case(spec, fla, baseline, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations]


def test_fallback_path_for_older_fla(fla, monkeypatch):
    """Gates and beta in fp32 torch, vk states transposed: what older FLA releases get."""
    from harness.impls.adapters import fla as adapter

    monkeypatch.setattr(
        adapter,
        "FEATURES",
        {"gate_in_kernel": False, "beta_sigmoid_in_kernel": False, "v_first_kwarg": None},
    )
    spec = case("fallback", B=5, HV=4, H=2, slots=SlotSpec(padding="last", order="reverse"))
    result = run_case(spec, fla, None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations]


def test_error_cases_skip_for_fla(fla):
    spec = case(
        "bad_layout",
        expect=ExpectError(match="state_layout"),
        overrides=(("state_layout", "xy"),),
    )
    result = run_case(spec, fla, None, device="cpu")
    assert result.status == SKIPPED
    assert result.reason.startswith("error case")


def test_declared_unsupported_case_is_skipped_with_reason(fla):
    spec = case("ragged_heads", H=2, HV=3)
    reason = fla.unsupported(spec)
    assert reason is not None and "multiple of H" in reason
    result = run_case(spec, fla, None, device="cpu")
    assert result.status == SKIPPED and result.reason == reason


def test_fla_direct_call_keeps_padding_and_untouched_slots(fla):
    """The adapter on hand-made tensors: zeros for padding, other slots bit-identical."""
    g = torch.Generator().manual_seed(0)
    B, H, HV, K, V, N = 4, 1, 2, 4, 4, 6
    mixed_qkv = torch.randn(B, 2 * H * K + HV * V, generator=g).to(torch.bfloat16)
    a, b = torch.randn(B, HV, generator=g), torch.randn(B, HV, generator=g)
    A_log, dt_bias = torch.zeros(HV), torch.zeros(HV)
    state = torch.randn(N, HV, V, K, generator=g)
    before = state.clone()
    idx = torch.tensor([-1, 4, -1, 0], dtype=torch.int32)
    out = torch.full((B, HV, V), float("nan"), dtype=torch.bfloat16)
    fla.fn(mixed_qkv, a.bfloat16(), b.bfloat16(), A_log, dt_bias, state, idx, out, scale=0.5)
    assert (out[[0, 2]] == 0).all() and not out.isnan().any()
    for slot in (1, 2, 3, 5):
        assert torch.equal(state[slot], before[slot])
    assert not torch.equal(state[4], before[4]) and not torch.equal(state[0], before[0])
