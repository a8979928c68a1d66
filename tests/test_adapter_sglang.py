"""The ``sglang`` adapter against the stand-in SGLang (tests/standins/sglang).

SGLang's packed op keeps the contract's conventions (a negative index is
padding, written as zeros; slot 0 is live), so every case runs as it is.
"""

from __future__ import annotations

import pytest
import torch
from factories import spec
from test_adapter_standins import standins, write_package  # noqa: F401 (the fixture)

from harness.impls.registry import load_implementation
from harness.run.result import FAILED, PASSED, SKIPPED
from harness.run.runner import run_case

pytestmark = pytest.mark.usefixtures("standins")

CASES = [
    spec(name="plain_slot0_live", slots={"slot0_live": True}),
    spec(
        name="padding_strides_gqa",
        B=6,
        H=2,
        HV=6,
        K=5,
        V=7,
        pool=9,
        index_dtype="int64",
        slots={"padding": "alternate", "order": "permutation", "slot0_live": True},
        layout={"qkv_row_pad": 5, "qkv_col_offset": 3, "ab_packed": True, "state_slot_pad": 4},
    ),
    spec(name="all_padding", slots={"padding": "all"}),
    spec(name="bf16_state_steps", state_dtype="bf16", param_dtype="act", steps=3),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sglang_passes(case):
    result = run_case(case, load_implementation("sglang"), None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations] or result.reason


def test_conventions_and_declared_cases():
    impl = load_implementation("sglang")
    assert impl.fn.conventions == {"pad": "negative", "pad_output": "zero"}
    kv = spec(layout={"state_layout": "kv"})
    assert run_case(kv, impl, None, device="cpu").status == SKIPPED
    assert "layout vk" in impl.unsupported(kv)
    assert impl.unsupported(spec(act_dtype="fp32", state_dtype="fp16", K=7)) is None


def test_direct_call_padding_and_slot0():
    g = torch.Generator().manual_seed(0)
    B, H, HV, K, V, N = 3, 1, 2, 4, 4, 5
    state = torch.randn(N, HV, V, K, generator=g)
    before = state.clone()
    out = torch.full((B, HV, V), float("nan"))
    load_implementation("sglang").fn(
        torch.randn(B, 2 * H * K + HV * V, generator=g),
        torch.randn(B, HV, generator=g),
        torch.randn(B, HV, generator=g),
        torch.zeros(HV),
        torch.zeros(HV),
        state,
        torch.tensor([0, -1, 2], dtype=torch.int32),
        out,
        scale=0.5,
    )
    assert (out[1] == 0).all() and not out.isnan().any()
    assert not torch.equal(state[0], before[0]) and not torch.equal(state[2], before[2])
    assert torch.equal(state[[1, 3, 4]], before[[1, 3, 4]])


def test_a_transposed_state_kernel_is_caught(monkeypatch):
    impl = load_implementation("sglang")
    import _gdn_standin

    monkeypatch.setattr(_gdn_standin, "STATE_LAYOUT", "kv")
    result = run_case(spec(name="square", K=8, V=8), impl, None, device="cpu")
    assert result.status == FAILED
    assert any(v.check == "values" for v in result.violations)


def test_an_older_release_is_found_under_srt(tmp_path, monkeypatch):
    """SGLang 0.5.10 to 0.5.15 keep the op under sglang.srt.layers.attention.fla."""
    write_package(
        tmp_path,
        {
            "sglang/__init__.py": '__version__ = "0.5.12"\n',
            "sglang/srt/__init__.py": "",
            "sglang/srt/layers/__init__.py": "",
            "sglang/srt/layers/attention/__init__.py": "",
            "sglang/srt/layers/attention/fla/__init__.py": "",
            "sglang/srt/layers/attention/fla/fused_recurrent.py": """
                import _gdn_standin


                def fused_recurrent_gated_delta_rule_packed_decode(
                    mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out,
                    ssm_state_indices, use_qk_l2norm_in_kernel=False,
                ):
                    return _gdn_standin.packed_decode(
                        mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out,
                        ssm_state_indices, use_qk_l2norm_in_kernel, null_block=False,
                    )
                """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from harness.impls.adapters import sglang

    assert sglang._packed_op.__module__ == "sglang.srt.layers.attention.fla.fused_recurrent"
    result = run_case(CASES[0], load_implementation("sglang"), None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations]
