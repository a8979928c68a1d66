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
from dataclasses import dataclass

import numpy as np

from harness.check.compare import relative_floor, saturate_overflow
from harness.check.tolerance import EPS32, FP32_TINY, ElementTol
from harness.core.dtypes import DTYPES
from reference.namespace import Array, array_namespace, to_numpy

THREADS = 256  # CUDA threads per cell


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
    def of(cls, tol: ElementTol, saturate: bool = True) -> BoundParams:
        d = DTYPES[tol.dtype]
        return cls(
            ulps=float(tol.ulps),
            c32=float(tol.fp32_ulps * EPS32),
            min_exponent=(d.min_exp + 1023) << 52,
            mantissa=d.mant_bits << 52,
            threshold=tol.overflow if saturate else math.inf,
        )


def cell_stats(
    tested: list[Array], ref: Array, mag: Array | None, tol: ElementTol | None
) -> list[CellStats]:
    """Per-cell stats of each of ``tested`` (``[R, h, ...]``) against ``ref``.

    ``mag`` and ``tol`` give the bound (``tol.bound(ref, mag)``); without
    them only the differences are measured (implementation against
    implementation). CuPy arrays go to the CUDA kernel, others to
    ``cell_stats_array``.
    """
    xp = array_namespace(ref, mag, *tested)
    if getattr(xp, "RawModule", None) is not None:
        return _cell_stats_cuda(xp, tested, ref, mag, tol)
    return cell_stats_array(tested, ref, mag, tol)


# --- in NumPy's API ---------------------------------------------------------------


def cell_stats_array(
    tested: list[Array], ref: Array, mag: Array | None, tol: ElementTol | None
) -> list[CellStats]:
    """``cell_stats`` in whole-array passes of the arrays' own module."""
    xp = array_namespace(ref, mag, *tested)
    cells = ref.shape[0] * ref.shape[1]
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
    with np.errstate(all="ignore"):
        nan = xp.isnan(x) & ~xp.isnan(r)
        inf = xp.isinf(x) & ~xp.isinf(r)
        err = xp.where(x == r, 0.0, xp.abs(x - r))
        err[nan | inf] = np.inf
        err[xp.isnan(x) & xp.isnan(r)] = 0.0
        err[xp.isnan(err)] = np.inf
        err_sq = xp.sum(xp.where(xp.isfinite(err), err, 0.0) ** 2, axis=1)
        rel = err / floor
        rel[xp.isnan(rel)] = np.inf
    cs = CellStats(
        *_max_at(xp, err),
        *_max_at(xp, rel),
        err_sq=to_numpy(err_sq),
        ref_sq=ref_sq,
        nan=to_numpy(nan.sum(axis=1)),
        inf=to_numpy(inf.sum(axis=1)),
    )
    if bound is not None:
        with np.errstate(all="ignore"):
            ratio = xp.where(err == 0, 0.0, err / bound)
        ratio[xp.isnan(ratio)] = np.inf
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


# --- the CUDA kernel ----------------------------------------------------------------
# Grid: one block of THREADS threads per (row, head) cell; each thread strides
# over the cell's E elements (E = K * V for the state, V for the output),
# folds them into its own accumulator, and the block reduces the accumulators
# with warp shuffles and shared memory (first index wins ties). Tested arrays
# and the reference are addressed by (row, head) strides, each cell's E
# elements contiguous. Outputs: per cell and tested array, 6 doubles and 7
# integers (see _OUT_F / _OUT_I), then the cell's reference sum of squares.

_OUT_F = ("max_abs", "max_rel", "worst", "worst_x", "worst_ref", "err_sq")
_OUT_I = ("max_abs_at", "max_rel_at", "worst_at", "over", "nan", "inf", "rounded_inf")

