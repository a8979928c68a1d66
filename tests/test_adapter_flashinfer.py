"""The FlashInfer adapters (``flashinfer``: fp32 state; ``flashinfer-bf16``: bf16
state) against the stand-in FlashInfer (tests/standins/flashinfer).

The stand-in keeps both paths' conventions: the fp32 path skips a negative
index and writes zeros; the bf16 path sends it to slot 0, a null buffer it
reads and writes, and computes a padding output the caller must not use.
The adapters refuse to load without a CUDA device of compute capability 9.0+,
so the tests pretend to have one while loading (and only then).
"""

from __future__ import annotations

import pytest
import torch
from factories import spec
from test_adapter_standins import standins  # noqa: F401 (the fixture)

from harness.impls.registry import ImplError, load_implementation
from harness.run.result import FAILED, PASSED, SKIPPED
from harness.run.runner import run_case

pytestmark = pytest.mark.usefixtures("standins")

BIG = dict(K=128, V=128, H=1, HV=2, B=3, pool=5)


def flashinfer(monkeypatch, name: str):
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: True)
        m.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
        return load_implementation(name)


FP32_CASES = [
    spec(name="fp32_padding", slots={"padding": "alternate", "slot0_live": True}, **BIG),
    spec(
        name="fp32_strides_params_int64",
        param_dtype="act",
        index_dtype="int64",
        slots={"order": "permutation", "padding": "first"},
        layout={"qkv_row_pad": 3, "qkv_col_offset": 5, "ab_packed": True, "state_slot_pad": 8},
        **BIG,
    ),
    spec(name="fp32_fp16_steps", act_dtype="fp16", steps=2, **BIG),
]
BF16_CASES = [
    spec(name="bf16_no_slot0", state_dtype="bf16", slots={"order": "reverse"}, **BIG),
    spec(
        name="bf16_strides_params",
        state_dtype="bf16",
        param_dtype="act",
        slots={"order": "reverse"},
        layout={"qkv_row_pad": 3, "qkv_col_offset": 5},
        **BIG,
    ),
]


@pytest.mark.parametrize("case", FP32_CASES, ids=lambda c: c.name)
def test_fp32_state_path_passes(monkeypatch, case):
    result = run_case(case, flashinfer(monkeypatch, "flashinfer"), None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations] or result.reason


@pytest.mark.parametrize("case", BF16_CASES, ids=lambda c: c.name)
def test_bf16_state_path_passes(monkeypatch, case):
    result = run_case(case, flashinfer(monkeypatch, "flashinfer-bf16"), None, device="cpu")
    assert result.status == PASSED, [str(v) for v in result.violations] or result.reason


def test_conventions(monkeypatch):
    fp32 = flashinfer(monkeypatch, "flashinfer").fn
    bf16 = flashinfer(monkeypatch, "flashinfer-bf16").fn
    assert fp32.conventions == {"pad": "negative", "pad_output": "zero"}
    assert bf16.conventions == {"pad": "nonpositive", "pad_output": "unwritten"}


@pytest.mark.parametrize(
    ("name", "fields", "reason"),
    [
        ("flashinfer", {"layout": {"state_layout": "kv"}}, "layout vk"),
        ("flashinfer", {"act_dtype": "fp32"}, "bf16 or fp16 only"),
        ("flashinfer", {"state_dtype": "bf16"}, "see flashinfer-bf16"),
        ("flashinfer", {"K": 64}, "K, V >= 128"),
        ("flashinfer", {"V": 132}, "V % 8 == 0"),
        ("flashinfer", {"layout": {"state_slot_pad": 2}}, "multiple of 4"),
        ("flashinfer-bf16", {"state_dtype": "fp32"}, "see flashinfer)"),
        ("flashinfer-bf16", {"state_dtype": "bf16", "V": 256}, "K = V = 128 only"),
        ("flashinfer-bf16", {"state_dtype": "bf16", "H": 2, "HV": 3}, "multiple of H"),
    ],
)
def test_declared_unsupported(monkeypatch, name, fields, reason):
    impl = flashinfer(monkeypatch, name)
    case = spec(**{**BIG, **fields})
    assert reason in (impl.unsupported(case) or "")
    assert run_case(case, impl, None, device="cpu").status == SKIPPED


def test_supported_cases_are_not_declared(monkeypatch):
    assert flashinfer(monkeypatch, "flashinfer").unsupported(spec(**BIG)) is None
    bf16 = spec(state_dtype="bf16", act_dtype="fp16", param_dtype="act", **BIG)
    assert flashinfer(monkeypatch, "flashinfer-bf16").unsupported(bf16) is None


