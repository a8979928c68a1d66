"""vLLM's GDN decode kernels as implementations of the decode contract.

Two names, both taken from an installed vLLM (``pip install gdn-harness[vllm]``):

``vllm``
    ``fused_recurrent_gated_delta_rule_packed_decode``, the packed decode op
    of vLLM's Qwen3-Next / Qwen3.5 layers: the contract's operation already,
    so the adapter only renames arguments and adds the ``T = 1`` axis of
    vLLM's ``out [B, 1, HV, V]`` (a view of the contract's ``out``)::

        (mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out,
         ssm_state_indices, use_qk_l2norm_in_kernel=False) -> (out, initial_state)

``vllm-sigmoid-gating``
    ``fused_sigmoid_gating_delta_rule_update``, the recurrent step of vLLM's
    unfused decode path, on split q/k/v (views of ``mixed_qkv``; vLLM makes
    them contiguous itself) with varlen ``cu_seqlens = arange(B + 1)`` as
    vLLM's layer passes it::

        (A_log, a, b, dt_bias, q, k, v, beta=1.0, threshold=20.0, scale=None,
         initial_state=None, inplace_final_state=True, cu_seqlens=None,
         ssm_state_indices=None, num_accepted_tokens=None,
         use_qk_l2norm_in_kernel=False, is_kda=False) -> (o, final_state)

    It returns a fresh ``o`` and never writes the rows of padding requests
    (vLLM discards them), so the adapter copies the rows the kernel writes
    into ``out`` and leaves the padding rows of ``out`` alone.

Both keep the state as ``[N, HV, V, K]`` (layout ``vk``) only. Where a
release keeps them (``OPS_PACKAGES``) and its padding convention
(``NULL_BLOCK_SINCE``) are listed in docs/outside-kernels.md; since vLLM
PR #39064 a state index ``<= 0`` is padding and slot 0 is the null block
(``pad: nonpositive``), before it a negative index was.

The ops are looked up when a name is first asked for (the module's
``__getattr__`` builds ``vllm_packed_decode`` and
``vllm_sigmoid_gating_decode``), so each loads on its own: a release without
the packed op still serves ``vllm-sigmoid-gating``.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.impls.adapters import _outside

INSTALL_HINT = (
    "vLLM is not installed (pip install gdn-harness[vllm]; its kernels need CUDA "
    "or the Triton interpreter)"
)
# Where vLLM keeps its copy of FLA's ops, newest first.
OPS_PACKAGES = (
    "vllm.third_party.flash_linear_attention.ops",  # 0.26 and later
    "vllm.model_executor.layers.fla.ops",  # up to 0.25
)
PACKED_OP = "fused_recurrent_gated_delta_rule_packed_decode"
SIGMOID_OP = "fused_sigmoid_gating_delta_rule_update"
# The first release whose kernels treat a state index <= 0 as padding (PR #39064).
NULL_BLOCK_SINCE = (0, 20)
LAYOUT_REASON = "vLLM's kernels store the state as [N, HV, V, K] (layout vk) only"


def _find(module: str, attr: str) -> Any:
    _outside.interpret_without_cuda()
    _, fn = _outside.import_first(
        "vllm", [f"{p}.{module}" for p in OPS_PACKAGES], attr, INSTALL_HINT, "vllm"
    )
    return fn


def vllm_version() -> str:
    """The installed vLLM release."""
    import vllm

    return _outside.installed_version("vllm", vllm)


def padding_convention(version: str) -> str:
    """``nonpositive`` from the release that made slot 0 the null block, else ``negative``."""
    released = _outside.version_tuple(version)
    if released and released >= NULL_BLOCK_SINCE:
        return _outside.PAD_NONPOSITIVE
    return _outside.PAD_NEGATIVE


def unsupported(case: Any) -> str | None:
    """What of ``case`` vLLM's kernels cannot express, or None.

    The ``kv`` state layout, and H that does not divide HV (vLLM rejects it).
    Every dtype, index width, stride and head dim of the contract is accepted.
    """
    if case.layout.state_layout != "vk":
        return LAYOUT_REASON
    if case.H <= 0 or case.HV % case.H:
        return f"vLLM needs HV to be a multiple of H (HV={case.HV}, H={case.H})"
    return None


def _packed_decode(packed_op: Any) -> Any:
    def vllm_packed_decode(
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
        """The contract through vLLM's packed decode op (arguments renamed)."""
        _outside.require_vk(state_layout, LAYOUT_REASON)
        packed_op(
            mixed_qkv=mixed_qkv,
            a=a,
            b=b,
            A_log=A_log,
            dt_bias=dt_bias,
            scale=float(scale),
            initial_state=state,
            out=out.unsqueeze(1),  # [B, HV, V] -> vLLM's [B, T=1, HV, V], same memory
            ssm_state_indices=state_indices,
            use_qk_l2norm_in_kernel=bool(use_qk_l2norm),
        )

    return vllm_packed_decode


def _sigmoid_gating_decode(sigmoid_op: Any, pad: str) -> Any:
    def vllm_sigmoid_gating_decode(
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
        """The contract through vLLM's fused sigmoid-gating recurrent op."""
        _outside.require_vk(state_layout, LAYOUT_REASON)
        H, HV, K, V = _outside.dims(mixed_qkv, state)
        B = mixed_qkv.shape[0]
        if B == 0:
            return
        q, k, v = _outside.split_qkv(mixed_qkv, H, HV, K, V)
        # vLLM's layer passes the decode tokens as one varlen sequence of B tokens.
        cu_seqlens = torch.arange(B + 1, dtype=torch.int32, device=mixed_qkv.device)
        fresh, _ = sigmoid_op(
            A_log=A_log,
            a=a,
            b=b,
            dt_bias=dt_bias,
            q=q.unsqueeze(0),
            k=k.unsqueeze(0),
            v=v.unsqueeze(0),
            scale=float(scale),
            initial_state=state,
            inplace_final_state=True,
            cu_seqlens=cu_seqlens,
            ssm_state_indices=state_indices,
            use_qk_l2norm_in_kernel=bool(use_qk_l2norm),
        )
        # The rows of padding requests in `fresh` are uninitialised memory.
        live = _outside.live_rows(state_indices, pad)
        _outside.keep_padding_rows(out, fresh.view(B, HV, V), live)

    return vllm_sigmoid_gating_decode


def _load(name: str) -> Any:
    if name == "vllm_packed_decode":
        fn = _packed_decode(_find("fused_recurrent", PACKED_OP))
        _outside.declare(
            fn,
            pad=padding_convention(vllm_version()),
            pad_output=_outside.OUT_ZERO,
            unsupported=unsupported,
        )
        return fn
    sigmoid_op = _find("fused_sigmoid_gating", SIGMOID_OP)
    pad = padding_convention(vllm_version())
    fn = _sigmoid_gating_decode(sigmoid_op, pad)
    _outside.declare(fn, pad=pad, pad_output=_outside.OUT_UNWRITTEN, unsupported=unsupported)
    return fn


def __getattr__(name: str) -> Any:
    """Build ``vllm_packed_decode`` / ``vllm_sigmoid_gating_decode`` on first use;
    an ``ImportError`` says why vLLM's op is not there."""
    if name not in ("vllm_packed_decode", "vllm_sigmoid_gating_decode"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    fn = _load(name)
    globals()[name] = fn
    return fn


__all__ = [
    "INSTALL_HINT",
    "NULL_BLOCK_SINCE",
    "OPS_PACKAGES",
    "padding_convention",
    "unsupported",
    "vllm_version",
]
