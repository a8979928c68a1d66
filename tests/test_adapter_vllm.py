"""The vLLM adapters (``vllm``, ``vllm-sigmoid-gating``) against the stand-in vLLM.

The stand-in (tests/standins/vllm) has the module paths, signatures and
padding conventions of vLLM 0.34: slot 0 is the null block, the packed op
writes zeros for padding rows, the sigmoid-gating op returns a fresh output
whose padding rows it never writes. Cases whose live rows hold slot 0 are
avoided (``order: reverse``) where the harness's own convention is in force.
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

NO_SLOT0 = {"order": "reverse"}  # live rows take the last slots of a larger pool

CASES = [
    spec(name="plain", slots=NO_SLOT0),
    spec(
        name="padding_strides_gqa",
        B=6,
        H=2,
        HV=6,
        K=5,
        V=7,
        pool=9,
        index_dtype="int64",
        slots={"padding": "alternate", "order": "reverse"},
        layout={"qkv_row_pad": 5, "qkv_col_offset": 3, "ab_packed": True, "state_slot_pad": 4},
    ),
    spec(name="bf16_state_steps", state_dtype="bf16", param_dtype="act", steps=3, slots=NO_SLOT0),
    spec(
        name="fp16_no_l2norm_scale",
        act_dtype="fp16",
        use_qk_l2norm=False,
        scale=0.3,
        slots=NO_SLOT0,
    ),
]


def vllm(name: str):
    return load_implementation(name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_packed_decode_passes(case):
    result = run_case(case, vllm("vllm"), None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations] or result.reason


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.slots.padding == "none"], ids=lambda c: c.name
)
def test_sigmoid_gating_passes_cases_without_padding(case):
    result = run_case(case, vllm("vllm-sigmoid-gating"), None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations] or result.reason


@pytest.mark.parametrize("name", ["vllm", "vllm-sigmoid-gating"])
def test_conventions_of_a_null_block_release(name):
    fn = vllm(name).fn
    unwritten = "unwritten" if name == "vllm-sigmoid-gating" else "zero"
    assert fn.conventions == {"pad": "nonpositive", "pad_output": unwritten}


@pytest.mark.parametrize("name", ["vllm", "vllm-sigmoid-gating"])
def test_kv_layout_and_ragged_heads_are_declared(name):
    impl = vllm(name)
    kv = spec(layout={"state_layout": "kv"})
    assert "layout vk" in impl.unsupported(kv)
    assert run_case(kv, impl, None, device="cpu").status == SKIPPED
    assert "multiple of H" in impl.unsupported(spec(H=2, HV=3))
    assert impl.unsupported(spec(K=7, V=9, act_dtype="fp32", state_dtype="fp16")) is None


def inputs(B=4, H=1, HV=2, K=4, V=4, N=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        mixed_qkv=torch.randn(B, 2 * H * K + HV * V, generator=g).bfloat16(),
        a=torch.randn(B, HV, generator=g).bfloat16(),
        b=torch.randn(B, HV, generator=g).bfloat16(),
        A_log=torch.zeros(HV),
        dt_bias=torch.zeros(HV),
        state=torch.randn(N, HV, V, K, generator=g),
        out=torch.full((B, HV, V), float("nan"), dtype=torch.bfloat16),
    )


def test_packed_null_slot_direct():
    """Index 0 and -1 are padding: zeros out, slot 0 never touched."""
    x = inputs()
    before = x["state"].clone()
    idx = torch.tensor([0, 3, -1, 5], dtype=torch.int32)
    vllm("vllm").fn(**x, state_indices=idx, scale=0.5)
    assert (x["out"][[0, 2]] == 0).all() and not x["out"].isnan().any()
    for slot in (0, 1, 2, 4):
        assert torch.equal(x["state"][slot], before[slot])
    assert not torch.equal(x["state"][3], before[3])


def test_sigmoid_gating_leaves_padding_rows_alone():
    """The fresh output's padding rows are garbage: none of it reaches ``out``."""
    x = inputs()
    before = x["state"].clone()
    idx = torch.tensor([0, 3, -1, 5], dtype=torch.int32)
    vllm("vllm-sigmoid-gating").fn(**x, state_indices=idx, scale=0.5)
    assert x["out"][[0, 2]].isnan().all()
    assert not x["out"][[1, 3]].isnan().any()
    assert torch.equal(x["state"][0], before[0]) and not torch.equal(x["state"][5], before[5])


@pytest.mark.parametrize("name", ["vllm", "vllm-sigmoid-gating"])
def test_sigmoid_and_packed_agree(name):
    """Both names on identical inputs give identical live rows and states."""
    idx = torch.tensor([4, 1, -1, 2], dtype=torch.int64)
    x, y = inputs(seed=1), inputs(seed=1)
    vllm("vllm").fn(**x, state_indices=idx, scale=0.4)
    vllm(name).fn(**y, state_indices=idx, scale=0.4)
    assert torch.equal(x["out"][[0, 1, 3]], y["out"][[0, 1, 3]])
    assert torch.equal(x["state"], y["state"])


@pytest.mark.parametrize("name", ["vllm", "vllm-sigmoid-gating"])
def test_a_transposed_state_kernel_is_caught(monkeypatch, name):
    """Planted: a kernel reading the slot as [K, V]; with K == V only values show it."""
    impl = vllm(name)
    import _gdn_standin

    monkeypatch.setattr(_gdn_standin, "STATE_LAYOUT", "kv")
    case = spec(name="square", K=8, V=8, slots=NO_SLOT0)
    result = run_case(case, impl, None, device="cpu")
    assert result.status == FAILED
    assert any(v.check == "values" for v in result.violations)


OLD_RELEASE = {
    "vllm/__init__.py": '__version__ = "0.19.1"\n',
    "vllm/model_executor/__init__.py": "",
    "vllm/model_executor/layers/__init__.py": "",
    "vllm/model_executor/layers/fla/__init__.py": "",
    "vllm/model_executor/layers/fla/ops/__init__.py": "",
    "vllm/model_executor/layers/fla/ops/fused_recurrent.py": """
        import _gdn_standin


        def fused_recurrent_gated_delta_rule_packed_decode(
            mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out, ssm_state_indices,
            use_qk_l2norm_in_kernel=False,
        ):
            return _gdn_standin.packed_decode(
                mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out, ssm_state_indices,
                use_qk_l2norm_in_kernel, null_block=False,
            )
        """,
}


def test_an_older_release_is_found_where_it_kept_the_op(tmp_path, monkeypatch):
    """vLLM up to 0.25 keeps the op under model_executor; before 0.20 slot 0 is live."""
    write_package(tmp_path, OLD_RELEASE)
    monkeypatch.syspath_prepend(str(tmp_path))  # ahead of the 0.34 stand-in
    impl = vllm("vllm")
    assert impl.fn.conventions == {"pad": "negative", "pad_output": "zero"}
    case = spec(name="slot0_live", slots={"padding": "first", "slot0_live": True})
    result = run_case(case, impl, None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations]
