"""The GDN decode step in plain fp32 torch, shared by the stand-in packages.

The stand-ins under tests/standins/ (``vllm``, ``sglang``, ``flashinfer``)
have the module paths and signatures of the real packages' decode ops and
their padding conventions, and compute with ``step`` below. They exist so
the adapters' mapping can be tested on a machine without a GPU; they are
never a reference for the math (the oracle is).

``STATE_LAYOUT`` is how the stand-ins read a state slot: ``"vk"``, like the
real kernels; a test sets ``"kv"`` to plant a transposed-state kernel and
checks that the harness catches it.
"""

from __future__ import annotations

import torch

STATE_LAYOUT = "vk"


def step(q, k, v, a, b, A_log, dt_bias, h, *, scale, l2norm):
    """One decode step for n rows, all fp32.

    q, k ``[n, HV, K]`` (already expanded to value heads), v ``[n, HV, V]``,
    a, b ``[n, HV]``, A_log, dt_bias ``[HV]``, h ``[n, HV, V, K]``.
    Returns ``o [n, HV, V]`` and the new ``h``.
    """
    if l2norm:
        q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k * torch.rsqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    q = q * scale
    x = a + dt_bias
    g = -torch.exp(A_log) * torch.where(x <= 20.0, torch.log1p(torch.exp(x)), x)
    h = h * torch.exp(g)[..., None, None]
    u = (v - torch.einsum("nhvk,nhk->nhv", h, k)) * torch.sigmoid(b)[..., None]
    h = h + u[..., :, None] * k[..., None, :]
    return torch.einsum("nhvk,nhk->nhv", h, q), h


def heads(mixed_qkv, H, HV, K, V):
    """q, k ``[B, HV, K]`` (key heads repeated per value head) and v ``[B, HV, V]``, fp32."""
    x = mixed_qkv.float()
    q = x[:, : H * K].reshape(-1, H, K).repeat_interleave(HV // H, dim=1)
    k = x[:, H * K : 2 * H * K].reshape(-1, H, K).repeat_interleave(HV // H, dim=1)
    v = x[:, 2 * H * K : 2 * H * K + HV * V].reshape(-1, HV, V)
    return q, k, v


def read_slots(pool, slots):
    """The slots ``[n, HV, V, K]`` in fp32, read per ``STATE_LAYOUT``."""
    h = pool[slots].float()
    return h if STATE_LAYOUT == "vk" else h.transpose(-1, -2)


def write_slots(pool, slots, h):
    """Store ``h`` ``[n, HV, V, K]`` into the slots, rounded to the pool's dtype."""
    pool[slots] = (h if STATE_LAYOUT == "vk" else h.transpose(-1, -2)).to(pool.dtype)


def run_rows(mixed_qkv, a, b, A_log, dt_bias, pool, rows, slots, *, H, scale, l2norm):
    """The step for ``rows`` on ``slots``: returns ``o [n, HV, V]`` fp32, updates the pool."""
    HV, V, K = pool.shape[1], pool.shape[2], pool.shape[3]
    q, k, v = heads(mixed_qkv[rows], H, HV, K, V)
    h = read_slots(pool, slots)
    o, h = step(
        q, k, v, a[rows].float(), b[rows].float(), A_log.float(), dt_bias.float(), h,
        scale=scale, l2norm=l2norm,
    )  # fmt: skip
    write_slots(pool, slots, h)
    return o


def key_heads(width, HV, V, K):
    """H from the packed width, as the real ops infer it."""
    H, rest = divmod(width - HV * V, 2 * K)
    if rest or H <= 0 or HV % H:
        raise ValueError(f"Invalid head config inferred from mixed_qkv: width={width}, HV={HV}.")
    return H


def packed_decode(
    mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out, ssm_state_indices,
    use_qk_l2norm_in_kernel, *, null_block,
):  # fmt: skip
    """The packed decode op of vLLM and SGLang: in place into ``initial_state``
    and ``out [B, 1, HV, V]``; padding rows get zeros and touch no slot."""
    if mixed_qkv.ndim != 2 or mixed_qkv.stride(-1) != 1:
        raise ValueError("`mixed_qkv` must be 2D and contiguous in the last dim.")
    if initial_state.ndim != 4 or initial_state.stride(-1) != 1:
        raise ValueError("`initial_state` must be 4D and contiguous in the last dim.")
    if not out.is_contiguous():
        raise ValueError("`out` must be contiguous.")
    B = mixed_qkv.shape[0]
    HV, V, K = initial_state.shape[-3:]
    if tuple(out.shape) != (B, 1, HV, V):
        raise ValueError(f"`out` must have shape {(B, 1, HV, V)} (got {tuple(out.shape)}).")
    H = key_heads(mixed_qkv.shape[1], HV, V, K)
    idx = ssm_state_indices.long()
    live = idx > 0 if null_block else idx >= 0
    rows = live.nonzero().flatten()
    o = run_rows(
        mixed_qkv, a, b, A_log, dt_bias, initial_state, rows, idx[rows],
        H=H, scale=scale, l2norm=use_qk_l2norm_in_kernel,
    )  # fmt: skip
    out[~live] = 0
    out[rows] = o.unsqueeze(1).to(out.dtype)
    return out, initial_state
