"""Where the kernels run: compiled for a GPU, or under the Triton interpreter.

Tiling and launch options depend on it: the interpreter runs every program in
Python (so wider tiles are cheaper there) and has no grid dependency control.
"""

from __future__ import annotations

import os


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` is set to anything but ``0`` or empty."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
