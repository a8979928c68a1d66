"""The float64 oracle wrapped to the contract (torch tensors in, in place out).

Lets ``--impl oracle`` run through the same path as any kernel, which is how
the harness checks its own tolerance policy: the oracle rounded to the
output and state dtypes must pass every case.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.core.host import to_f64 as _np
from reference.oracle import decode_step


def oracle_decode(
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
    """Run the oracle on the named slots only, then cast back in place."""
    idx = state_indices.detach().to("cpu", torch.int64)
    live = idx[idx >= 0]
    slots = _np(state[live.to(state.device)])
    local = np.where(idx.numpy() >= 0, 0, -1)
    local[local == 0] = np.arange(live.numel())
    out_np = np.zeros(tuple(out.shape), np.float64)
    decode_step(
        _np(mixed_qkv),
        _np(a),
        _np(b),
        _np(A_log),
        _np(dt_bias),
        slots,
        local,
        out_np,
        scale=scale,
        use_qk_l2norm=use_qk_l2norm,
        state_layout=state_layout,
    )
    out.copy_(torch.from_numpy(out_np).to(out.device, out.dtype))
    state[live.to(state.device)] = torch.from_numpy(slots).to(state.device, state.dtype)


# The oracle computes; it does not police arguments, so the error cases (which
# exercise the kernel wrappers' validation) are skipped for it.
oracle_decode.validates = False  # type: ignore[attr-defined]
