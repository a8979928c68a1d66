"""Per-cell error statistics of a piece in one pass: what the GPU check reads.

``ErrorStats.add`` makes a dozen whole-array passes over a piece (the
error, its square, the ratio to the bound, the relative error, their maxima
and their locations). On a GPU those passes cost more than the oracle, so
the device check computes everything it needs per (row, head) cell in one
pass that also forms the bound: the largest absolute error, relative error
and error/bound ratio of each cell with the index of their first maximum,
the tested and reference values at the worst ratio, the counts over the
bound, of NaN, of Inf and of Infs that correctly round an overflow, and the
sums of squares. ``ErrorStats.add_cells`` folds them into the same
statistics ``ErrorStats.add`` gives.

Two implementations of one element rule (the rule of ``ErrorStats.add`` for
pieces that hold NaN or Inf, which for finite values is the plain one):

* ``cell_stats_array``, written in NumPy's API, for any array module (the
  CPU tests run it on a NumPy stand-in for CuPy, and it is the reference the
  CUDA kernel is validated against);
* a CUDA kernel compiled by CuPy, used for CuPy arrays: every arithmetic step
  is one correctly rounded IEEE operation, as NumPy's are, so bounds, ratios,
  counts and locations are bit-identical and only the sums of squares differ
  in their rounding order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.check.compare import (
    element_errors,
    error_ratio,
    relative_error,
    relative_floor,
    saturate_overflow,
)
from harness.check.tolerance import EPS32, FP32_TINY, ElementTol
from harness.core.dtypes import DTYPES
from reference.namespace import Array, array_namespace, to_numpy

CELL_THREADS = 32  # a warp per cell (cells_kernel.cu)
CELLS_PER_BLOCK = 8  # 256-thread blocks
UNROLL = 4


@dataclass
class CellStats:
    """Host arrays ``[cells]`` for one tested array against one reference.
    ``*_at`` are flat indices inside the cell (C order); the worst fields are
    empty when no bound was given."""

    max_abs: np.ndarray
    max_abs_at: np.ndarray
    max_rel: np.ndarray
    max_rel_at: np.ndarray
    err_sq: np.ndarray
    ref_sq: np.ndarray
    nan: np.ndarray
    inf: np.ndarray
    worst: np.ndarray | None = None
    worst_at: np.ndarray | None = None
    worst_x: np.ndarray | None = None
    worst_ref: np.ndarray | None = None
    over: np.ndarray | None = None
    rounded_inf: np.ndarray | None = None


@dataclass(frozen=True)
class BoundParams:
    """The bound of ``ElementTol.bound`` and the overflow threshold, as plain numbers."""

    ulps: float
    c32: float  # fp32_ulps * eps32
    min_exponent: int  # of the dtype's normal range, as float64 exponent bits
    mantissa: int  # the dtype's mantissa bits, as float64 exponent bits
    threshold: float  # overflow threshold; inf: never saturate

    @classmethod
    def of(cls, tol: ElementTol) -> BoundParams:
        d = DTYPES[tol.dtype]
        return cls(
            ulps=float(tol.ulps),
            c32=float(tol.fp32_ulps * EPS32),
            min_exponent=(d.min_exp + 1023) << 52,
            mantissa=d.mant_bits << 52,
            threshold=tol.overflow,
        )


Pending = Callable[[], list[CellStats]]  # gives a started computation's result


def cell_stats(
    tested: list[Array], ref: Array, mag: Array | None, tol: ElementTol | None, pair: bool = False
) -> list[CellStats]:
    """Per-cell stats of each of ``tested`` (``[R, h, ...]``) against ``ref``,
    and with ``pair`` (two tested arrays) of the first against the second.

    ``mag`` and ``tol`` give the bound (``tol.bound(ref, mag)``); without
    them only the differences are measured. The pair is never bounded: it is
    implementation against implementation. CuPy arrays go to the CUDA kernel
    (one pass for everything), others to ``cell_stats_array``.
    """
    return cell_stats_started(tested, ref, mag, tol, pair)()


def cell_stats_started(
    tested: list[Array], ref: Array, mag: Array | None, tol: ElementTol | None, pair: bool = False
) -> Pending:
    """``cell_stats`` begun: the call it returns gives the result. On CuPy the
    kernel and the copy of its rows to the host are queued and the call waits
    for them, so the host can fold one piece while the device checks the next;
    elsewhere the work is done before this returns."""
    if pair and len(tested) != 2:
        raise ValueError("a pair needs two tested arrays")
    xp = array_namespace(ref, mag, *tested)
    if getattr(xp, "RawModule", None) is not None:
        return _cell_stats_cuda(xp, tested, ref, mag, tol, pair)
    result = _by_arrays(tested, ref, mag, tol, pair)
    return lambda: result


def _by_arrays(tested, ref, mag, tol, pair: bool) -> list[CellStats]:
    out = cell_stats_array(tested, ref, mag, tol)
    return out + (cell_stats_array(tested[:1], tested[1], None, None) if pair else [])


# --- in NumPy's API ---------------------------------------------------------------


def cell_stats_array(
    tested: list[Array], ref: Array, mag: Array | None, tol: ElementTol | None
) -> list[CellStats]:
    """``cell_stats`` in whole-array passes of the arrays' own module."""
    xp = array_namespace(ref, mag, *tested)
    cells = ref.shape[0] * ref.shape[1]
    if cells == 0 or ref.size == 0:  # nothing to fold: empty rows per tested array
        empty = np.zeros(cells)
        at = np.zeros(cells, np.int64)
        return [CellStats(empty, at, empty, at, empty, empty, at, at) for _ in tested]
    r = xp.asarray(ref, dtype=xp.float64).reshape(cells, -1)
    bound = None if tol is None else tol.bound(r, xp.asarray(mag).reshape(cells, -1))
    floor = relative_floor(r)
    with np.errstate(all="ignore"):
        ref_sq = to_numpy(xp.sum(xp.where(xp.isfinite(r), r, 0.0) ** 2, axis=1))
    return [_one_array(xp, x.reshape(cells, -1), r, bound, floor, ref_sq, tol) for x in tested]


