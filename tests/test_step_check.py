"""The per-step check: pieces tile the block, and piecewise stats equal
whole-array stats."""

from __future__ import annotations

import numpy as np
import pytest

from harness.check import step as sc
from harness.check.compare import ErrorStats
from harness.check.tolerance import resolve
from harness.core.spec import Tolerance
from reference.oracle import decode_rows


@pytest.mark.parametrize(
    "R, HV, K, V", [(7, 3, 16, 8), (5, 40, 128, 128), (3, 2, 128, 128), (9, 1, 300, 300)]
)
def test_pieces_cover_every_row_and_head_once(R, HV, K, V):
    seen = np.zeros((R, HV), int)
    for r, h in sc.pieces(R, HV, K, V):
        seen[r, h] += 1
        assert (r.stop - r.start) * (h.stop - h.start) * K * V * 8 <= max(sc.PIECE_BYTES, K * V * 8)
    assert (seen == 1).all()


def _block(R=6, H=2, HV=4, K=64, V=48, seed=0, new=None):
    """A block whose tested results are the oracle's own, rounded to float32."""
    new = new or (lambda s: np.empty(s, np.float32))
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((R, 2 * H * K + HV * V)).astype(np.float32).astype(np.float64)
    a, b = rng.standard_normal((R, HV)), rng.standard_normal((R, HV))
    A_log, dt_bias = rng.uniform(-1, 1, HV), rng.standard_normal(HV)
    S = (rng.standard_normal((R, HV, K, V)) * 0.2).astype(np.float32)
    ref = decode_rows(qkv, a, b, A_log, dt_bias, S, H=H, scale=K**-0.5)
    pre = new(S.shape)
    pre[:] = S
    block = sc.Block((qkv, a, b, A_log, dt_bias), np.arange(R) * 2, np.arange(R) + 100, pre)
    for _ in range(2):
        out, state = new(ref.out.shape), new(ref.state.shape)
        out[:], state[:] = ref.out, ref.state
        block.tested.append((out, state))
    ctx = sc.StepContext(
        H, K**-0.5, True, resolve(Tolerance(), "fp32", K), resolve(Tolerance(), "fp32", K), 3
    )
    return ctx, block


def _whole(ctx, block) -> list[ErrorStats]:
    """The same stats from one call per pair on whole arrays."""
    ref = decode_rows(*block.acts, block.pre, H=ctx.H, scale=ctx.scale, with_magnitude=True)
    bounds = (
        ctx.tol_out.bound(ref.out, ref.out_mag),
        ctx.tol_state.bound(ref.state, ref.state_mag),
    )
    stats = sc.new_stats(ctx, 2)
    for i, tested in enumerate(block.tested):
        for j, want in enumerate((ref.out, ref.state)):
            stats[2 * i + j].add(tested[j], want, bounds[j], block.rows, block.slots)
    for j in range(2):
        stats[4 + j].add(block.tested[0][j], block.tested[1][j], None, block.rows, block.slots)
    return stats


def _same(a: ErrorStats, b: ErrorStats) -> None:
    for attr in ("n", "over", "nan", "inf", "max_abs_at", "max_rel_at", "worst_at", "cells"):
        assert getattr(a, attr) == getattr(b, attr), attr
    for attr in ("max_abs", "max_rel", "worst_ratio", "err_sq", "ref_sq"):
        assert getattr(a, attr) == pytest.approx(getattr(b, attr), rel=1e-12, abs=0), attr
    assert a.head_ratio == pytest.approx(b.head_ratio, rel=1e-12)


def _plant(block, row=4, head=3, k=10, v=7) -> None:
    block.tested[1][1][row, head, k, v] += 0.5  # one state element of the second implementation


@pytest.mark.parametrize("piece_bytes", [2**19, 64 * 48 * 8, 64 * 48 * 8 * 3])
def test_piecewise_stats_equal_whole_array_stats(monkeypatch, piece_bytes):
    monkeypatch.setattr(sc, "PIECE_BYTES", piece_bytes)
    ctx, block = _block()
    _plant(block)
    got, want = sc.block_stats(ctx, block), _whole(ctx, block)
    for g, w in zip(got, want, strict=True):
        _same(g, w)
    assert got[3].over == 1 and str(got[3].worst_at) == "row 8 slot 104 head 3 k=10 v=7"
    assert got[1].over == 0 and got[5].max_abs == pytest.approx(0.5, rel=1e-6)