def inputs(state_dtype, B=4, H=1, HV=2, K=128, V=128, N=6):
    g = torch.Generator().manual_seed(0)
    return dict(
        mixed_qkv=torch.randn(B, 2 * H * K + HV * V, generator=g).bfloat16(),
        a=torch.randn(B, HV, generator=g).bfloat16(),
        b=torch.randn(B, HV, generator=g).bfloat16(),
        A_log=torch.zeros(HV),
        dt_bias=torch.zeros(HV),
        state=torch.randn(N, HV, V, K, generator=g).to(state_dtype),
        out=torch.full((B, HV, V), float("nan"), dtype=torch.bfloat16),
    )


def test_bf16_null_slot_is_restored_and_padding_rows_left_alone(monkeypatch):
    """FlashInfer scribbles on slot 0 and on the padding rows' output: neither
    reaches the harness, and every live row is written."""
    x = inputs(torch.bfloat16)
    before = x["state"].clone()
    idx = torch.tensor([-1, 3, 0, 5], dtype=torch.int32)
    flashinfer(monkeypatch, "flashinfer-bf16").fn(**x, state_indices=idx, scale=0.1)
    assert torch.equal(x["state"][[0, 1, 2, 4]], before[[0, 1, 2, 4]])
    assert not torch.equal(x["state"][3], before[3]) and not torch.equal(x["state"][5], before[5])
    assert x["out"][[0, 2]].isnan().all() and not x["out"][[1, 3]].isnan().any()


def test_bf16_stand_in_really_writes_slot0():
    """The stand-in itself keeps FlashInfer's documented behaviour (so the test
    above shows the adapter, not a tame stand-in)."""
    from flashinfer.gdn_decode import gated_delta_rule_decode_pretranspose as op

    x = inputs(torch.bfloat16, B=2)
    before = x["state"].clone()
    q = x["mixed_qkv"][:, :128].view(2, 1, 1, 128)
    k = x["mixed_qkv"][:, 128:256].view(2, 1, 1, 128)
    v = x["mixed_qkv"][:, 256:].view(2, 1, 2, 128)
    output, _ = op(
        q, k, v, None, x["A_log"], x["a"].unsqueeze(1), x["dt_bias"], x["b"].unsqueeze(1),
        initial_state=x["state"], initial_state_indices=torch.tensor([-1, 2]),
    )  # fmt: skip
    assert not torch.equal(x["state"][0], before[0]) and (output[0] != 0).any()


def test_fp32_padding_rows_are_zero(monkeypatch):
    x = inputs(torch.float32)
    before = x["state"].clone()
    idx = torch.tensor([-1, 0, -1, 5], dtype=torch.int64)
    flashinfer(monkeypatch, "flashinfer").fn(**x, state_indices=idx, scale=0.1)
    assert (x["out"][[0, 2]] == 0).all() and not x["out"].isnan().any()
    assert not torch.equal(x["state"][0], before[0])  # slot 0 is live here
    assert torch.equal(x["state"][1:5], before[1:5])


@pytest.mark.parametrize("name", ["flashinfer", "flashinfer-bf16"])
def test_a_transposed_state_kernel_is_caught(monkeypatch, name):
    impl = flashinfer(monkeypatch, name)
    import _gdn_standin

    monkeypatch.setattr(_gdn_standin, "STATE_LAYOUT", "kv")
    case = (FP32_CASES if name == "flashinfer" else BF16_CASES)[0]
    result = run_case(case, impl, None, device="cpu")
    assert result.status == FAILED
    assert any(v.check == "values" for v in result.violations)


def test_no_cuda_device_is_the_reason_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ImplError) as exc:
        load_implementation("flashinfer")
    assert "need a CUDA device (compute capability 9.0+)" in str(exc.value)


def test_an_old_gpu_is_the_reason_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    with pytest.raises(ImplError) as exc:
        load_implementation("flashinfer-bf16")
    assert "compute capability 9.0+, not 8.0" in str(exc.value)


def test_kernels_that_did_not_import_are_named_when_it_loads(monkeypatch):
    """FlashInfer falls back silently when its CuTe DSL kernels fail to import
    (no ``cutlass`` on the path); the adapter refuses to load and says so."""
    import sys

    gdn = pytest.importorskip("flashinfer.gdn_decode")
    monkeypatch.setattr(gdn, "_PRETRANSPOSE_AVAILABLE", False, raising=False)
    monkeypatch.setitem(sys.modules, "flashinfer.gdn_kernels.gdn_decode_pretranspose", None)
    monkeypatch.delitem(sys.modules, "harness.impls.adapters.flashinfer", raising=False)
    with pytest.raises(ImplError, match=r"gdn_decode_pretranspose.*do not import"):
        flashinfer(monkeypatch, "flashinfer")