def _one_array(xp, x, r, bound, floor, ref_sq, tol) -> CellStats:
    x = xp.asarray(x, dtype=xp.float64)
    rounded = None
    if bound is not None:
        x, rounded = _saturate(xp, x, r, bound, tol.overflow)
    err, nan, inf = element_errors(x, r)
    with np.errstate(all="ignore"):
        err_sq = xp.sum(xp.where(xp.isfinite(err), err, 0.0) ** 2, axis=1)
    cs = CellStats(
        *_max_at(xp, err),
        *_max_at(xp, relative_error(err, floor)),
        err_sq=to_numpy(err_sq),
        ref_sq=ref_sq,
        nan=to_numpy(nan.sum(axis=1)),
        inf=to_numpy(inf.sum(axis=1)),
    )
    if bound is not None:
        ratio = error_ratio(err, bound)
        cs.worst, cs.worst_at = _max_at(xp, ratio)
        cs.worst_x, cs.worst_ref = (to_numpy(_take(xp, a, cs.worst_at)) for a in (x, r))
        cs.over = to_numpy((ratio > 1.0).sum(axis=1))
        cs.rounded_inf = rounded
    return cs


def _saturate(xp, x, r, bound, threshold: float):
    """``saturate_overflow`` per cell: (x, count of saturated elements per cell)."""
    with np.errstate(all="ignore"):
        before = xp.isinf(x)
    x, n = saturate_overflow(x, r, bound, threshold)
    if n == 0:
        return x, np.zeros(x.shape[0], np.int64)
    return x, to_numpy((before & ~xp.isinf(x)).sum(axis=1))


def _max_at(xp, a) -> tuple[np.ndarray, np.ndarray]:
    """Each row's maximum and the index of its first occurrence, on the host."""
    at = a.argmax(axis=1)
    return to_numpy(_take(xp, a, at)), to_numpy(at)


def _take(xp, a, at):
    """``a[i, at[i]]`` for every row i (``at`` a host or device array)."""
    return a[xp.arange(a.shape[0]), xp.asarray(at)]


# --- the CUDA kernel (cells_rule.cuh and cells_kernel.cu) ------------------------

_OUT_F = ("max_abs", "max_rel", "worst", "worst_x", "worst_ref", "err_sq")
_OUT_I = ("max_abs_at", "max_rel_at", "worst_at", "over", "nan", "inf", "rounded_inf")

_SOURCE_FILES = ("cells_rule.cuh", "cells_kernel.cu")  # beside this module


def _source() -> str:
    here = Path(__file__).parent
    return "\n".join((here / name).read_text(encoding="utf-8") for name in _SOURCE_FILES)


_C_TYPES = {"float32": "float", "float64": "double"}


def _kernel_name(tx: str, tr: str, T: int, bound: bool, pair: bool) -> str:
    flags = ", ".join("true" if f else "false" for f in (bound, pair))
    return f"cell_stats<{tx}, {tr}, {T}, {flags}>"


@functools.cache
def _module(cp, device: int):
    """The kernel's instantiations, compiled once per device (CuPy caches the binary)."""
    names = [
        _kernel_name(tx, tr, t, b, pair)
        for tx in _C_TYPES.values()
        for tr in _C_TYPES.values()
        for t, pair in ((1, False), (2, False), (2, True))
        for b in (False, True)
    ]
    return cp.RawModule(code=_source(), options=("-std=c++14",), name_expressions=names)


