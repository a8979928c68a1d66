"""Worked example: vLLM's packed GDN decode kernel as a harness implementation.

    pip install vllm          # on a CUDA machine
    gdn-harness run cases --impl examples.vllm_adapter:decode

vLLM's Qwen3-Next / Qwen3.5 decode path calls
``fused_recurrent_gated_delta_rule_packed_decode`` (checked against vLLM
0.33.0, where it lives in ``vllm.third_party.flash_linear_attention.ops``;
the module has moved between releases, so adjust the import to yours)::

    fused_recurrent_gated_delta_rule_packed_decode(
        mixed_qkv, a, b, A_log, dt_bias, scale,
        initial_state,          # the pool, [N, HV, V, K], updated in place
        out,                    # [B, 1, HV, V]
        ssm_state_indices,      # [B]
        use_qk_l2norm_in_kernel=False,
    ) -> (out, initial_state)

It is already the contract's operation, so the adapter only renames
arguments and adds the T = 1 axis to ``out``. What it cannot express is
declared in ``unsupported`` and those cases are skipped with the reason:

- vLLM stores the state as ``[V, K]`` per head (layout ``vk``) only;
- vLLM 0.33 treats slot 0 as its null block (``state_idx <= 0`` is
  padding), where the contract's only padding id is -1 and slot 0 is a
  real slot. A case that gives a live row slot 0 would report vLLM as
  wrong; it is vLLM's convention, not a bug, so such cases are skipped.

This module is an example, not part of the harness: the tests never import
it, and it fails to import, saying why, where vLLM is missing.
"""

from __future__ import annotations

import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before vLLM defines its Triton kernels

try:
    from vllm.third_party.flash_linear_attention.ops import (
        fused_recurrent_gated_delta_rule_packed_decode as _vllm_packed_decode,
    )
except ImportError as exc:
    raise ImportError(
        "vLLM's fused_recurrent_gated_delta_rule_packed_decode is not importable "
        f"({type(exc).__name__}: {exc}); install vLLM (pip install vllm) on a CUDA "
        "machine, or adjust the import in examples/vllm_adapter.py to your vLLM release"
    ) from exc


def decode(
    mixed_qkv: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
    state: torch.Tensor,
    state_indices: torch.Tensor,
    out: torch.Tensor,
    *,
    scale: float,
    use_qk_l2norm: bool = True,
    state_layout: str = "vk",
) -> None:
    """The contract, mapped onto vLLM's packed decode op."""
    if state_layout != "vk":
        raise ValueError(f"vLLM's packed decode only has the 'vk' layout, got {state_layout!r}")
    _vllm_packed_decode(
        mixed_qkv=mixed_qkv,
        a=a,
        b=b,
        A_log=A_log,
        dt_bias=dt_bias,
        scale=scale,
        initial_state=state,
        out=out.unsqueeze(1),  # [B, HV, V] -> vLLM's [B, T=1, HV, V], same memory
        ssm_state_indices=state_indices,
        use_qk_l2norm_in_kernel=use_qk_l2norm,
    )


def unsupported(case) -> str | None:
    """The case features vLLM's op cannot express, as a skip reason."""
    if case.layout.state_layout != "vk":
        return "vLLM's packed decode stores the state as [N, HV, V, K] (layout vk) only"
    from harness.inputs import slot_indices

    if 0 in slot_indices(case):
        return "vLLM treats slot 0 as its null block (state index <= 0 is padding)"
    return None


decode.unsupported = unsupported  # type: ignore[attr-defined]
