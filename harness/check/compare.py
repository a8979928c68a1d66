"""Error statistics of one tensor against a reference, under a per-element bound.

Stats accumulate over chunks of rows (the largest shapes never hold a whole
float64 state in memory) and keep the location of the worst elements in the
terms a kernel author debugs in: batch row, state slot, value head, and the
element (``v`` for the output, ``k, v`` for the state in canonical order).

The arrays of a piece may be NumPy's or CuPy's: every whole-array pass runs
in their own module (on their device), and only scalars and per-(row, head)
maxima come back to the host, so both give the same verdicts and locations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from reference.namespace import Array, array_namespace, to_numpy

if TYPE_CHECKING:
    from harness.check.cells import CellStats

MAX_CELLS = 65536


@dataclass(frozen=True)
class Location:
    """Where an element lives: row, the slot that row names, head, element."""

    row: int
    slot: int
    head: int
    k: int | None
    v: int

    def __str__(self) -> str:
        k = f" k={self.k}" if self.k is not None else ""
        return f"row {self.row} slot {self.slot} head {self.head}{k} v={self.v}"


@dataclass
class ErrorStats:
    """Errors of one quantity for one pair at one step, merged over chunks."""

    quantity: str  # "out" or "state"
    pair: str  # e.g. "packed vs oracle"
    step: int
    tolerance: str
    checked: bool = True  # False: reported only, never a violation
    n: int = 0
    over: int = 0
    nan: int = 0
    inf: int = 0
    rounded_inf: int = 0  # Inf where the oracle's value overflows the dtype: no error
    max_abs: float = 0.0
    max_abs_at: Location | None = None
    max_rel: float = 0.0
    max_rel_at: Location | None = None
    worst_ratio: float = 0.0  # max |err| / bound
    worst_at: Location | None = None
    worst_value: tuple[float, float] | None = None  # (tested, reference) at worst_at
    err_sq: float = 0.0
    ref_sq: float = 0.0
    head_ratio: dict[int, float] = field(default_factory=dict)  # head -> max |err|/bound
    # (slot, head) -> max |err|/bound, only where the bound is exceeded (heatmaps)
    cells: dict[tuple[int, int], float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.checked or (self.over == 0 and self.nan == 0 and self.inf == 0)

    @property
    def rms_ratio(self) -> float:
        return math.sqrt(self.err_sq / self.ref_sq) if self.ref_sq > 0 else math.sqrt(self.err_sq)

    def add(
        self,
        x: Array,
        ref: Array,
        bound: Array | None,
        rows: np.ndarray,
        slots: np.ndarray,
        head0: int = 0,
        ref_floor: Array | None = None,
        overflow: float | None = None,
    ) -> None:
        """Fold in a piece: arrays ``[R, h, V]`` or ``[R, h, K, V]`` of value heads
        ``head0 .. head0 + h``.

        ``bound`` None: differences are reported (max abs, max rel, RMS), not
        checked. ``ref_floor``, ``max(|ref|, tiny)``, may be passed in when
        several arrays are compared with one reference. ``overflow``: the
        dtype's overflow threshold, above which an Inf is a correct rounding.
        ``rows`` and ``slots`` are host arrays; the others share one module.
        """
        if x.size == 0:
            return
        xp = array_namespace(x, ref, bound)
        self.n += x.size
        ref = xp.asarray(ref, dtype=xp.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = xp.subtract(x, ref, dtype=xp.float64)
        xp.abs(err, out=err)
        err_sq = float(xp.vdot(err.ravel(), err.ravel()))
        ref_sq = float(xp.vdot(ref.ravel(), ref.ravel()))
        if math.isfinite(err_sq) and math.isfinite(ref_sq):  # the common case
            self.err_sq += err_sq
            self.ref_sq += ref_sq
            ratio = None if bound is None else xp.divide(err, bound)
            if ref_floor is None:
                ref_floor = relative_floor(ref)
            rel = xp.divide(err, ref_floor)
        else:
            if overflow is not None and bound is not None:
                x, n = saturate_overflow(x, ref, bound, overflow)
                self.rounded_inf += n
            err = self._nonfinite_err(x, ref)
            ratio = None if bound is None else error_ratio(err, bound)
            rel = relative_error(err, relative_floor(ref))
        self._track("max_abs", err, rows, slots, head0)
        self._track("max_rel", rel, rows, slots, head0)
        if ratio is not None:
            self._add_ratio(ratio, x, ref, rows, slots, head0)

    def add_cells(self, cs: CellStats, shape: tuple[int, ...], rows, slots, head0: int = 0) -> None:
        """Fold in a piece of ``shape`` (``[R, h, V]`` or ``[R, h, K, V]``) given as
        per-cell stats (``harness.check.cells``): the same result as ``add`` on
        its arrays, but for the rounding order of the sums of squares."""
        size = math.prod(shape)
        if size == 0:
            return
        self.n += size
        self.nan += int(cs.nan.sum())
        self.inf += int(cs.inf.sum())
        self.err_sq += float(cs.err_sq.sum())
        self.ref_sq += float(cs.ref_sq.sum())
        place = (shape, rows, slots, head0)
        self._keep("max_abs", "max_abs_at", cs.max_abs, cs.max_abs_at, place)
        self._keep("max_rel", "max_rel_at", cs.max_rel, cs.max_rel_at, place)
        if cs.worst is None:
            return
        self.rounded_inf += int(cs.rounded_inf.sum())
        per_cell = cs.worst.reshape(shape[:2])
        if per_cell.max() > 1.0:
            self.over += int(cs.over.sum())
            self._track_cells(per_cell, slots, head0)
        cell = self._keep("worst_ratio", "worst_at", cs.worst, cs.worst_at, place)
        if cell is not None:
            self.worst_value = (float(cs.worst_x[cell]), float(cs.worst_ref[cell]))
        for h, r in enumerate(per_cell.max(axis=0).tolist(), start=head0):
            self.head_ratio[h] = max(self.head_ratio.get(h, 0.0), r)

    def _keep(self, attr: str, loc_attr: str, best, at, place) -> int | None:
        """``_track`` from per-cell maxima ``best`` at in-cell indices ``at``:
        the cell that now holds the maximum, or None when it did not change."""
        shape, rows, slots, head0 = place
        cell = int(np.argmax(best))
        value = float(best[cell])
        if value <= getattr(self, attr) and getattr(self, loc_attr) is not None:
            return None
        flat = cell * (math.prod(shape) // best.size) + int(at[cell])
        setattr(self, attr, value)
        setattr(self, loc_attr, _locate(shape, flat, rows, slots, head0))
        return cell

    def _add_ratio(self, ratio: Array, x, ref, rows, slots, head0: int) -> None:
        xp = array_namespace(ratio)
        per_cell = _cell_max(ratio)
        if bool(xp.isnan(per_cell).any()):  # a NaN bound (NaN magnitude): no bound at all
            ratio = xp.where(xp.isnan(ratio), np.inf, ratio)
            per_cell = _cell_max(ratio)
        flat = _argmax(ratio, per_cell)
        worst = _at(ratio, flat)
        if worst > 1.0:  # counting is a pass of its own: only when something is over
            self.over += int(xp.count_nonzero(ratio > 1.0))
            self._track_cells(to_numpy(per_cell), slots, head0)
        if self._track("worst_ratio", ratio, rows, slots, head0, "worst_at", flat):
            at = tuple(int(i) for i in np.unravel_index(flat, ratio.shape))
            self.worst_value = (float(x[at]), float(ref[at]))
        for h, r in enumerate(per_cell.max(axis=0).tolist(), start=head0):
            self.head_ratio[h] = max(self.head_ratio.get(h, 0.0), r)

    def _nonfinite_err(self, x: Array, ref: Array) -> Array:
        """``element_errors``, counted into these stats."""
        xp = array_namespace(x, ref)
        err, bad_nan, bad_inf = element_errors(x, ref)
        self.nan += int(bad_nan.sum())
        self.inf += int(bad_inf.sum())
        finite = xp.isfinite(err)
        self.err_sq += float(xp.sum(xp.where(finite, err, 0.0) ** 2))
        self.ref_sq += float(xp.sum(xp.where(xp.isfinite(ref), ref, 0.0) ** 2))
        return err

    def _track_cells(self, per_cell: np.ndarray, slots: np.ndarray, head0: int) -> None:
        """Keep (slot, head) cells over the bound: ``per_cell [R, HV]`` (host) is the max ratio."""
        for r, h in zip(*np.nonzero(per_cell > 1.0), strict=True):
            if len(self.cells) >= MAX_CELLS:
                return
            key = (int(slots[r]), head0 + int(h))
            self.cells[key] = max(self.cells.get(key, 0.0), float(per_cell[r, h]))

    def merge(self, other: ErrorStats) -> None:
        """Fold in the stats of a later chunk (same result as adding its arrays here)."""
        for attr in ("n", "over", "nan", "inf", "rounded_inf", "err_sq", "ref_sq"):
            setattr(self, attr, getattr(self, attr) + getattr(other, attr))
        for attr, loc in (
            ("max_abs", "max_abs_at"),
            ("max_rel", "max_rel_at"),
            ("worst_ratio", "worst_at"),
        ):
            theirs = getattr(other, loc)
            if theirs is not None and (
                getattr(self, loc) is None or getattr(other, attr) > getattr(self, attr)
            ):
                setattr(self, attr, getattr(other, attr))
                setattr(self, loc, theirs)
                if attr == "worst_ratio":
                    self.worst_value = other.worst_value
        for h, r in other.head_ratio.items():
            self.head_ratio[h] = max(self.head_ratio.get(h, 0.0), r)
        for key, r in other.cells.items():
            if key in self.cells or len(self.cells) < MAX_CELLS:
                self.cells[key] = max(self.cells.get(key, 0.0), r)

    def _track(
        self,
        attr: str,
        values: Array,
        rows,
        slots,
        head0: int = 0,
        loc_attr: str | None = None,
        flat: int | None = None,
    ) -> bool:
        flat = _argmax(values, _cell_max(values)) if flat is None else flat
        best = _at(values, flat)
        if best <= getattr(self, attr) and getattr(self, loc_attr or f"{attr}_at") is not None:
            return False
        setattr(self, attr, best)
        loc = _locate(values.shape, flat, rows, slots, head0)
        setattr(self, loc_attr or f"{attr}_at", loc)
        return True

    def summary(self) -> str:
        """One line: counts, the worst element and the tolerance."""
        parts = [f"{self.over}/{self.n} over tolerance"]
        if self.nan or self.inf:
            parts.append(f"{self.nan} NaN, {self.inf} Inf")
        if self.rounded_inf:
            parts.append(f"{self.rounded_inf} Inf where the oracle overflows (no error)")
        parts.append(f"max abs {self.max_abs:.3g} at {self.max_abs_at}")
        parts.append(f"max rel {self.max_rel:.3g} at {self.max_rel_at}")
        if self.worst_at is not None and self.worst_value is not None:
            got, want = self.worst_value
            parts.append(
                f"worst {self.worst_ratio:.3g}x bound at {self.worst_at} "
                f"(got {got:.6g}, want {want:.6g})"
            )
        parts.append(f"rms ratio {self.rms_ratio:.3g}; tol: {self.tolerance}")
        return f"{self.quantity} {self.pair} step {self.step}: " + ", ".join(parts)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("max_abs_at", "max_rel_at", "worst_at"):
            loc = getattr(self, key)
            d[key] = str(loc) if loc is not None else None
        d["head_ratio"] = {str(h): _finite(r) for h, r in self.head_ratio.items()}
        d["cells"] = [[slot, h, _finite(r)] for (slot, h), r in sorted(self.cells.items())]
        d["rms_ratio"] = _finite(self.rms_ratio)
        for key in ("max_abs", "max_rel", "worst_ratio"):
            d[key] = _finite(d[key])
        if self.worst_value is not None:
            d["worst_value"] = [_finite(v) for v in self.worst_value]
        d["ok"] = self.ok
        return d


def element_errors(x: Array, ref: Array) -> tuple[Array, Array, Array]:
    """|x - ref| with NaN/Inf in either, and the masks of NaN and of Inf in ``x``
    where ``ref`` has none: a NaN or Inf where ref is finite is infinite error,
    a NaN where ref is NaN and an Inf equal to ref are no error."""
    xp = array_namespace(x, ref)
    bad_nan = xp.isnan(x) & ~xp.isnan(ref)
    bad_inf = xp.isinf(x) & ~xp.isinf(ref)
    with np.errstate(invalid="ignore"):
        err = xp.where(x == ref, 0.0, xp.abs(x - ref))
    err[bad_nan | bad_inf] = np.inf
    err[xp.isnan(x) & xp.isnan(ref)] = 0.0
    err[xp.isnan(err)] = np.inf  # a finite value where the reference is infinite
    return err, bad_nan, bad_inf


def error_ratio(err: Array, bound: Array) -> Array:
    """err / bound, 0 where there is no error and infinite where the quotient
    is NaN (a value where the oracle or its bound is NaN or infinite)."""
    xp = array_namespace(err, bound)
    with np.errstate(invalid="ignore"):
        ratio = xp.where(err == 0, 0.0, err / bound)
    ratio[xp.isnan(ratio)] = np.inf
    return ratio


def relative_error(err: Array, floor: Array) -> Array:
    """err / floor, infinite where the quotient is NaN (an error against an
    infinite or NaN reference)."""
    xp = array_namespace(err, floor)
    with np.errstate(invalid="ignore"):
        rel = xp.divide(err, floor)
    rel[xp.isnan(rel)] = np.inf
    return rel


def saturate_overflow(
    x: Array, ref: Array, reach: Array | float, threshold: float
) -> tuple[Array, int]:
    """``x`` with each Inf that correctly rounds the oracle's value replaced by
    ``sign * max(threshold, |ref|)``, and how many there were.

    An Inf is a correct rounding where the reference, moved towards it by at
    most ``reach`` (the tolerance), reaches ``threshold``: its error is then
    the distance from the reference to the overflow range, within the bound.
    """
    xp = array_namespace(x, ref, reach)
    mag = xp.abs(ref)
    with np.errstate(invalid="ignore"):
        ok = xp.isinf(x) & xp.isfinite(ref) & (xp.sign(x) == xp.sign(ref))
        ok &= mag + reach >= threshold
    n = int(xp.count_nonzero(ok))
    if n == 0:
        return x, 0
    x = xp.array(x, dtype=xp.float64)
    x[ok] = xp.sign(ref[ok]) * xp.maximum(threshold, mag[ok])
    return x, n


def relative_floor(ref: Array) -> Array:
    """``max(|ref|, tiny)``: the denominator of relative errors."""
    xp = array_namespace(ref)
    floor = xp.abs(ref, dtype=xp.float64)
    xp.maximum(floor, np.finfo(np.float64).tiny, out=floor)
    return floor


def _cell_max(a: Array) -> Array:
    """Max over each (row, head) cell of a C-contiguous ``[R, h, ...]`` array."""
    return a.reshape(a.shape[0], a.shape[1], -1).max(axis=2)


def _argmax(a: Array, per_cell: Array) -> int:
    """``np.argmax(a)`` (first maximum, flat index) found through the cell maxima:
    one pass over the winning cell instead of another over the whole array."""
    xp = array_namespace(a)
    cell = int(xp.argmax(per_cell))
    size = a.size // per_cell.size
    return cell * size + int(xp.argmax(a.reshape(-1, size)[cell]))


def _at(a: Array, flat: int) -> float:
    """Element ``flat`` of C-contiguous ``a`` in C order, as a Python float."""
    return float(a.reshape(-1)[flat])


def _finite(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _locate(
    shape: tuple[int, ...], flat: int, rows: np.ndarray, slots: np.ndarray, head0: int = 0
) -> Location:
    at = np.unravel_index(flat, shape)
    r, h = int(at[0]), head0 + int(at[1])
    k = int(at[2]) if len(shape) == 4 else None
    return Location(row=int(rows[r]), slot=int(slots[r]), head=h, k=k, v=int(at[-1]))


@dataclass
class DriftStats:
    """Carried-state drift against the exact float64 trajectory at one step."""

    who: str
    step: int
    state_max_abs: float
    state_rel_rms: float
    out_max_abs: float
    out_rel_rms: float

    def to_dict(self) -> dict:
        return {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def max_abs(x: Array) -> float:
    """max |x| (0 for an empty array), in the array's own module."""
    xp = array_namespace(x)
    return float(xp.abs(x).max()) if x.size else 0.0


def rel_rms(x: Array, ref: Array) -> float:
    """||x - ref|| / ||ref|| (the RMS error ratio), in the arrays' own module."""
    xp = array_namespace(x, ref)
    den = float(xp.sqrt(xp.sum(ref * ref)))
    num = float(xp.sqrt(xp.sum((x - ref) ** 2)))
    return num / den if den > 0 else num
