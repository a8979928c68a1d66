"""SGLang's packed GDN decode kernel as an implementation of the decode contract.

Registered as ``sglang``; install with ``pip install gdn-harness[sglang]``.
SGLang's ``fused_recurrent_gated_delta_rule_packed_decode`` (the packed
decode op of its Triton GDN backend, adapted from vLLM's) has vLLM's
signature::

    (mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out,
     ssm_state_indices, use_qk_l2norm_in_kernel=False) -> (out, initial_state)

so the adapter only renames arguments and adds the ``T = 1`` axis of
``out [B, 1, HV, V]`` (a view of the contract's ``out``). The state is
``[N, HV, V, K]`` (layout ``vk``) only. Every release that has the op treats a
negative index as padding and writes its output row as zeros: the
contract's own conventions. Where each release keeps the op
(``MODULES``) is listed in docs/outside-kernels.md.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.impls.adapters import _outside

INSTALL_HINT = (
    "SGLang is not installed (pip install gdn-harness[sglang]; its kernels need CUDA "
    "or the Triton interpreter)"
)
# Where SGLang keeps the op, newest first.
MODULES = (
    "sglang.kernels.ops.attention.fla.fused_recurrent",  # 0.5.16 and later
    "sglang.srt.layers.attention.fla.fused_recurrent",  # 0.5.10 to 0.5.15
)
PACKED_OP = "fused_recurrent_gated_delta_rule_packed_decode"
LAYOUT_REASON = "SGLang's packed decode stores the state as [N, HV, V, K] (layout vk) only"

_outside.interpret_without_cuda()
_, _packed_op = _outside.import_first("sglang", MODULES, PACKED_OP, INSTALL_HINT, "sglang")


def unsupported(case: Any) -> str | None:
    """The ``kv`` state layout, and H that does not divide HV (SGLang rejects it)."""
    if case.layout.state_layout != "vk":
        return LAYOUT_REASON
    if case.H <= 0 or case.HV % case.H:
        return f"SGLang needs HV to be a multiple of H (HV={case.HV}, H={case.H})"
    return None


def sglang_packed_decode(
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
    """The contract through SGLang's packed decode op (arguments renamed)."""
    _outside.require_vk(state_layout, LAYOUT_REASON)
    _packed_op(
        mixed_qkv=mixed_qkv,
        a=a,
        b=b,
        A_log=A_log,
        dt_bias=dt_bias,
        scale=float(scale),
        initial_state=state,
        out=out.unsqueeze(1),  # [B, HV, V] -> [B, T=1, HV, V], same memory
        ssm_state_indices=state_indices,
        use_qk_l2norm_in_kernel=bool(use_qk_l2norm),
    )


_outside.declare(
    sglang_packed_decode,
    pad=_outside.PAD_NEGATIVE,
    pad_output=_outside.OUT_ZERO,
    unsupported=unsupported,
)

__all__ = ["INSTALL_HINT", "MODULES", "sglang_packed_decode", "unsupported"]
