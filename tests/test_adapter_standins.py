"""The adapters for vLLM, SGLang and FlashInfer: what they share, and the
``standins`` fixture the per-package tests use.

CI has neither a GPU nor those packages, so the adapters are tested against
the stand-in packages under tests/standins/ (same module paths and
signatures, plain-torch math, the real padding conventions), put on
``sys.path`` by the fixture only.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from harness.impls import adapters
from harness.impls.adapters import _outside
from harness.impls.registry import ImplError, available_impls, load_implementation

STANDINS = Path(__file__).parent / "standins"
PACKAGES = ("vllm", "sglang", "flashinfer", "_gdn_standin")
ADAPTER_MODULES = tuple(f"harness.impls.adapters.{p}" for p in ("vllm", "sglang", "flashinfer"))
NAMES = ("vllm", "vllm-sigmoid-gating", "sglang", "flashinfer", "flashinfer-bf16")


def _forget_packages() -> None:
    """Drop the stand-ins and the adapters from ``sys.modules`` (re-imported fresh)."""
    for name in list(sys.modules):
        if name.split(".")[0] in PACKAGES or name in ADAPTER_MODULES:
            del sys.modules[name]
    for name in ADAPTER_MODULES:  # the parent package keeps an attribute too
        adapters.__dict__.pop(name.rpartition(".")[2], None)


@pytest.fixture
def standins(monkeypatch):
    """tests/standins on ``sys.path`` for one test; every module it brought is
    forgotten afterwards, so no other test sees a stand-in ``vllm``."""
    _forget_packages()
    monkeypatch.syspath_prepend(str(STANDINS))
    yield STANDINS
    _forget_packages()


@pytest.fixture
def hidden(monkeypatch):
    """The outside packages made unimportable, whether installed or not."""
    _forget_packages()
    for package in ("vllm", "sglang", "flashinfer"):
        monkeypatch.setitem(sys.modules, package, None)
    yield
    _forget_packages()


def test_every_adapter_is_listed():
    assert set(NAMES) <= set(available_impls())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("vllm", "vLLM is not installed (pip install gdn-harness[vllm]"),
        ("vllm-sigmoid-gating", "vLLM is not installed (pip install gdn-harness[vllm]"),
        ("sglang", "SGLang is not installed (pip install gdn-harness[sglang]"),
        ("flashinfer", "FlashInfer is not installed (pip install gdn-harness[flashinfer])"),
        ("flashinfer-bf16", "FlashInfer is not installed (pip install gdn-harness[flashinfer])"),
    ],
)
def test_missing_package_names_the_extra(hidden, name, message):
    with pytest.raises(ImplError) as exc:
        load_implementation(name)
    assert message in str(exc.value) and f"'{name}'" in str(exc.value)


def test_installed_package_without_the_op_lists_the_paths_tried(tmp_path, monkeypatch):
    _forget_packages()
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text('__version__ = "0.17.1"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ImplError) as exc:
            load_implementation("vllm")
    finally:
        _forget_packages()
    message = str(exc.value)
    assert "vllm 0.17.1 is installed but has no fused_recurrent_gated_delta_rule_packed_decode" in (
        message
    )
    assert "vllm.third_party.flash_linear_attention.ops.fused_recurrent" in message
    assert "vllm.model_executor.layers.fla.ops.fused_recurrent" in message


def test_a_broken_module_is_reported_with_its_error(tmp_path, monkeypatch):
    _forget_packages()
    ops = tmp_path / "sglang" / "kernels" / "ops" / "attention" / "fla"
    ops.mkdir(parents=True)
    (tmp_path / "sglang" / "__init__.py").write_text("")
    (ops / "fused_recurrent.py").write_text("import a_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ImplError) as exc:
            load_implementation("sglang")
    finally:
        _forget_packages()
    assert "sglang is installed but sglang.kernels.ops.attention.fla.fused_recurrent" in str(
        exc.value
    )
    assert "a_dependency_that_is_missing" in str(exc.value)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.34.0", (0, 34, 0)), ("0.20.1rc1.dev3+gabc", (0, 20, 1)), ("unknown", ())],
)
def test_version_tuple(version, expected):
    assert _outside.version_tuple(version) == expected


def test_padding_rows_keep_their_bits():
    import torch

    out = torch.full((3, 2, 2), float("nan"))
    fresh = torch.arange(12.0).view(3, 2, 2)
    live = _outside.live_rows(torch.tensor([0, -1, 4]), _outside.PAD_NONPOSITIVE)
    _outside.keep_padding_rows(out, fresh, live)
    assert out[:2].isnan().all() and torch.equal(out[2], fresh[2])
    live = _outside.live_rows(torch.tensor([0, -1, 4]), _outside.PAD_NEGATIVE)
    assert live.tolist() == [True, False, True]


def write_package(root: Path, files: dict[str, str]) -> None:
    """Write a small package tree (for stand-ins of older releases) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
