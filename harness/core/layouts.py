"""State layouts and the padding sentinel: the contract's vocabulary, in one place.

A state slot is a ``K x V`` matrix stored either value-major (``vk``: the
slot is ``[HV, V, K]``, K contiguous) or key-major (``kv``: ``[HV, K, V]``).
docs/design.md explains both and why kernels support both.
"""

from __future__ import annotations

VK = "vk"
KV = "kv"
LAYOUTS = (VK, KV)

# The state index that marks a padding row under the default convention.
PAD_SLOT_ID = -1


def slot_shape(layout: str, K: int, V: int) -> tuple[int, int]:
    """The two inner dimensions of one head's state in ``layout``."""
    if layout not in LAYOUTS:
        raise ValueError(f"state_layout: must be one of {LAYOUTS}, got {layout!r}")
    return (V, K) if layout == VK else (K, V)
