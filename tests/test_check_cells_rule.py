"""The CUDA kernel's element rule (harness/check/cells_rule.cuh), compiled for
the CPU with a shim of the CUDA intrinsics, against the NumPy-API rule.

The GPU validation (tests/gpu/check_device_cells.py) runs the whole kernel;
this runs its element rule on every machine with a C++ compiler: the NaN and
Inf rules, the overflow saturation, first-index ties, and the divisions it
skips where an element cannot move a maximum. A host driver visits each cell
as the kernel does (a warp of 32 threads striding over the cell, four elements at a
time) and merges the threads' accumulators.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_check_cells import _piece

from harness.check import cells
from harness.check.cells import BoundParams, CellStats, cell_stats_array
from harness.check.tolerance import FP32_TINY, resolve
from harness.core.spec import Tolerance

sys.path.insert(0, str(Path(__file__).parent))

SHIM = r"""
#include <cmath>
#include <cstring>
#define __device__
#define __forceinline__ inline
using std::fabs; using std::fmax; using std::isfinite; using std::isinf; using std::isnan;
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline long long __double_as_longlong(double d) {
    long long x; std::memcpy(&x, &d, 8); return x;
}
static inline double __longlong_as_double(long long x) {
    double d; std::memcpy(&d, &x, 8); return d;
}
"""

DRIVER = r"""
#define THREADS 32
#define UNROLL 4
template <int T, bool BOUND, bool PAIR>
static void run(const float* x0, const float* x1, const double* ref, const double* mag,
                long long cells, int E, const Bound& p, double* fout, long long* iout) {
    const int N = T + (PAIR ? 1 : 0);
    for (long long c = 0; c < cells; ++c) {
        Acc total[3]; double ref_sq = 0.0, pair_sq = 0.0;
        for (int t = 0; t < N; ++t) init(total[t]);
        for (int tid = 0; tid < THREADS; ++tid) {
            Acc acc[T], pair[1]; double rs = 0.0, ps = 0.0;
            for (int t = 0; t < T; ++t) init(acc[t]);
            init(pair[0]);
            for (int base = tid; base < E; base += UNROLL * THREADS)
                for (int u = 0; u < UNROLL; ++u) {
                    const int e = base + u * THREADS;
                    if (e >= E) continue;
                    const long long o = c * E + e;
                    double xv[T];
                    xv[0] = x0[o];
                    if (T == 2) xv[T - 1] = x1[o];
                    visit<T, BOUND>(acc, rs, ref[o], BOUND ? mag[o] : 0.0, xv, e, p);
                    if (PAIR) {
                        double first[1] = {xv[0]};
                        visit<1, false>(pair, ps, xv[T - 1], 0.0, first, e, p);
                    }
                }
            for (int t = 0; t < T; ++t) merge(total[t], acc[t]);
            if (PAIR) merge(total[T], pair[0]);
            ref_sq += rs; pair_sq += ps;
        }
        for (int t = 0; t < N; ++t) {
            const Acc& a = total[t];
            double* f = fout + c * (6 * N + 2) + 6 * t;
            long long* i = iout + c * (7 * N) + 7 * t;
            f[0] = a.max_abs; f[1] = a.max_rel; f[2] = a.worst;
            f[3] = a.worst_x; f[4] = a.worst_ref; f[5] = a.err_sq;
            i[0] = a.i_abs; i[1] = a.i_rel; i[2] = a.i_worst;
            i[3] = a.over; i[4] = a.nan; i[5] = a.inf; i[6] = a.rinf;
        }
        fout[c * (6 * N + 2) + 6 * N] = ref_sq;
        fout[c * (6 * N + 2) + 6 * N + 1] = pair_sq;
    }
}

