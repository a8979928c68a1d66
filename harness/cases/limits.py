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

# A case file is small text: the library's largest is about 11 KiB. These
# bound what a hostile or broken file can cost before it is refused.
MAX_FILE_BYTES = 1 << 20
# Values (scalars, lists and maps) a file may hold once aliases and merge keys
# are expanded, and again once defaults and matrix variants are: a 550-byte
# alias bomb expands to 10**9. The library's largest file holds 2,464.
MAX_VALUES = 100_000
# Lists and maps inside each other; a case file needs about 8.
MAX_NESTING = 32
