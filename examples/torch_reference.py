"""A complete implementation of the decode contract in plain torch (fp32).

Copy this file as the starting point of an adapter for your own kernel:
keep the signature, replace the body with a call to your kernel. Test it,
from the repository root (or wherever this file lies), with:

    gdn-harness run cases --impl examples.torch_reference:decode --baseline none

Nothing here is Triton: it runs on the CPU and on CUDA alike, and it is slow
(a correctness template, not a kernel). The math is docs/design.md's, line by
line; see docs/outside-kernels.md for what the harness expects.
"""

from __future__ import annotations

import torch


def decode(
    mixed_qkv: torch.Tensor,  # [B, 2*H*K + HV*V], any row stride, last dim dense
    a: torch.Tensor,  # [B, HV], raw gate input
    b: torch.Tensor,  # [B, HV], raw beta input
    A_log: torch.Tensor,  # [HV]
    dt_bias: torch.Tensor,  # [HV]
    state: torch.Tensor,  # [N, HV, V, K] ("vk") or [N, HV, K, V] ("kv"), updated in place
    state_indices: torch.Tensor,  # [B], slot per row; negative = padding
    out: torch.Tensor,  # [B, HV, V], written
    *,
    scale: float,
    use_qk_l2norm: bool = True,
    state_layout: str = "vk",
) -> None:
    """One decode step: writes ``out`` and updates the named slots of ``state``."""
    if state_layout not in ("vk", "kv"):
        raise ValueError(f"state_layout must be 'vk' or 'kv', got {state_layout!r}")
    # Sizes follow from the shapes.
    B, HV = mixed_qkv.shape[0], state.shape[1]
    if state_layout == "vk":
        V, K = state.shape[2], state.shape[3]
    else:
        K, V = state.shape[2], state.shape[3]
    H = (mixed_qkv.shape[1] - HV * V) // (2 * K)

    # Split the packed projection ([q | k | v]), upcast, and give every value
    # head its key head: consecutive value heads share one (hv // (HV // H)).
    x = mixed_qkv.float()
    q = x[:, : H * K].reshape(B, H, K).repeat_interleave(HV // H, dim=1)
    k = x[:, H * K : 2 * H * K].reshape(B, H, K).repeat_interleave(HV // H, dim=1)
    v = x[:, 2 * H * K : 2 * H * K + HV * V].reshape(B, HV, V)
    if use_qk_l2norm:
        q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    q = q * scale

    # Gates in fp32: g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b).
    g = -torch.exp(A_log.float()) * torch.nn.functional.softplus(
        a.float() + dt_bias.float(), beta=1.0, threshold=20.0
    )
    beta = torch.sigmoid(b.float())

    # Padding rows: exact zeros, and no slot read or written.
    out.zero_()
    rows = torch.nonzero(state_indices >= 0).flatten()
    if rows.numel() == 0:
        return
    slots = state_indices[rows].long()

    S = state[slots].float()  # [L, HV, ., .]
    if state_layout == "vk":
        S = S.transpose(-1, -2)  # work in [K, V]
    q, k, v, g, beta = q[rows], k[rows], v[rows], g[rows], beta[rows]
    S = S * torch.exp(g)[..., None, None]  # decay
    u = (v - torch.einsum("lhkv,lhk->lhv", S, k)) * beta[..., None]  # delta rule
    S = S + k[..., :, None] * u[..., None, :]  # rank-1 update
    o = torch.einsum("lhkv,lhk->lhv", S, q)  # read out with the updated state

    out[rows] = o.to(out.dtype)
    if state_layout == "vk":
        S = S.transpose(-1, -2)
    state[slots] = S.to(state.dtype)


def unsupported(case) -> str | None:
    """Cases this implementation cannot express, with the reason; None: all of them.

    The harness calls this before each case and skips the case with the
    reason returned. A kernel that only knows one layout would say, e.g.::

        if case.layout.state_layout != "vk":
            return "my kernel only stores the state as [V, K]"
    """
    return None


decode.unsupported = unsupported  # type: ignore[attr-defined]
