"""The bounds a case file must stay within, in one place.

Loading never allocates tensors, so a case too big for its tier is refused
from an estimate of the bytes it would allocate, before anything is built.
"""

from __future__ import annotations

GIB = 1 << 30
# Estimated input bytes (mixed_qkv + a/b + state pool + out) above which a
# case is refused at load time, per tier. Override with ``memory_limits=``.
DEFAULT_MEMORY_LIMITS: dict[str, int] = {"cpu": 2 * GIB, "gpu": 64 * GIB, "nightly": 64 * GIB}
INDEX_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
MAX_VARIANTS = 4096  # per case: a matrix product beyond this is surely a mistake
