"""Which array library a computation runs in: the one its input arrays belong to.

The oracle is written once against NumPy's API and runs unchanged in any
module that offers the same functions with the same semantics, CuPy above
all: NumPy arrays keep it on the CPU, CuPy arrays move it to their GPU. The
module is found from the arrays themselves (the top-level package of their
type), so this file imports nothing but NumPy.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

Array = Any  # a NumPy array, or an array of a module with NumPy's API (CuPy)
HOST_TYPES = (np.ndarray, np.generic, int, float, complex, list, tuple)


def _is_host(x: Any) -> bool:
    return x is None or isinstance(x, HOST_TYPES)


def array_namespace(*arrays: Any) -> ModuleType:
    """The NumPy-compatible module that owns ``arrays``: ``numpy`` when every
    one is a host array or a scalar, else the package of the others' type.

    Arrays of two different non-NumPy packages are an error: nothing moves
    between devices behind the caller's back.
    """
    found: ModuleType | None = None
    for x in arrays:
        if _is_host(x):
            continue
        name = type(x).__module__.partition(".")[0]
        module = sys.modules.get(name)
        if module is None or not hasattr(module, "einsum"):
            raise TypeError(f"not an array of a NumPy-compatible library: {type(x).__name__}")
        if found is not None and module is not found:
            raise TypeError(f"arrays of both {found.__name__} and {module.__name__}")
        found = module
    return found or np


def to_numpy(x: Any) -> np.ndarray:
    """A host copy of ``x`` (itself when it is already a NumPy array)."""
    xp = array_namespace(x)
    return np.asarray(x) if xp is np else xp.asnumpy(x)
