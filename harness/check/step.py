"""The per-element check of one step: the oracle on the stored inputs, the
bound, and the error statistics of every pair, piece by piece.

A piece is a few rows by a few value heads, sized to stay in the CPU's
caches: the oracle and the comparison make a dozen passes over it. A block is
the rows whose copies are in memory at once. ``harness.check.pool`` spreads
the blocks of big steps over worker processes; ``harness.check.device`` runs
the same pieces on a GPU, where a piece is as big as memory allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from harness.check.cells import cell_stats_started
from harness.check.compare import ErrorStats, relative_floor
from harness.check.tolerance import ElementTol
from reference.namespace import Array, array_namespace
from reference.oracle import decode_rows

PIECE_BYTES = 2**19  # float64 state of one piece


@dataclass(frozen=True)
class StepContext:
    """What every piece of one step shares (small, sent to each worker job)."""

    H: int
    scale: float
    use_qk_l2norm: bool
    tol_out: ElementTol
    tol_state: ElementTol
    step: int


@dataclass
class Block:
    """A block of live rows: their activations, the pre-step states of the slots
    they name (canonical ``[R, HV, K, V]``) and each participant's results.

    ``rows`` and ``slots`` are host arrays; the others are NumPy arrays, or
    all arrays of one device module (``harness.check.device``)."""

    acts: tuple[Array, ...]  # qkv, a, b of these rows; A_log, dt_bias
    rows: np.ndarray  # batch rows
    slots: np.ndarray  # the slots they name
    pre: Array  # [R, HV, K, V]
    tested: list[tuple[Array, Array]] = field(default_factory=list)  # (out, state)


def pieces(
    R: int, HV: int, K: int, V: int, piece_bytes: int | None = None
) -> Iterator[tuple[slice, slice]]:
    """(rows, heads) pieces of ``R`` rows, each about ``piece_bytes`` (default
    PIECE_BYTES) of float64 state, in row-major order."""
    piece_bytes = PIECE_BYTES if piece_bytes is None else piece_bytes
    block = K * V * 8  # one row, one head
    if HV * block <= piece_bytes:
        n = piece_bytes // (HV * block)
        for r0 in range(0, R, n):
            yield slice(r0, min(r0 + n, R)), slice(0, HV)
        return
    n = max(1, piece_bytes // block)
    for r0 in range(R):
        for h0 in range(0, HV, n):
            yield slice(r0, r0 + 1), slice(h0, min(h0 + n, HV))


def new_stats(ctx: StepContext, tested: int) -> list[ErrorStats]:
    """Empty stats in piece order: (out, state) per participant vs the oracle,
    then (out, state) of the first participant vs the second."""
    pairs = tested + (1 if tested == 2 else 0)
    return [ErrorStats(q, "", ctx.step, "") for _ in range(pairs) for q in ("out", "state")]


def piece_stats(
    ctx: StepContext, block: Block, r: slice, heads: slice, stats
) -> Callable[[], None] | None:
    """Fold one piece into ``stats`` (as laid out by ``new_stats``). On a device
    the piece is only begun: the call returned folds it, once the host has
    begun the next piece (``block_stats``)."""
    qkv, a, b, A_log, dt_bias = block.acts
    ref = decode_rows(
        qkv[r],
        a[r],
        b[r],
        A_log,
        dt_bias,
        block.pre[r, heads],
        H=ctx.H,
        scale=ctx.scale,
        use_qk_l2norm=ctx.use_qk_l2norm,
        with_magnitude=True,
        heads=heads,
    )
    if array_namespace(ref.state) is not np:
        return _piece_by_cells(ctx, block, (r, heads), ref, stats)
    rows, slots = block.rows[r], block.slots[r]
    refs = (ref.out, ref.state)
    bounds = (
        ctx.tol_out.bound(ref.out, ref.out_mag),
        ctx.tol_state.bound(ref.state, ref.state_mag),
    )
    floors = tuple(relative_floor(x) for x in refs)
    overflows = (ctx.tol_out.overflow, ctx.tol_state.overflow)
    for i, tested in enumerate(block.tested):
        for j in range(2):
            stats[2 * i + j].add(
                tested[j][r, heads],
                refs[j],
                bounds[j],
                rows,
                slots,
                heads.start,
                floors[j],
                overflows[j],
            )
    if len(block.tested) == 2:  # implementation vs implementation: reported, not checked
        for j in range(2):
            x, y = block.tested[0][j][r, heads], block.tested[1][j][r, heads]
            stats[4 + j].add(x, y, None, rows, slots, heads.start)
    return None


def _piece_by_cells(ctx: StepContext, block: Block, piece, ref, stats) -> Callable[[], None]:
    """``piece_stats`` for device arrays: one pass per quantity and pair
    (``harness.check.cells``) instead of a dozen, begun; the call returned
    waits for it and folds it into ``stats``."""
    r, heads = piece
    where = (block.rows[r], block.slots[r], heads.start)
    quantities = ((ref.out, ref.out_mag, ctx.tol_out), (ref.state, ref.state_mag, ctx.tol_state))
    started = []
    for j, (want, mag, tol) in enumerate(quantities):
        xs = [tested[j][r, heads] for tested in block.tested]
        pending = cell_stats_started(xs, want, mag, tol, pair=len(xs) == 2)  # the pair: reported
        started.append((pending, want.shape))

    def fold() -> None:
        for j, (pending, shape) in enumerate(started):
            for i, cs in enumerate(pending()):
                stats[2 * i + j].add_cells(cs, shape, *where)

    return fold


Piece = tuple[slice, slice]


def block_stats(
    ctx: StepContext,
    block: Block,
    jobs: list[list[Piece]] | None = None,
    piece_bytes: int | None = None,
):
    """Stats of a block (or of some of its pieces), in ``new_stats`` order."""
    stats = new_stats(ctx, len(block.tested))
    if jobs is None:
        _, HV, K, V = block.pre.shape
        jobs = [list(pieces(block.rows.size, HV, K, V, piece_bytes))]
    folding = None  # a device's piece, folded once the next one is begun (in piece order)
    for job in jobs:
        for r, heads in job:
            begun = piece_stats(ctx, block, r, heads, stats)
            if folding is not None:
                folding()
            folding = begun
    if folding is not None:
        folding()
    return stats


def row_run(chunk: np.ndarray) -> slice | None:
    """``chunk`` as a slice when it is a run of consecutive rows, as the blocks
    of ``check_blocks`` are, so that its rows can be a view, not a gather."""
    first = int(chunk[0]) if chunk.size else 0
    if np.array_equal(chunk, np.arange(first, first + chunk.size)):
        return slice(first, first + chunk.size)
    return None


def block_rows(tested: int, HV: int, K: int, V: int, budget: int) -> int:
    """Rows per block: the float32 copies of pre state and results within ``budget`` bytes."""
    per_row = (1 + tested) * HV * K * V * 4 + tested * HV * V * 4
    return max(1, budget // per_row)


def merge_into(totals: list[ErrorStats], parts: list[ErrorStats]) -> None:
    for total, part in zip(totals, parts, strict=True):
        total.merge(part)
