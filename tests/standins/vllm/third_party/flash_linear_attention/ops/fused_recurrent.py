"""Stand-in for vLLM's packed GDN decode op (vLLM 0.26 and later keep it here).

Slot 0 is the null block: a state index <= 0 is padding (its output row is
written as zeros) and slot 0 is never read or written.
"""

import _gdn_standin

NULL_BLOCK = True


def fused_recurrent_gated_delta_rule_packed_decode(
    mixed_qkv,
    a,
    b,
    A_log,
    dt_bias,
    scale,
    initial_state,
    out,
    ssm_state_indices,
    use_qk_l2norm_in_kernel=False,
):
    return _gdn_standin.packed_decode(
        mixed_qkv, a, b, A_log, dt_bias, scale, initial_state, out, ssm_state_indices,
        use_qk_l2norm_in_kernel, null_block=NULL_BLOCK,
    )  # fmt: skip