_SOURCE = r"""
#define FULL 0xffffffffu
#define INF_D __longlong_as_double(0x7ff0000000000000LL)

#define UNROLL 4
#define NO_INDEX 0x7fffffff

struct Acc {  // one thread's, then one warp's, then the cell's (indices inside the cell)
    double max_abs, max_rel, worst, worst_x, worst_ref, err_sq;
    int i_abs, i_rel, i_worst, over, nan, inf, rinf;
};

__device__ __forceinline__ bool better(double v, int i, double bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

__device__ __forceinline__ void keep(double& bv, int& bi, double v, int i) {
    if (better(v, i, bv, bi)) { bv = v; bi = i; }
}

__device__ __forceinline__ void init(Acc& a) {
    a.max_abs = a.max_rel = a.worst = -1.0;
    a.worst_x = a.worst_ref = 0.0;
    a.err_sq = 0.0;
    a.i_abs = a.i_rel = a.i_worst = NO_INDEX;
    a.over = a.nan = a.inf = a.rinf = 0;
}

__device__ __forceinline__ void merge(Acc& a, const Acc& b) {
    keep(a.max_abs, a.i_abs, b.max_abs, b.i_abs);
    keep(a.max_rel, a.i_rel, b.max_rel, b.i_rel);
    if (better(b.worst, b.i_worst, a.worst, a.i_worst)) {
        a.worst = b.worst; a.i_worst = b.i_worst;
        a.worst_x = b.worst_x; a.worst_ref = b.worst_ref;
    }
    a.err_sq = __dadd_rn(a.err_sq, b.err_sq);
    a.over += b.over; a.nan += b.nan; a.inf += b.inf; a.rinf += b.rinf;
}

__device__ __forceinline__ Acc shuffled(const Acc& a, int off) {
    Acc b;
    b.max_abs = __shfl_down_sync(FULL, a.max_abs, off);
    b.max_rel = __shfl_down_sync(FULL, a.max_rel, off);
    b.worst = __shfl_down_sync(FULL, a.worst, off);
    b.worst_x = __shfl_down_sync(FULL, a.worst_x, off);
    b.worst_ref = __shfl_down_sync(FULL, a.worst_ref, off);
    b.err_sq = __shfl_down_sync(FULL, a.err_sq, off);
    b.i_abs = __shfl_down_sync(FULL, a.i_abs, off);
    b.i_rel = __shfl_down_sync(FULL, a.i_rel, off);
    b.i_worst = __shfl_down_sync(FULL, a.i_worst, off);
    b.over = __shfl_down_sync(FULL, a.over, off);
    b.nan = __shfl_down_sync(FULL, a.nan, off);
    b.inf = __shfl_down_sync(FULL, a.inf, off);
    b.rinf = __shfl_down_sync(FULL, a.rinf, off);
    return b;
}

__device__ __forceinline__ double sum_warp(double v) {
    for (int off = 16; off > 0; off >>= 1) v = __dadd_rn(v, __shfl_down_sync(FULL, v, off));
    return v;
}

__device__ __forceinline__ double ulp_of(double r, long long min_e, long long mant) {
    long long e = __double_as_longlong(r) & 0x7FF0000000000000LL;
    e = e > min_e ? e : min_e;
    return __longlong_as_double(e - mant);
}

__device__ __forceinline__ double sign_of(double v) {
    return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : (v == 0.0 ? 0.0 : v));
}

struct Bound { double ulps, c32, tiny, threshold; long long min_e, mant; };

template <int T, bool BOUND>
__device__ __forceinline__ void visit(
    Acc (&acc)[T], double& ref_sq, const double r, const double m, double (&xs)[T], const int e,
    const Bound& p)
{
    if (isfinite(r)) ref_sq = __dadd_rn(ref_sq, __dmul_rn(r, r));
    double b = 0.0;
    if (BOUND) {
        b = ulp_of(r, p.min_e, p.mant);
        if (p.ulps != 1.0) b = __dmul_rn(b, p.ulps);
        b = __dadd_rn(b, __dmul_rn(p.c32, m));
        b = __dadd_rn(b, p.tiny);
    }
    const double floor = isnan(r) ? r : fmax(fabs(r), 2.2250738585072014e-308);
    #pragma unroll
    for (int t = 0; t < T; ++t) {
        double x = xs[t];
        if (BOUND && isinf(x) && isfinite(r) && sign_of(x) == sign_of(r)
            && __dadd_rn(fabs(r), b) >= p.threshold) {
            x = sign_of(r) * fmax(p.threshold, fabs(r));
            acc[t].rinf += 1;
        }
        const bool xnan = isnan(x), rnan = isnan(r);
        double err;
        if (xnan && rnan) {
            err = 0.0;
        } else if ((xnan && !rnan) || (isinf(x) && !isinf(r))) {
            err = INF_D;
            acc[t].nan += (xnan && !rnan);
            acc[t].inf += (isinf(x) && !isinf(r));
        } else {
            err = (x == r) ? 0.0 : fabs(__dsub_rn(x, r));
            if (isnan(err)) err = INF_D;
        }
        if (isfinite(err)) acc[t].err_sq = __dadd_rn(acc[t].err_sq, __dmul_rn(err, err));
        double rel = __ddiv_rn(err, floor);
        if (isnan(rel)) rel = INF_D;
        keep(acc[t].max_abs, acc[t].i_abs, err, e);
        keep(acc[t].max_rel, acc[t].i_rel, rel, e);
        if (BOUND) {
            double ratio = (err == 0.0) ? 0.0 : __ddiv_rn(err, b);
            if (isnan(ratio)) ratio = INF_D;
            acc[t].over += (ratio > 1.0);
            if (better(ratio, e, acc[t].worst, acc[t].i_worst)) {
                acc[t].worst = ratio; acc[t].i_worst = e;
                acc[t].worst_x = x; acc[t].worst_ref = r;
            }
        }
    }
}

template <typename TX, typename TR, int T, bool BOUND>
__global__ void __launch_bounds__(256) cell_stats(
    const TX* __restrict__ x0, const TX* __restrict__ x1, long long xs_row, long long xs_head,
    const TR* __restrict__ ref, const double* __restrict__ mag, long long rs_row, long long rs_head,
    int heads, int E,
    double ulps, double c32, double tiny, long long min_e, long long mant, double threshold,
    double* __restrict__ fout, long long* __restrict__ iout)
{
    const long long cell = blockIdx.x;
    const long long row = cell / heads, head = cell % heads;
    const long long xo = row * xs_row + head * xs_head, ro = row * rs_row + head * rs_head;
    const TX* xs[2] = {x0 + xo, x1 + xo};
    const Bound p = {ulps, c32, tiny, threshold, min_e, mant};
    Acc acc[T];
    #pragma unroll
    for (int t = 0; t < T; ++t) init(acc[t]);
    double ref_sq = 0.0;
    // UNROLL elements per thread are loaded before any is visited: loads in flight
    for (int base = threadIdx.x; base < E; base += UNROLL * blockDim.x) {
        double rv[UNROLL], mv[UNROLL], xv[UNROLL][T];
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int e = base + u * blockDim.x;
            if (e < E) {
                rv[u] = (double)ref[ro + e];
                mv[u] = BOUND ? mag[ro + e] : 0.0;
                #pragma unroll
                for (int t = 0; t < T; ++t) xv[u][t] = (double)xs[t][e];
            }
        }
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int e = base + u * blockDim.x;
            if (e < E) visit<T, BOUND>(acc, ref_sq, rv[u], mv[u], xv[u], e, p);
        }
    }
    __shared__ Acc shared[T][32];
    __shared__ double shared_sq[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    for (int t = 0; t < T; ++t) {
        for (int off = 16; off > 0; off >>= 1) merge(acc[t], shuffled(acc[t], off));
        if (lane == 0) shared[t][warp] = acc[t];
    }
    ref_sq = sum_warp(ref_sq);
    if (lane == 0) shared_sq[warp] = ref_sq;
    __syncthreads();
    if (threadIdx.x != 0) return;
    double* f = fout + cell * (6 * T + 1);
    long long* i = iout + cell * (7 * T);
    for (int t = 0; t < T; ++t) {
        Acc a = shared[t][0];
        for (int w = 1; w < warps; ++w) merge(a, shared[t][w]);
        f[6 * t + 0] = a.max_abs; f[6 * t + 1] = a.max_rel; f[6 * t + 2] = a.worst;
        f[6 * t + 3] = a.worst_x; f[6 * t + 4] = a.worst_ref; f[6 * t + 5] = a.err_sq;
        i[7 * t + 0] = a.i_abs; i[7 * t + 1] = a.i_rel; i[7 * t + 2] = a.i_worst;
        i[7 * t + 3] = a.over; i[7 * t + 4] = a.nan; i[7 * t + 5] = a.inf; i[7 * t + 6] = a.rinf;
    }
    double s = shared_sq[0];
    for (int w = 1; w < warps; ++w) s = __dadd_rn(s, shared_sq[w]);
    f[6 * T] = s;
}
"""

