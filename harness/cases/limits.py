"""The bounds a case file must stay within, in one place.

Loading never allocates tensors, so a case too big for its tier is refused
from an estimate of the bytes it would allocate, before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GIB = 1 << 30
# Estimated input bytes (mixed_qkv + a/b + state pool + out) above which a
# case is refused at load time, per tier. Override with ``memory_limits=``.
DEFAULT_MEMORY_LIMITS: dict[str, int] = {"cpu": 2 * GIB, "gpu": 64 * GIB, "nightly": 64 * GIB}
# Work of a case, steps * B * HV * K * V (state elements updated), above
# which it is refused per tier, as sizes are by memory: the float64 oracle
# runs every case on the host, and on the cpu tier so does the Triton
# interpreter. About 600x the largest case of each tier's library (cpu 4.3e5,
# gpu 1.1e9, nightly 2.1e9). Override with ``work_limits=``.
DEFAULT_WORK_LIMITS: dict[str, int] = {"cpu": 1 << 28, "gpu": 1 << 40, "nightly": 1 << 40}
INDEX_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
MAX_VARIANTS = 4096  # per case: a matrix product beyond this is surely a mistake

# A case file is small text: the library's largest is about 11 KiB. These
# bound what a hostile or broken file can cost before it is refused.
MAX_FILE_BYTES = 1 << 20
# Values (scalars, lists and maps) a file may hold once aliases and merge keys
# are expanded, and again once defaults and matrix variants are: a 550-byte
# alias bomb expands to 10**9. The library's largest file holds 2,464.
MAX_VALUES = 100_000
# Lists and maps inside each other; a case file needs about 8.
MAX_NESTING = 32


@dataclass(frozen=True)
class TierLimits:
    """Memory (bytes) and work (state element updates) a case of each tier may need."""

    memory: Mapping[str, int]
    work: Mapping[str, int]

    @classmethod
    def with_changes(
        cls, memory: Mapping[str, int] | None = None, work: Mapping[str, int] | None = None
    ) -> TierLimits:
        """The defaults, with the given tiers' limits replaced."""
        return cls(
            {**DEFAULT_MEMORY_LIMITS, **(memory or {})}, {**DEFAULT_WORK_LIMITS, **(work or {})}
        )
