"""flash-linear-attention (``fla-core``) as an implementation of the decode contract.

Registered as ``fla`` (``gdn-harness run --impl fla``); install with
``pip install gdn-harness[fla]``. Written against fla-core 0.6.0.

Entry point: ``fla.ops.gated_delta_rule.fused_recurrent_gated_delta_rule``,
the fused recurrent kernel that FLA's own ``GatedDeltaNet`` layer uses for
decode, called with T = 1 and:

- ``use_gate_in_kernel=True`` with raw ``a`` as ``g`` and ``A_log``,
  ``dt_bias``: the kernel computes ``g = -exp(A_log) * softplus(a + dt_bias)``
  itself, in fp32;
- ``use_beta_sigmoid_in_kernel=True`` with raw ``b``: ``beta = sigmoid(b)``
  in fp32 inside the kernel (never rounded to the activation dtype);
- ``use_qk_l2norm_in_kernel``, ``scale``, and ``state_v_first`` for the
  ``vk`` state layout (FLA's default is ``[K, V]``, the ``kv`` layout).

So the gates, the L2 norm and the recurrence are all FLA's code; the adapter
only moves data. Older FLA releases without in-kernel gates, in-kernel beta
sigmoid or a V-first state (0.3, 0.4) are still served: the adapter then
computes ``g`` and ``beta`` in fp32 torch and transposes ``vk`` states
around the call (``FEATURES`` says which path the installed FLA takes).
Those releases run on CUDA only: their input guard enters
``torch.cpu.device``, which torch does not have, and 0.5.2 does not import
under Triton 3.9. Without a GPU, use fla-core 0.6 or later.

FLA's fused recurrent kernel has no state pool: it reads ``initial_state``
``[B, HV, ., .]`` and returns a fresh fp32 ``final_state``. The adapter
therefore gathers each row's slot from the pool by index, runs FLA on dense
``[B, 1, H, K]`` / ``[B, 1, HV, V]`` copies of q/k/v (FLA supports H < HV
with the contract's mapping ``h = hv // (HV // H)``), and scatters the final
states back, rounded to the pool's dtype. Padding rows (negative index) get
exact zeros in ``out`` and their results are dropped: they gather slot 0
(a clamped index, never out of bounds) and no slot is changed on their
behalf. The adapter is free of host synchronisation (no
``nonzero``, no ``.item()``), so it can be captured in a CUDA graph; the
scatter writes, for each padding row, the same value a live row writes to
the same slot, and when no row is live it writes slot 0's own bits back.

It runs on CUDA and, on a machine without CUDA, under the Triton
interpreter: importing this module sets ``TRITON_INTERPRET=1`` before FLA is
imported (as ``kernels`` does). If FLA was imported earlier without it, the
import fails with that reason.
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

import torch

from harness.impls.adapters import _outside

INSTALL_HINT = "fla-core is not installed (pip install gdn-harness[fla])"

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

try:
    with warnings.catch_warnings():
        # On a machine without a GPU, FLA warns that it "rolls back to CPU".
        warnings.simplefilter("ignore")
        import fla
        from fla.ops.gated_delta_rule import fused_recurrent as _fla_fr
except ModuleNotFoundError as exc:
    if exc.name == "fla" or (exc.name or "").startswith("fla."):
        raise ImportError(INSTALL_HINT) from exc
    raise ImportError(f"fla-core is installed but cannot be imported: {exc}") from exc
except Exception as exc:  # e.g. a release that does not work with this Triton
    raise ImportError(
        f"fla-core is installed but cannot be imported: {type(exc).__name__}: {exc}"
    ) from exc

FLA_VERSION: str = getattr(fla, "__version__", "unknown")
_fla_recurrent = _fla_fr.fused_recurrent_gated_delta_rule
_PARAMS = inspect.signature(_fla_recurrent).parameters

# What the installed FLA can do inside its kernel; the rest the adapter does.
FEATURES: dict[str, Any] = {
    "gate_in_kernel": {"use_gate_in_kernel", "A_log", "dt_bias"} <= _PARAMS.keys(),
    "beta_sigmoid_in_kernel": "use_beta_sigmoid_in_kernel" in _PARAMS,
    # the keyword that stores the state as [V, K] (renamed in fla-core 0.5)
    "v_first_kwarg": next(
        (k for k in ("state_v_first", "transpose_state_layout") if k in _PARAMS), None
    ),
    # slots of a pool by index (the adapter gathers and scatters them itself)
    "state_indices": "ssm_state_indices" in _PARAMS,
}


def _interpreted(kernel: Any) -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    seen = 0
    while kernel is not None and seen < 8:  # Autotuner / Heuristics wrap the JIT function
        if isinstance(kernel, InterpretedFunction):
            return True
        kernel, seen = getattr(kernel, "fn", None), seen + 1
    return False


if not torch.cuda.is_available():
    _kernel = getattr(_fla_fr, "fused_recurrent_gated_delta_rule_fwd_kernel", None)
    if _kernel is not None and not _interpreted(_kernel):
        raise ImportError(
            "fla was imported before TRITON_INTERPRET=1 was set, so its Triton kernels "
            "cannot run on this machine (no CUDA device); set TRITON_INTERPRET=1 in the "
            "environment, or import harness.impls.adapters.fla before fla"
        )


def unsupported(case: Any) -> str | None:
    """What of ``case`` this adapter cannot express, or None.

    FLA's kernel takes the key head of value head ``hv`` as ``hv // (HV // H)``
    (the contract's mapping), which needs HV to be a multiple of H. Every
    other case feature (strides, padding, pools with padded slots, both state
    layouts, fp32/bf16/fp16 states, int32/int64 indices, parameters in the
    activation dtype, head dims that are not powers of two) the adapter
    maps onto FLA.
    """
    if case.H <= 0 or case.HV % case.H:
        return f"FLA needs HV to be a multiple of H (HV={case.HV}, H={case.H})"
    return None


def _gates_fp32(a, b, A_log, dt_bias):
    """The contract's gates in fp32 torch (only for FLA releases without in-kernel gates)."""
    x = a.float() + dt_bias.float()
    g = -torch.exp(A_log.float()) * torch.nn.functional.softplus(x, beta=1.0, threshold=20.0)
    return g, torch.sigmoid(b.float())


def recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    initial_state: torch.Tensor, *, state_layout: str, **fla_kw: Any,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """FLA's fused recurrent kernel with the state in the contract's ``state_layout``.

    ``q``, ``k`` ``[B, T, H, K]``, ``v`` ``[B, T, HV, V]``, ``g`` and ``beta``
    ``[B, T, HV]`` as FLA takes them; ``initial_state`` dense ``[B, HV, V, K]``
    (vk) or ``[B, HV, K, V]`` (kv); ``fla_kw`` FLA's own keywords (``scale``,
    ``use_qk_l2norm_in_kernel``, the in-kernel gates). Returns ``(o,
    final_state)``, the final state (fp32) in the same layout. The adapter
    and the bench's recurrent comparison both call FLA through here.
    """
    transpose = state_layout == "vk" and FEATURES["v_first_kwarg"] is None
    if state_layout == "vk" and not transpose:
        fla_kw[FEATURES["v_first_kwarg"]] = True
    h0 = initial_state.transpose(-1, -2) if transpose else initial_state
    with warnings.catch_warnings():
        # Under the interpreter FLA's softplus evaluates exp(x) on both sides of
        # its x < 20 select, and NumPy warns when the discarded side overflows.
        warnings.filterwarnings("ignore", "overflow encountered in exp", RuntimeWarning)
        o, ht = _fla_recurrent(
            q, k, v, g=g, beta=beta, initial_state=h0, output_final_state=True, **fla_kw
        )
    return o, (ht.transpose(-1, -2) if transpose else ht)


def fla_decode(
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
    """One decode step through FLA's fused recurrent gated delta rule (the contract)."""
    H, HV, K, V = _outside.dims(mixed_qkv, state, state_layout)
    B = mixed_qkv.shape[0]
    if B == 0:
        return
    idx = state_indices.to(torch.int64)
    live = idx >= 0
    slot = idx.clamp(min=0)  # padding rows gather slot 0 (in bounds), never slot -1

    q = mixed_qkv[:, : H * K].reshape(B, 1, H, K)
    k = mixed_qkv[:, H * K : 2 * H * K].reshape(B, 1, H, K)
    v = mixed_qkv[:, 2 * H * K : 2 * H * K + HV * V].reshape(B, 1, HV, V)
    h0 = state[slot]  # [B, HV, ., .] in the pool's dtype; FLA upcasts on load

    kw: dict[str, Any] = {}
    if FEATURES["gate_in_kernel"]:
        g = a.reshape(B, 1, HV)
        kw.update(use_gate_in_kernel=True, A_log=A_log, dt_bias=dt_bias)
    else:
        g, _ = _gates_fp32(a, b, A_log, dt_bias)
        g = g.reshape(B, 1, HV)
    if FEATURES["beta_sigmoid_in_kernel"]:
        beta = b.reshape(B, 1, HV)
        kw.update(use_beta_sigmoid_in_kernel=True)
    else:
        beta = torch.sigmoid(b.float()).reshape(B, 1, HV)
    kw.update(scale=float(scale), use_qk_l2norm_in_kernel=bool(use_qk_l2norm))
    o, ht = recurrent(q, k, v, g, beta, h0, state_layout=state_layout, **kw)

    zero = torch.zeros((), dtype=out.dtype, device=out.device)
    out.copy_(torch.where(live.view(B, 1, 1), o.view(B, HV, V).to(out.dtype), zero))
    # Scatter without a host sync: a padding row writes what the first live
    # row writes (to that row's slot); with no live row at all, row 0 writes
    # slot 0's own gathered bits back. Every slot thus receives one value.
    first = torch.argmax(live.to(torch.int32))  # the first live row, or 0
    src = torch.where(live, torch.arange(B, device=idx.device), first)
    new = torch.where(live.view(B, 1, 1, 1), ht.to(state.dtype), h0)
    state[slot[src]] = new[src]


fla_decode.unsupported = unsupported  # type: ignore[attr-defined]

__all__ = ["FEATURES", "FLA_VERSION", "INSTALL_HINT", "fla_decode", "recurrent", "unsupported"]
