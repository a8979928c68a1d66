"""The main table: on each case, every implementation checked, then timed.

One row per implementation and case: its check (``verify.py``), its time
per call over the rotated input sets (``timing.py``), the speedup over the
unfused baseline, the share of the byte floor (``floor.py``), the time of a
copy of the same size (``bandwidth.py``) and the target verdicts
(``targets.py``).

Outside kernels (``--impl vllm``) sit in the same table. Each is checked
under its own padding conventions, and when one of them treats slot 0 as the
null block no row of the case names slot 0, for every implementation alike.
What an implementation cannot express (its ``unsupported`` hook: a layout,
a dtype) becomes a row marked skipped with the reason, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from harness.bench.bandwidth import SAME_COPY_MIN_BYTES, same_size_copy
from harness.bench.config import BenchConfig, Shape
from harness.bench.floor import set_footprint, step_bytes
from harness.bench.inputsets import InputSets, case_sets
from harness.bench.rows import CaseRow, MainRow
from harness.bench.targets import evaluate_targets
from harness.bench.timing import Timing, release, time_calls
from harness.bench.verify import CaseCheck, prepare_check, run_check
from harness.core.conventions import Conventions
from harness.core.dtypes import nbytes
from harness.impls.registry import Implementation


def refloor(rows: Sequence[MainRow], copy_GBps: float) -> None:
    """Floor time, % of floor and target verdicts of ``rows`` for ``copy_GBps``
    (a row's targets may name the other rows of its case: the peer targets)."""
    cases: dict[tuple, list[MainRow]] = {}
    for r in rows:
        r.floor_us = r.floor_bytes / (copy_GBps * 1e9) * 1e6
        if r.time_us is not None:
            r.pct_floor = 100.0 * r.floor_us / r.time_us
        cases.setdefault(_case_key(r), []).append(r)
    for r in rows:
        r.targets = evaluate_targets(r, cases[_case_key(r)])


def _case_key(r: MainRow) -> tuple:
    return (r.shape, r.layout, r.B, r.act_dtype, r.state_dtype)


def time_sets(
    fn: Callable[..., None], sets: InputSets, device: torch.device, replays: int
) -> Timing:
    """Time ``fn`` with one call per input set (each on its own set, region and out)."""
    return time_calls(sets.calls(fn), device, replays, use_graph=device.type == "cuda")


def bench_case(
    cfg: BenchConfig,
    impls: Sequence[Implementation],
    shape: Shape,
    layout: str,
    B: int,
    device: torch.device,
    copy_GBps: float,
) -> list[MainRow]:
    """Check, then time, every implementation on one case; one row per implementation."""
    act, st = nbytes(cfg.act_dtype), nbytes(cfg.state_dtype)
    floor = step_bytes(B, shape, act, st)
    conventions = [impl.conventions for impl in impls]
    null_slot = any(c.null_slot for c in conventions)
    sets = case_sets(cfg, shape, layout, B, device, seed=cfg.seed + B,
                     slot_order=cfg.slot_order, null_slot=null_slot)  # fmt: skip
    chk = prepare_check(sets, cfg.check_rows) if cfg.check else None
    rows = []
    for impl, conv in zip(impls, conventions, strict=True):
        row = MainRow(
            **CaseRow.case(shape, layout, B),
            act_dtype=cfg.act_dtype,
            state_dtype=cfg.state_dtype,
            input_sets=sets.count,
            rotated_bytes=sets.count * set_footprint(B, shape, act, st),
            floor_bytes=floor.total,
            floor_breakdown=floor,
            impl=impl.spec,
            conventions=None if conv.is_default else conv.describe(),
        )
        _measure(row, impl, conv, sets, chk, device, cfg.replays)
        rows.append(row)
    base = next((r for r in rows if r.impl == "baseline" and r.time_us is not None), None)
    for r in rows:
        if base is not None and r.time_us is not None:
            r.speedup = base.time_us / r.time_us
    refloor(rows, copy_GBps)
    del sets, chk
    release(device)
    if floor.total >= SAME_COPY_MIN_BYTES or device.type != "cuda":
        _add_same_size_copy(rows, floor.total, device, cfg.replays)
    return rows


def _measure(
    row: MainRow,
    impl: Implementation,
    conventions: Conventions,
    sets: InputSets,
    chk: CaseCheck | None,
    device: torch.device,
    replays: int,
) -> None:
    """Check, then time, one implementation on one case, into ``row``."""
    try:
        reason = impl.unsupported(sets.spec)
    except Exception as exc:
        row.status, row.check = "error", "-"
        row.detail = f"unsupported() raised {type(exc).__name__}: {exc}"
        return
    if reason:
        row.status, row.check, row.detail = "skipped", "-", str(reason)
        return
    if chk is not None:
        ok, row.detail = run_check(impl.fn, sets, chk, conventions)
        row.check = "PASS" if ok else "FAIL"
        if not ok:
            row.status = "check-failed"
            return
    try:
        t = time_sets(impl.fn, sets, device, replays)
    except Exception as exc:
        row.status, row.detail = "error", f"timing failed: {type(exc).__name__}: {exc}"
        release(device)
        return
    row.time_us, row.time_us_min, row.timing = t.median_us, t.min_us, t.method
    row.replays, row.calls_per_replay = t.replays, t.calls_per_replay
    row.GBps = row.floor_bytes / (t.median_us * 1e-6) / 1e9


def _add_same_size_copy(
    rows: Sequence[MainRow], floor_bytes: int, device: torch.device, replays: int
) -> None:
    """The time of a copy that moves as many bytes as the step, beside each row."""
    try:
        copy_us = same_size_copy(floor_bytes // 2, device, replays)
    except torch.OutOfMemoryError:
        release(device)
        return  # the copy is a reference; the rows stand without it
    for r in rows:
        r.copy_us = copy_us
        if r.time_us is not None:
            r.pct_copy = 100.0 * copy_us / r.time_us
    release(device)