extern "C" void host_cells(const float* x0, const float* x1, const double* ref, const double* mag,
                           long long cells, int E, int T, int bound, int pair,
                           double ulps, double c32, double tiny, long long min_e, long long mant,
                           double threshold, double* fout, long long* iout) {
    const Bound p = {ulps, c32, tiny, threshold, min_e, mant};
    if (T == 1 && !bound) run<1, false, false>(x0, x1, ref, mag, cells, E, p, fout, iout);
    else if (T == 1) run<1, true, false>(x0, x1, ref, mag, cells, E, p, fout, iout);
    else if (!pair) run<2, true, false>(x0, x1, ref, mag, cells, E, p, fout, iout);
    else run<2, true, true>(x0, x1, ref, mag, cells, E, p, fout, iout);
}
"""


@pytest.fixture(scope="module")
def rule(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler here")
    d = tmp_path_factory.mktemp("rule")
    src = d / "rule.cpp"
    here = Path(cells.__file__).parent
    src.write_text(SHIM + (here / "cells_rule.cuh").read_text() + DRIVER)
    lib = d / "rule.so"
    # -ffp-contract=off: every operation rounds on its own, as the intrinsics do
    cmd = [compiler, "-O2", "-std=c++14", "-ffp-contract=off", "-shared", "-fPIC"]
    subprocess.run([*cmd, "-o", str(lib), str(src)], check=True, capture_output=True)
    fn = ctypes.CDLL(str(lib)).host_cells
    fn.restype = None
    return fn


def _host_cells(fn, xs, ref, mag, tol, pair: bool) -> list[CellStats]:
    cells_n, E = ref.shape[0] * ref.shape[1], int(np.prod(ref.shape[2:]))
    T, N = len(xs), len(xs) + pair
    x = [np.ascontiguousarray(a, dtype=np.float32) for a in xs]
    r = np.ascontiguousarray(ref, dtype=np.float64)
    m = r if mag is None else np.ascontiguousarray(mag, dtype=np.float64)
    p = BoundParams.of(tol) if tol is not None else BoundParams(1.0, 0.0, 0, 0, float("inf"))
    fout = np.empty((cells_n, 6 * N + 2))
    iout = np.empty((cells_n, 7 * N), np.int64)
    ptr = ctypes.c_void_p
    fn(
        ptr(x[0].ctypes.data), ptr(x[-1].ctypes.data), ptr(r.ctypes.data), ptr(m.ctypes.data),
        ctypes.c_longlong(cells_n), ctypes.c_int(E), ctypes.c_int(T),
        ctypes.c_int(tol is not None), ctypes.c_int(pair),
        ctypes.c_double(p.ulps), ctypes.c_double(p.c32), ctypes.c_double(FP32_TINY),
        ctypes.c_longlong(p.min_exponent), ctypes.c_longlong(p.mantissa),
        ctypes.c_double(p.threshold), ptr(fout.ctypes.data), ptr(iout.ctypes.data),
    )  # fmt: skip
    return cells._unpack(fout, iout, T, N, tol is not None)


def _assert_same(got: list[CellStats], want: list[CellStats]) -> None:
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        for name in w.__dataclass_fields__:
            a, b = getattr(g, name), getattr(w, name)
            if b is None:
                assert a is None, (t, name)
            elif name in ("err_sq", "ref_sq"):
                np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=f"{t} {name}")
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{t} {name}")


SHAPES = [(3, 4, 5), (2, 3, 40, 33), (1, 1, 1, 1), (2, 2, 1500), (1, 2, 64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("hostile", [False, True])
def test_the_kernel_rule_gives_the_numpy_rule_s_cells(rule, shape, dtype, hostile):
    rng = np.random.default_rng(sum(shape) * 7 + len(dtype) + hostile)
    tol = resolve(Tolerance(), dtype, shape[-1])
    for _ in range(2):
        ref, mag, xs = _piece(rng, shape, dtype, hostile)
        _assert_same(
            _host_cells(rule, xs[:1], ref, mag, tol, False), cell_stats_array(xs[:1], ref, mag, tol)
        )
        want = cell_stats_array(xs, ref, mag, tol) + cell_stats_array(xs[:1], xs[1], None, None)
        _assert_same(_host_cells(rule, xs, ref, mag, tol, True), want)
        _assert_same(
            _host_cells(rule, xs[:1], xs[1].astype(np.float64), None, None, False),
            cell_stats_array(xs[:1], xs[1], None, None),
        )


def test_ratios_that_grow_slowly_still_find_the_first_maximum(rule):
    """Every element a new maximum by a few float64 ulps (the divisions skipped
    must not hide one), and the largest error twice, the first copy winning."""
    E = 4096
    ref = -1e-3 * (1.0 + np.arange(E) * 2.0**-30)  # errors against zeros: |ref|
    ref[3000] = ref[-1]
    ref = ref.reshape(1, 1, E)
    x = np.zeros((1, 1, E), np.float32)
    tol = resolve(Tolerance(), "fp32", 8)
    mag = np.full_like(ref, 1e3)  # ratios near 0.03: under the bound, where divisions are skipped
    got = _host_cells(rule, [x], ref, mag, tol, False)
    _assert_same(got, cell_stats_array([x], ref, mag, tol))
    assert (got[0].worst_at[0], got[0].max_abs_at[0], got[0].max_rel_at[0]) == (3000, 3000, 0)


def test_a_matching_nan_after_exact_matches_still_has_an_infinite_relative_error(rule):
    """Exact matches let a thread skip the division once it holds a maximum;
    a NaN against a NaN reference later in the same thread must not be
    skipped with them (its relative error is Inf, as NumPy's rule says)."""
    E = 512
    ref = np.linspace(-1.0, 1.0, E).reshape(1, 1, E)
    ref[0, 0, 100] = np.nan
    x = ref.astype(np.float32)  # exact wherever the reference is a float32
    ref = x.astype(np.float64)
    tol = resolve(Tolerance(), "fp32", 8)
    mag = np.ones_like(ref)
    got = _host_cells(rule, [x], ref, mag, tol, False)
    _assert_same(got, cell_stats_array([x], ref, mag, tol))
    assert (got[0].max_rel[0], got[0].max_rel_at[0]) == (np.inf, 100)
