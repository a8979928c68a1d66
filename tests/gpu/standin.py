"""A stand-in for CuPy on machines without a GPU: NumPy behind a wall.

Importing this file registers the module ``gdn_standin``: CuPy's NumPy-like
functions over ``DeviceArray``, a wrapper of a NumPy array that refuses to
mix with host arrays the way CuPy does. NumPy functions and ufuncs reject it,
implicit conversion raises, its functions reject host arrays, and a host
array index is refused, so code that works here keeps its data on the
"device" on a real GPU too. Every copy to and from the device is counted,
and so are the bytes of live device arrays (``STATS``), so tests can hold the
device check to its memory budget.

``ArrayDevice(gdn_standin)`` is then a check device for
``harness.check.pool.check_blocks`` on the CPU.
"""

from __future__ import annotations

import builtins
import sys
import weakref
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

NAME = "gdn_standin"


@dataclass
class Stats:
    """Traffic between host and stand-in device, and device memory in use."""

    uploads: int = 0
    upload_bytes: int = 0
    downloads: int = 0
    download_bytes: int = 0
    largest_download: int = 0
    live_bytes: int = 0
    peak_bytes: int = 0
    _owners: dict[int, int] = field(default_factory=dict)

    def reset(self) -> None:
        """Zero the counters; the peak starts again from what is live now."""
        self.uploads = self.upload_bytes = self.downloads = self.download_bytes = 0
        self.largest_download = 0
        self.peak_bytes = self.live_bytes

    def download(self, nbytes: int) -> None:
        self.downloads += 1
        self.download_bytes += nbytes
        self.largest_download = builtins.max(self.largest_download, nbytes)

    def hold(self, a: np.ndarray) -> None:
        """Count the memory under ``a`` once, until its owner is freed."""
        owner = a
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        key = id(owner)
        if key in self._owners:
            return
        self._owners[key] = owner.nbytes
        self.live_bytes += owner.nbytes
        self.peak_bytes = builtins.max(self.peak_bytes, self.live_bytes)
        weakref.finalize(owner, self._free, key)

    def _free(self, key: int) -> None:
        self.live_bytes -= self._owners.pop(key, 0)


STATS = Stats()