def _cell_strides(cp, a) -> tuple[Array, int, int]:
    """``a`` with each cell's elements contiguous and a kernel dtype, and its
    row and head strides in elements."""
    want = tuple(int(np.prod(a.shape[i + 1 :])) * a.itemsize for i in range(2, a.ndim))
    if a.strides[2:] != want or a.dtype.name not in _C_TYPES:
        a = cp.ascontiguousarray(a, dtype=a.dtype if a.dtype.name in _C_TYPES else cp.float64)
    return a, a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


def _cell_stats_cuda(cp, tested, ref, mag, tol, pair: bool) -> Pending:
    R, h = ref.shape[:2]
    cells, E = R * h, int(np.prod(ref.shape[2:]))
    if E > 2**31 - 1 - UNROLL * CELL_THREADS:  # e + UNROLL * CELL_THREADS must fit an int
        raise ValueError(f"cells of {E} elements: the kernel indexes a cell with 32 bits")
    if cells == 0 or E == 0:
        result = _by_arrays(tested, ref, mag, tol, pair)
        return lambda: result
    xs = [_cell_strides(cp, x) for x in tested]
    if len({(x.dtype, row, head) for x, row, head in xs}) != 1:  # the kernel takes one layout
        xs = [(cp.ascontiguousarray(x, dtype=cp.float64), h * E, E) for x, _, _ in xs]
    bound = tol is not None
    if bound:  # the reference and its magnitude share one (contiguous) layout
        r, m = (cp.ascontiguousarray(a, dtype=cp.float64) for a in (ref, mag))
        rs_row, rs_head, p = h * E, E, BoundParams.of(tol)
    else:
        r, rs_row, rs_head = _cell_strides(cp, ref)
        m, p = r, BoundParams(1.0, 0.0, 0, 0, math.inf)  # m is never read without a bound
    T = len(xs)
    N = T + pair
    tx, tr = _C_TYPES[xs[0][0].dtype.name], _C_TYPES[r.dtype.name]
    name = _kernel_name(tx, tr, T, bound, pair)
    kernel = _module(cp, cp.cuda.Device().id).get_function(name)
    fout = cp.empty((cells, 6 * N + 2), cp.float64)
    iout = cp.empty((cells, 7 * N), cp.int64)
    (x0, xs_row, xs_head), x1 = xs[0], xs[-1][0]
    args = (
        x0, x1, np.int64(xs_row), np.int64(xs_head),
        r, m, np.int64(rs_row), np.int64(rs_head),
        np.int32(h), np.int32(E), np.int64(cells),
        np.float64(p.ulps), np.float64(p.c32), np.float64(FP32_TINY),
        np.int64(p.min_exponent), np.int64(p.mantissa), np.float64(p.threshold),
        fout, iout,
    )  # fmt: skip
    blocks = -(-cells // CELLS_PER_BLOCK)
    kernel((blocks,), (CELL_THREADS * CELLS_PER_BLOCK,), args)
    host = [_pinned(cp, a) for a in (fout, iout)]  # page-locked: the copies are queued too
    done = cp.cuda.Event()
    done.record()

    def result() -> list[CellStats]:
        done.synchronize()
        return _unpack(*host, T, N, bound)

    return result


def _pinned(cp, a) -> np.ndarray:
    """A queued copy of device array ``a`` into page-locked host memory."""
    import cupyx

    out = cupyx.empty_pinned(a.shape, a.dtype)
    cp.asnumpy(a, out=out, blocking=False)
    return out


def _unpack(f: np.ndarray, i: np.ndarray, T: int, N: int, bound: bool) -> list[CellStats]:
    """The kernel's rows: per accumulator 6 doubles and 7 integers (the first T
    against the reference, then the pair), then the two sums of squares."""
    out = []
    for t in range(N):
        fs = {k: f[:, 6 * t + j] for j, k in enumerate(_OUT_F)}
        ix = {k: i[:, 7 * t + j] for j, k in enumerate(_OUT_I)}
        cs = CellStats(
            max_abs=fs["max_abs"],
            max_abs_at=ix["max_abs_at"],
            max_rel=fs["max_rel"],
            max_rel_at=ix["max_rel_at"],
            err_sq=fs["err_sq"],
            ref_sq=f[:, 6 * N + (t >= T)],
            nan=ix["nan"],
            inf=ix["inf"],
        )
        if bound and t < T:
            cs.worst, cs.worst_at = fs["worst"], ix["worst_at"]
            cs.worst_x, cs.worst_ref = fs["worst_x"], fs["worst_ref"]
            cs.over, cs.rounded_inf = ix["over"], ix["rounded_inf"]
        out.append(cs)
    return out
