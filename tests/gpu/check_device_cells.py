"""Part ``cells`` of check_device_validation.py: the CUDA kernel of
``harness.check.cells`` against the same rule in NumPy's API, run by CuPy on
the same device arrays.

Every per-cell field must be identical (maxima, their indices, the values at
the worst ratio, every count), NaN for NaN; the sums of squares agree within
1e-12 relative (their rounding order differs). Pieces: the state's four
dimensions and the output's three, odd sizes, cells longer and shorter than
a block of threads, head slices of a bigger array (strided cells), one and
two tested arrays, every dtype's bound and the unbounded pair, clean and
full of NaN, Inf and overflows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from test_check_cells import _piece  # tests/: the hostile pieces of the CPU tests

from harness.check.cells import cell_stats, cell_stats_array
from harness.check.tolerance import resolve
from harness.core.spec import Tolerance

if TYPE_CHECKING:
    from check_device_validation import Env, Report

SHAPES = ((3, 5, 128, 128), (2, 4, 33, 17), (7, 16, 160), (1, 1, 1, 1), (4, 6, 300))
SUMS = ("err_sq", "ref_sq")


def _differences(got, want) -> list[str]:
    fails = []
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        for name in g.__dataclass_fields__:
            a, b = getattr(g, name), getattr(w, name)
            if a is None or b is None:
                if a is not b:
                    fails.append(f"tested {t}: {name} only on one side")
                continue
            if name in SUMS:
                ok = np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True)
            else:
                ok = np.array_equal(a, b, equal_nan=True)
            if not ok:
                bad = np.flatnonzero(~np.isclose(a, b, rtol=0, atol=0, equal_nan=True))
                fails.append(f"tested {t}: {name} differs in {bad.size} cells, first {bad[:4]}")
    return fails


def _case(env: Env, shape, dtype: str, hostile: bool, tested: int, strided: bool, seed: int):
    xp = env.xp

    def run() -> dict:
        rng = np.random.default_rng(seed)
        ref, mag, xs = _piece(rng, shape, dtype, hostile)
        tol = resolve(Tolerance(), dtype, shape[-1])
        put = [xp.asarray(a) for a in (ref, mag, *xs)]
        if strided:  # the cells of a head slice of a wider array, as the check's pieces are
            wide = [xp.concatenate([a, a], axis=1) for a in put[2:]]
            put[2:] = [w[:, : shape[1]] for w in wide]
        r, m, *x = put
        x = x[:tested]
        fails = _differences(cell_stats(x, r, m, tol), cell_stats_array(x, r, m, tol))
        fails += _differences(
            cell_stats(x[:1], x[-1], None, None), cell_stats_array(x[:1], x[-1], None, None)
        )
        if tested == 2:  # both against the reference and the pair, in one pass
            want = cell_stats_array(x, r, m, tol) + cell_stats_array(x[:1], x[1], None, None)
            fails += _differences(cell_stats(x, r, m, tol, pair=True), want)
        return {"fails": fails}

    return run


def part_cells(env: Env, args, rep: Report) -> None:
    n = 0
    for shape in SHAPES:
        for dtype in ("fp32", "bf16", "fp16"):
            for hostile in (False, True):
                for tested, strided in ((1, False), (2, False), (2, True)):
                    if args.quick and (tested, strided) == (1, False):
                        continue
                    n += 1
                    name = f"{shape} {dtype} {'hostile' if hostile else 'clean'} x{tested}"
                    name += " strided" if strided else ""
                    rep.case(
                        "cells",
                        name,
                        _case(env, shape, dtype, hostile, tested, strided, args.seed + n),
                    )