class DeviceArray:
    """A NumPy array that only the stand-in's functions may touch."""

    __slots__ = ("__weakref__", "_a")
    __array_ufunc__ = None  # NumPy ufuncs and operators with NumPy arrays refuse it
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, a: np.ndarray):
        self._a = a
        STATS.hold(a)

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented  # NumPy functions refuse it (TypeError)

    def __array__(self, *args, **kwargs):
        raise TypeError("implicit conversion of a device array to NumPy (use asnumpy)")

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype})"

    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    nbytes = property(lambda self: self._a.nbytes)
    T = property(lambda self: DeviceArray(self._a.T))

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (_wrap(x) for x in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value) -> None:
        with np.errstate(all="ignore"):
            self._a[_index(key)] = _unwrap(value, "setitem")

    # scalars come to the host explicitly, as in CuPy (each one a download)
    def _scalar(self):
        if self._a.size != 1:
            raise TypeError("only size-1 device arrays convert to Python scalars")
        STATS.download(self._a.nbytes)
        return self._a.reshape(()).item()

    def __float__(self) -> float:
        return float(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __bool__(self) -> bool:
        return bool(self._scalar())

    def item(self):
        return self._scalar()

    def get(self) -> np.ndarray:
        STATS.download(self._a.nbytes)
        return self._a.copy()

    def tolist(self):
        return self.get().tolist()

    # methods returning arrays
    def reshape(self, *shape):
        return _wrap(self._a.reshape(*shape))

    def view(self, dtype):
        return _wrap(self._a.view(dtype))

    def astype(self, dtype, copy=True):
        return _wrap(self._a.astype(dtype, copy=copy))

    def copy(self):
        return _wrap(self._a.copy())

    def ravel(self):
        return _wrap(self._a.ravel())

    def swapaxes(self, a, b):
        return _wrap(self._a.swapaxes(a, b))

    def transpose(self, *axes):
        return _wrap(self._a.transpose(*axes))

    def nonzero(self):
        return _wrap(self._a.nonzero())

    def max(self, axis=None, keepdims=False):
        return _wrap(self._a.max(axis=axis, keepdims=keepdims))

    def min(self, axis=None, keepdims=False):
        return _wrap(self._a.min(axis=axis, keepdims=keepdims))

    def sum(self, axis=None, dtype=None, keepdims=False):
        return _wrap(self._a.sum(axis=axis, dtype=dtype, keepdims=keepdims))

    def argmax(self, axis=None):
        return _wrap(self._a.argmax(axis=axis))

    def any(self, axis=None):
        return _wrap(self._a.any(axis=axis))

    def all(self, axis=None):
        return _wrap(self._a.all(axis=axis))


def _index(key):
    """An index into a device array: slices, ints, None, Ellipsis and device arrays."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, DeviceArray):
        return key._a
    if isinstance(key, (np.ndarray, list)):
        raise TypeError("a host array used to index a device array")
    return key


def _unwrap(x: Any, where: str):
    if isinstance(x, DeviceArray):
        return x._a
    if isinstance(x, np.ndarray) and x.ndim > 0:
        raise TypeError(f"{where}: a host array where a device array is needed")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    return x


def _wrap(r):
    """Results stay on the device; scalars come back as 0-d arrays, as in CuPy."""
    if isinstance(r, tuple):
        return tuple(_wrap(x) for x in r)
    if isinstance(r, np.ndarray):
        return DeviceArray(r)
    if isinstance(r, (np.generic, int, float, bool)):
        return DeviceArray(np.asarray(r))
    return r


def _device_fn(name: str):
    fn = getattr(np, name)

    def call(*args, **kwargs):
        args = _unwrap(args, name)
        kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
        with np.errstate(all="ignore"):  # CuPy never warns
            return _wrap(fn(*args, **kwargs))

    call.__name__ = name
    return call


def _operators() -> None:
    binary = {
        "add": np.add,
        "sub": np.subtract,
        "mul": np.multiply,
        "truediv": np.true_divide,
        "pow": np.power,
        "and": np.bitwise_and,
        "or": np.bitwise_or,
        "xor": np.bitwise_xor,
        "lshift": np.left_shift,
        "rshift": np.right_shift,
    }
    for op, ufunc in binary.items():

        def fwd(self, other, u=ufunc):
            with np.errstate(all="ignore"):
                return _wrap(u(self._a, _unwrap(other, u.__name__)))

        def rev(self, other, u=ufunc):
            with np.errstate(all="ignore"):
                return _wrap(u(_unwrap(other, u.__name__), self._a))

        def inplace(self, other, u=ufunc):
            with np.errstate(all="ignore"):
                u(self._a, _unwrap(other, u.__name__), out=self._a)
            return self

        setattr(DeviceArray, f"__{op}__", fwd)
        setattr(DeviceArray, f"__r{op}__", rev)
        setattr(DeviceArray, f"__i{op}__", inplace)
    compare = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}
    compare |= {"eq": np.equal, "ne": np.not_equal}
    for op, ufunc in compare.items():

        def cmp(self, other, u=ufunc):
            with np.errstate(all="ignore"):
                return _wrap(u(self._a, _unwrap(other, u.__name__)))

        setattr(DeviceArray, f"__{op}__", cmp)
    for op, ufunc in {"neg": np.negative, "abs": np.abs, "invert": np.invert}.items():
        setattr(DeviceArray, f"__{op}__", lambda self, u=ufunc: _wrap(u(self._a)))


_operators()

# CuPy's names for what the harness's array code calls (errstate, for one, is not
# there). They become this module's globals: its own code says builtins.max.
FUNCTIONS = [
    "abs",
    "add",
    "all",
    "any",
    "arange",
    "argmax",
    "bitwise_and",
    "concatenate",
    "count_nonzero",
    "divide",
    "einsum",
    "exp",
    "flatnonzero",
    "isfinite",
    "isinf",
    "isnan",
    "left_shift",
    "log1p",
    "matmul",
    "max",
    "maximum",
    "min",
    "minimum",
    "multiply",
    "negative",
    "nonzero",
    "repeat",
    "right_shift",
    "sign",
    "sqrt",
    "square",
    "subtract",
    "sum",
    "swapaxes",
    "take",
    "true_divide",
    "vdot",
    "where",
    "zeros_like",
]


def asarray(x, dtype=None):
    """Copy a host array to the device (a device array passes through, cast if asked)."""
    if isinstance(x, DeviceArray):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    a = np.array(x, dtype=dtype, copy=True)
    STATS.uploads += 1
    STATS.upload_bytes += a.nbytes
    return DeviceArray(a)


def array(x, dtype=None, copy=True):
    if isinstance(x, DeviceArray):
        return DeviceArray(np.array(x._a, dtype=dtype, copy=copy))
    return asarray(x, dtype)


def asnumpy(x) -> np.ndarray:
    return x.get() if isinstance(x, DeviceArray) else np.asarray(x)


def empty(shape, dtype=np.float64):
    return DeviceArray(np.empty(shape, dtype))


def zeros(shape, dtype=np.float64):
    return DeviceArray(np.zeros(shape, dtype))


class MemoryPool:
    """CuPy's cache of freed device memory: here it only counts the calls to empty it."""

    def __init__(self) -> None:
        self.emptied = 0

    def free_all_blocks(self) -> None:
        self.emptied += 1

    def free_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        """What CuPy's pool would hold after a check: its peak (blocks are cached, not freed)."""
        return STATS.peak_bytes


POOL = MemoryPool()


def get_default_memory_pool() -> MemoryPool:
    return POOL


def _module() -> ModuleType:
    mod = sys.modules[__name__]
    for fn in FUNCTIONS:
        setattr(mod, fn, _device_fn(fn))
    for dt in ("float16", "float32", "float64", "int32", "int64", "bool_", "uint8"):
        setattr(mod, dt, getattr(np, dt))
    mod.inf, mod.nan, mod.finfo, mod.ndarray = np.inf, np.nan, np.finfo, DeviceArray
    return mod


DeviceArray.__module__ = NAME  # the namespace lookup goes by the type's package
sys.modules[NAME] = _module()
