"""Stand-in for SGLang's packed GDN decode op (SGLang 0.5.16 and later keep it here).

A negative state index is padding (its output row is written as zeros);
slot 0 is a live slot.
"""

import _gdn_standin


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
        use_qk_l2norm_in_kernel, null_block=False,
    )  # fmt: skip
