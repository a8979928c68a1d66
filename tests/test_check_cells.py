"""Per-cell statistics (harness.check.cells) fold into exactly what ErrorStats.add gives.

The device check reads one pass of per-cell maxima, counts and sums instead
of ``ErrorStats.add``'s whole-array passes; these tests hold the element rule
of ``cell_stats_array`` (the reference the CUDA kernel is validated against
on a GPU) to ``add`` on pieces full of what breaks such rules: NaN and Inf in
either array, Infs that correctly round an overflow and Infs that do not,
ties of the worst value, errors over and under the bound.
"""

from __future__ import annotations

import math
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.check.cells import cell_stats, cell_stats_array
from harness.check.compare import ErrorStats, relative_floor
from harness.check.tolerance import resolve
from harness.core.spec import Tolerance

EXACT = (
    "n",
    "over",
    "nan",
    "inf",
    "rounded_inf",
    "max_abs",
    "max_abs_at",
    "max_rel",
    "max_rel_at",
    "worst_ratio",
    "worst_at",
    "worst_value",
    "head_ratio",
    "cells",
)


def _piece(rng, shape, dtype: str, hostile: bool):
    """(ref, magnitude, two tested float32 arrays) for one piece."""
    scale = 6e4 if dtype == "fp16" else 1.0
    ref = rng.standard_normal(shape) * scale
    mag = np.abs(ref) + rng.uniform(0, 1, shape) * scale
    xs = []
    for _ in range(2):
        x = (ref + rng.standard_normal(shape) * 1e-6 * scale).astype(np.float32)
        if hostile:
            flat = x.reshape(-1)
            n = flat.size
            for value in (np.nan, np.inf, -np.inf):
                flat[rng.integers(0, n, max(1, n // 50))] = value
            flat[rng.integers(0, n, max(1, n // 40))] *= 1.5  # over the bound
        xs.append(x)
    if hostile:
        r = ref.reshape(-1)
        n = r.size
        r[rng.integers(0, n, max(1, n // 60))] = np.nan
        r[rng.integers(0, n, max(1, n // 60))] = np.inf
        near = rng.integers(0, n, max(1, n // 30))  # overflows that Inf rounds correctly
        r[near] = 65519.0 if dtype == "fp16" else 3.4e38
        for x in xs:
            x.reshape(-1)[near] = np.inf
        ties = rng.integers(0, n, 2)
        for x in xs:
            x.reshape(-1)[ties] = np.float32(r[ties[0]] + 1.0)
        r[ties[1]] = r[ties[0]]
    return ref, mag, xs


def _key(v):
    """``v`` with NaN spelled out, so that equal statistics compare equal."""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, tuple):
        return tuple(_key(x) for x in v)
    return v


def _same(a: ErrorStats, b: ErrorStats) -> None:
    for attr in EXACT:
        assert _key(getattr(a, attr)) == _key(getattr(b, attr)), attr
    for attr in ("err_sq", "ref_sq"):
        x, y = getattr(a, attr), getattr(b, attr)
        assert x == y or math.isclose(x, y, rel_tol=1e-12), attr
    assert a.ok == b.ok


def _by_add(ref, mag, x, tol, head0=0):
    s = ErrorStats("state", "p", 0, "")
    rows = np.arange(ref.shape[0]) + 3
    bound = None if tol is None else tol.bound(ref, mag)
    overflow = None if tol is None else tol.overflow
    s.add(x, ref, bound, rows, rows * 2, head0, relative_floor(ref), overflow)
    return s


def _by_cells(ref, mag, x, tol, head0=0, xp_put=lambda a: a):
    s = ErrorStats("state", "p", 0, "")
    rows = np.arange(ref.shape[0]) + 3
    (cs,) = cell_stats([xp_put(x)], xp_put(ref), None if mag is None else xp_put(mag), tol)
    s.add_cells(cs, ref.shape, rows, rows * 2, head0)
    return s


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 8, 6), (1, 1, 1, 1), (5, 2, 33)])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("hostile", [False, True])
def test_cells_fold_to_what_add_gives(shape, dtype, hostile):
    rng = np.random.default_rng(zlib.crc32(repr((shape, dtype, hostile)).encode()))
    tol = resolve(Tolerance(), dtype, shape[-1])
    seen = ErrorStats("state", "p", 0, "")
    for _ in range(3):
        ref, mag, xs = _piece(rng, shape, dtype, hostile)
        for x in xs:
            want = _by_add(ref, mag, x, tol, head0=2)
            _same(want, _by_cells(ref, mag, x, tol, head0=2))
            seen.merge(want)
    if hostile and math.prod(shape) >= 60:  # the pieces held what they were built to hold
        assert seen.nan and seen.inf and seen.over
        assert seen.rounded_inf or dtype != "fp16"


@pytest.mark.parametrize("hostile", [False, True])
def test_pairs_without_a_bound_fold_the_same(hostile):
    rng = np.random.default_rng(7)
    _, _, xs = _piece(rng, (4, 3, 7, 5), "fp32", hostile)
    y = xs[1].astype(np.float64)
    _same(_by_add(y, None, xs[0], None), _by_cells(xs[1], None, xs[0], None))


def test_a_piece_with_planted_errors_is_over_and_located():
    tol = resolve(Tolerance(), "fp32", 8)
    ref = np.ones((2, 3, 8, 8))
    x = ref.astype(np.float32)
    x[1, 2, 5, 6] = 1.5
    x[0, 1, 0, 0] = np.nan
    s = _by_cells(ref, np.abs(ref), x, tol)
    assert (s.over, s.nan, s.ok) == (2, 1, False)
    assert str(s.worst_at) == "row 3 slot 6 head 1 k=0 v=0"  # the NaN: infinite ratio
    assert str(s.max_rel_at) == "row 3 slot 6 head 1 k=0 v=0"
    assert s.cells == {(6, 1): math.inf, (8, 2): s.cells[(8, 2)]}
    assert s.cells[(8, 2)] == pytest.approx(0.5 / tol.bound(ref, ref)[0, 0, 0, 0])


def test_stats_merged_over_pieces_match_one_add():
    rng = np.random.default_rng(3)
    tol = resolve(Tolerance(), "bf16", 16)
    ref, mag, xs = _piece(rng, (6, 4, 16), "bf16", True)
    whole = _by_add(ref, mag, xs[0], tol)
    parts = ErrorStats("state", "p", 0, "")
    rows = np.arange(6) + 3
    for r in (slice(0, 2), slice(2, 5), slice(5, 6)):
        (cs,) = cell_stats_array([xs[0][r]], ref[r], mag[r], tol)
        parts.add_cells(cs, ref[r].shape, rows[r], rows[r] * 2)
    _same(whole, parts)


def test_two_tested_arrays_in_one_call_match_two_calls():
    rng = np.random.default_rng(5)
    tol = resolve(Tolerance(), "fp32", 6)
    ref, mag, xs = _piece(rng, (3, 2, 6, 6), "fp32", True)
    both = cell_stats_array(xs, ref, mag, tol)
    for x, cs in zip(xs, both, strict=True):
        (one,) = cell_stats_array([x], ref, mag, tol)
        for field in cs.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(cs, field), getattr(one, field))


def test_the_stand_in_device_gives_the_host_cells():
    sys.path.insert(0, str(Path(__file__).parent / "gpu"))
    import standin

    rng = np.random.default_rng(11)
    tol = resolve(Tolerance(), "fp16", 5)
    ref, mag, xs = _piece(rng, (4, 3, 5, 5), "fp16", True)
    put = standin.asarray
    _same(_by_cells(ref, mag, xs[0], tol), _by_cells(ref, mag, xs[0], tol, xp_put=put))


def test_a_nan_bound_fails_on_both_paths():
    """A NaN magnitude under a finite reference leaves an element without a bound:
    over it, on the host's whole-array path as in the per-cell rule."""
    tol = resolve(Tolerance(), "fp32", 4)
    ref = np.ones((1, 2, 4))
    mag = ref.copy()
    mag[0, 1, 2] = np.nan
    x = ref.astype(np.float32)
    x[0, 1, 2] = 1.0 + 2**-20
    want, got = _by_add(ref, mag, x, tol), _by_cells(ref, mag, x, tol)
    _same(want, got)
    assert (want.over, want.ok, want.worst_ratio) == (1, False, math.inf)


def test_an_empty_piece_adds_nothing():
    tol = resolve(Tolerance(), "fp32", 4)
    ref = np.ones((0, 2, 4))
    stats = cell_stats_array([ref.astype(np.float32)], ref, ref, tol)
    s = ErrorStats("state", "p", 0, "")
    s.add_cells(stats[0], ref.shape, np.arange(0), np.arange(0))
    assert s.n == 0 and s.ok
