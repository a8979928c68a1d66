"""The byte floor of a decode step, and how many input sets a timing rotates.

The step must at least read and write each live state once and read q, k,
v, a, b (plus A_log, dt_bias and the slot indices) and write out; those
bytes divided by the device-to-device copy bandwidth (``bandwidth.py``) are
the fastest the step could be. "% of floor" is floor time / measured time.

A timed call must find nothing of its own in L2, as in a model where the
other layers run in between, so the calls of one timing rotate over input
sets whose combined footprint is several times the L2 size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.bench.config import Shape

L2_FACTOR = 3.0  # rotated working set >= this many times the L2 size
MIN_SETS, MAX_SETS = 2, 512


@dataclass(frozen=True)
class StepBytes:
    """The fewest bytes one decode step must move, by tensor."""

    state: int  # live slots read once and written once
    qkv: int  # q, k, v read
    gates: int  # a, b read
    out: int  # out written
    params: int  # A_log, dt_bias read
    indices: int  # state_indices read

    @property
    def total(self) -> int:
        return self.state + self.qkv + self.gates + self.out + self.params + self.indices


def step_bytes(
    B: int,
    shape: Shape,
    act_bytes: int,
    state_bytes: int,
    param_bytes: int = 4,
    index_bytes: int = 4,
) -> StepBytes:
    """Byte floor of one step: what any implementation must read and write at least once."""
    H, HV, K, V = shape.H, shape.HV, shape.K, shape.V
    return StepBytes(
        state=2 * B * HV * K * V * state_bytes,
        qkv=B * (2 * H * K + HV * V) * act_bytes,
        gates=2 * B * HV * act_bytes,
        out=B * HV * V * act_bytes,
        params=2 * HV * param_bytes,
        indices=B * index_bytes,
    )


def set_footprint(B: int, shape: Shape, act_bytes: int, state_bytes: int) -> int:
    """Distinct bytes one input set occupies (its state region once, activations, out)."""
    sb = step_bytes(B, shape, act_bytes, state_bytes)
    return sb.state // 2 + sb.qkv + sb.gates + sb.out + sb.indices


def auto_input_sets(per_set: int, l2_bytes: int, mem_budget: int | None = None) -> int:
    """Enough sets that the rotation exceeds ``L2_FACTOR`` x L2, within the memory budget."""
    n = max(MIN_SETS, math.ceil(L2_FACTOR * l2_bytes / max(1, per_set)))
    n = min(MAX_SETS, n)
    if mem_budget is not None:
        n = min(n, max(1, mem_budget // max(1, per_set)))
    return int(n)