_C_TYPES = {"float32": "float", "float64": "double"}


def _kernel_name(tx: str, tr: str, T: int, bound: bool) -> str:
    return f"cell_stats<{tx}, {tr}, {T}, {'true' if bound else 'false'}>"


@functools.cache
def _module(cp, device: int):
    """The kernel's instantiations, compiled once per device (CuPy caches the binary)."""
    names = [
        _kernel_name(tx, tr, t, b)
        for tx in _C_TYPES.values()
        for tr in _C_TYPES.values()
        for t in (1, 2)
        for b in (False, True)
    ]
    return cp.RawModule(code=_SOURCE, options=("-std=c++14",), name_expressions=names)


def _cell_strides(cp, a) -> tuple[Array, int, int]:
    """``a`` with each cell's elements contiguous and a kernel dtype, and its
    row and head strides in elements."""
    want = tuple(int(np.prod(a.shape[i + 1 :])) * a.itemsize for i in range(2, a.ndim))
    if a.strides[2:] != want or a.dtype.name not in _C_TYPES:
        a = cp.ascontiguousarray(a, dtype=a.dtype if a.dtype.name in _C_TYPES else cp.float64)
    return a, a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


def _cell_stats_cuda(cp, tested, ref, mag, tol) -> list[CellStats]:
    R, h = ref.shape[:2]
    cells, E = R * h, int(np.prod(ref.shape[2:]))
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
    tx, tr = _C_TYPES[xs[0][0].dtype.name], _C_TYPES[r.dtype.name]
    kernel = _module(cp, cp.cuda.Device().id).get_function(_kernel_name(tx, tr, T, bound))
    fout = cp.empty((cells, 6 * T + 1), cp.float64)
    iout = cp.empty((cells, 7 * T), cp.int64)
    (x0, xs_row, xs_head), x1 = xs[0], xs[-1][0]
    args = (
        x0, x1, np.int64(xs_row), np.int64(xs_head),
        r, m, np.int64(rs_row), np.int64(rs_head),
        np.int32(h), np.int32(E),
        np.float64(p.ulps), np.float64(p.c32), np.float64(FP32_TINY),
        np.int64(p.min_exponent), np.int64(p.mantissa), np.float64(p.threshold),
        fout, iout,
    )  # fmt: skip
    kernel((cells,), (THREADS,), args)
    return _unpack(cp.asnumpy(fout), cp.asnumpy(iout), T, bound)


def _unpack(f: np.ndarray, i: np.ndarray, T: int, bound: bool) -> list[CellStats]:
    out = []
    for t in range(T):
        fs = {k: f[:, 6 * t + j] for j, k in enumerate(_OUT_F)}
        ix = {k: i[:, 7 * t + j] for j, k in enumerate(_OUT_I)}
        cs = CellStats(
            max_abs=fs["max_abs"],
            max_abs_at=ix["max_abs_at"],
            max_rel=fs["max_rel"],
            max_rel_at=ix["max_rel_at"],
            err_sq=fs["err_sq"],
            ref_sq=f[:, 6 * T],
            nan=ix["nan"],
            inf=ix["inf"],
        )
        if bound:
            cs.worst, cs.worst_at = fs["worst"], ix["worst_at"]
            cs.worst_x, cs.worst_ref = fs["worst_x"], fs["worst_ref"]
            cs.over, cs.rounded_inf = ix["over"], ix["rounded_inf"]
        out.append(cs)
    return out
