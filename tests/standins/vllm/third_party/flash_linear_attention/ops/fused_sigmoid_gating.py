"""Stand-in for vLLM's fused sigmoid-gating recurrent op (vLLM 0.26 and later keep it here).

It returns a fresh output whose padding rows it never writes (filled here
with ``UNWRITTEN``, where the real op leaves uninitialised memory); a state
index <= 0 is padding and slot 0 is the null block.
"""

import _gdn_standin
import torch

NULL_BLOCK = True
UNWRITTEN = 7777.0


def fused_sigmoid_gating_delta_rule_update(
    A_log,
    a,
    b,
    dt_bias,
    q,
    k,
    v,
    beta=1.0,
    threshold=20.0,
    scale=None,
    initial_state=None,
    inplace_final_state=True,
    cu_seqlens=None,
    ssm_state_indices=None,
    num_accepted_tokens=None,
    use_qk_l2norm_in_kernel=False,
    is_kda=False,
):
    if beta != 1.0 or threshold != 20.0 or not inplace_final_state or is_kda:
        raise NotImplementedError("the stand-in has the decode path only")
    B, T, H, K = k.shape
    HV, V = v.shape[2], v.shape[3]
    n = B * T if cu_seqlens is None else len(cu_seqlens) - 1
    if n != B * T:
        raise NotImplementedError("the stand-in has one token per sequence only")
    scale = K**-0.5 if scale is None else scale
    mixed = torch.cat([q.reshape(n, H * K), k.reshape(n, H * K), v.reshape(n, HV * V)], 1)
    idx = ssm_state_indices.long()
    live = idx > 0 if NULL_BLOCK else idx >= 0
    rows = live.nonzero().flatten()
    o = torch.full((n, HV, V), UNWRITTEN, dtype=q.dtype)
    o[rows] = _gdn_standin.run_rows(
        mixed, a.reshape(n, HV), b.reshape(n, HV), A_log, dt_bias, initial_state,
        rows, idx[rows], H=H, scale=scale, l2norm=use_qk_l2norm_in_kernel,
    ).to(q.dtype)  # fmt: skip
    return o.reshape(*v.shape), initial_state
