"""Stand-in for ``flashinfer.gdn_decode.gated_delta_rule_decode_pretranspose``
(pool mode only), with the argument checks and padding conventions of its two
paths:

- bf16 state (K = V = 128): a negative index is sent to slot 0, a
  sacrificial null buffer that is read and written like a live slot; the
  padding row's output is computed from it (undefined for the caller);
- fp32 state (K, V >= 128, V % 8 == 0): a negative index is skipped, its
  output row is zeros and no slot is touched.

The output is ``[B, 1, HV, V]`` in the dtype of q.
"""

import _gdn_standin
import torch


def gated_delta_rule_decode_pretranspose(
    q,
    k,
    v,
    state,
    A_log,
    a,
    dt_bias,
    b,
    scale=None,
    output=None,
    use_qk_l2norm=True,
    initial_state=None,
    initial_state_indices=None,
    output_state_indices=None,
    intermediate_states_buffer=None,
    disable_state_update=False,
    backend="auto",
):
    if state is not None or initial_state is None or output_state_indices is not None:
        raise NotImplementedError("the stand-in has the pool mode only")
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    assert T == 1, f"Decode only supports T=1, got T={T}"
    pool = initial_state
    assert pool.shape == (pool.shape[0], HV, V, K), f"initial_state shape {pool.shape}"
    assert pool.stride(-1) == 1, "initial_state must be K-contiguous"
    assert q.dtype in (torch.float16, torch.bfloat16), f"q must be float16/bfloat16, got {q.dtype}"
    assert A_log.dtype == torch.float32, f"A_log must be float32, got {A_log.dtype}"
    assert dt_bias.dtype in (torch.bfloat16, torch.float32), f"dt_bias dtype {dt_bias.dtype}"
    assert initial_state_indices.dtype in (torch.int32, torch.int64)
    idx = initial_state_indices.long()
    if pool.dtype == torch.bfloat16 and K == 128 and V == 128:
        live = torch.ones(B, dtype=torch.bool)
        slots = idx.clamp(min=0)  # -1 -> the null buffer, slot 0
    else:
        assert pool.dtype == torch.float32, f"initial_state must be float32, got {pool.dtype}"
        assert K >= 128 and V >= 128 and V % 8 == 0, f"K={K}, V={V}"
        assert pool.stride(0) % 4 == 0, f"stride(0)={pool.stride(0)}"
        live = idx >= 0
        slots = idx
    rows = live.nonzero().flatten()
    mixed = torch.cat([q.reshape(B, H * K), k.reshape(B, H * K), v.reshape(B, HV * V)], 1)
    scale = K**-0.5 if scale is None else scale
    result = torch.zeros(B, 1, HV, V, dtype=q.dtype)
    result[rows] = _gdn_standin.run_rows(
        mixed, a.reshape(B, HV), b.reshape(B, HV), A_log, dt_bias, pool, rows, slots[rows],
        H=H, scale=scale, l2norm=use_qk_l2norm,
    ).unsqueeze(1).to(q.dtype)  # fmt: skip
    if output is None:
        return result, pool
    output.copy_(result)
    return output, pool
