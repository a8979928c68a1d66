"""What a run shows: the console tables and footer, and bench.md.

Plain Python over the typed rows of ``rows.py`` (no torch). The plot is
``plot.py``; bench.json is ``rows.strict_json`` of the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.bench.config import SLOT_ORDERS
from harness.bench.rows import (
    CopyBandwidth,
    HarnessCost,
    MainRow,
    PeerVerdict,
    RecurrentRow,
    Report,
)
from harness.bench.targets import peer_verdicts, target_cell, target_summary

MAIN_COLUMNS = (
    "shape",
    "layout",
    "B",
    "impl",
    "sets",
    "time_us",
    "x_base",
    "GB/s",
    "%floor",
    "%copy",
    "check",
    "targets",
    "note",
)
RECURRENT_COLUMNS = (
    "shape",
    "layout",
    "B",
    "sets",
    "baseline_us",
    "fla_us",
    "base/fla",
    "agree",
    "target",
)
LEFT_ALIGNED = {"shape", "layout", "impl", "check", "targets", "agree", "target", "note"}
LEFT_ALIGNED |= {"check of one step"}
OURS = ("packed", "baseline")  # every other implementation of a run is a peer


def fmt(x: Any, spec: str = ".2f") -> str:
    """A measured number for a table cell; '-' where it was not measured."""
    return "-" if x is None else format(x, spec)


def row_note(r: MainRow) -> str:
    """Why a row has no time: ``skipped: <reason>``, the failed check, the error."""
    if r.status == "ok":
        return ""
    return f"{r.status}: {r.detail}" if r.detail else r.status


def main_table_rows(rows: Sequence[MainRow]) -> list[list[str]]:
    out = []
    for r in rows:
        check = r.check if r.status in ("ok", "check-failed") else r.status.upper()
        out.append(
            [
                r.shape,
                r.layout,
                str(r.B),
                r.impl,
                str(r.input_sets),
                fmt(r.time_us),
                fmt(r.speedup),
                fmt(r.GBps, ".0f"),
                fmt(r.pct_floor, ".1f"),
                fmt(r.pct_copy, ".1f"),
                check,
                target_cell(r.targets),
                row_note(r),
            ]
        )
    return out


def peer_names(rows: Sequence[MainRow]) -> list[str]:
    """The run's implementations beyond packed and baseline, in the order given."""
    return [impl for impl in dict.fromkeys(r.impl for r in rows) if impl not in OURS]


def peer_columns(peers: Sequence[str]) -> list[str]:
    return ["shape", "layout", "B", "packed_us", *(f"{p}_us" for p in peers),
            *(f"packed/{p}" for p in peers)]  # fmt: skip


def peer_table_rows(rows: Sequence[MainRow], peers: Sequence[str]) -> list[list[str]]:
    """One line per case: packed's time, each peer's time (or why it has none),
    and packed's time over each peer's (below 1: packed is faster)."""
    cases: dict[tuple, dict[str, MainRow]] = {}
    for r in rows:
        cases.setdefault((r.shape, r.layout, r.B), {})[r.impl] = r
    out = []
    for (shape, layout, B), by_impl in cases.items():
        packed = by_impl.get("packed")
        mine = packed.time_us if packed else None
        times, ratios = [], []
        for p in peers:
            r = by_impl.get(p)
            if r is None or r.time_us is None:
                times.append("-" if r is None else _untimed(r))
                ratios.append("-")
                continue
            times.append(fmt(r.time_us))
            ratios.append("-" if mine is None else fmt(mine / r.time_us, ".3f"))
        out.append([shape, layout, str(B), fmt(mine), *times, *ratios])
    return out


def _untimed(r: MainRow) -> str:
    return "FAIL" if r.status == "check-failed" else r.status.upper()


def peer_verdict_line(v: PeerVerdict) -> str:
    """The whole-grid claim against one peer: met, missed, or not covered by the run."""
    worst = ""
    if v.worst_ratio is not None:
        worst = f"; slowest packed/{v.peer} {v.worst_ratio:.3f} at {v.worst_case}"
    if v.met:
        return f"MET {v.claim}: {v.compared} of {v.grid} cases{worst}"
    unrun = f"{len(v.not_run)} of the grid's {v.grid} cases not run"
    if v.met is False:
        extra = f"; {unrun}" if v.not_run else ""
        return f"MISSED {v.claim}: at {len(v.missed)} of {v.compared} cases compared{extra}{worst}"
    return f"NOT EVALUATED {v.claim}: {unrun}; none of the {v.compared} run missed{worst}"


def recurrent_table_rows(rows: Sequence[RecurrentRow]) -> list[list[str]]:
    out = []
    for r in rows:
        agree = "-"
        if r.agree is not None:
            agree = "yes" if r.agree else "NO"
        elif r.fla_error is not None:
            agree = "ERROR"
        t = r.target
        out.append(
            [
                r.shape,
                r.layout,
                str(r.B),
                str(r.input_sets),
                fmt(r.baseline_us),
                fmt(r.fla_us),
                fmt(r.ratio, ".3f"),
                agree,
                "-" if t is None else ("PASS" if t.ok else "MISS"),
            ]
        )
    return out


def text_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]
    right = {i for i, c in enumerate(columns) if c not in LEFT_ALIGNED}

    def line(cells):
        return "  ".join(
            (c.rjust(w) if i in right else c.ljust(w))
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows)
    return "\n".join([head, sep, *body])


CHECK_COLUMN = "check of one step"


def check_cost_table(cost: HarnessCost) -> tuple[list[str], list[list[str]]] | None:
    """The check of one step on each check device measured, side by side (None: none)."""
    cs = cost.checks
    if not cs:
        return None

    def how(c) -> str:
        if c.first_call_seconds is None:
            workers = f"{c.workers} check worker{'s' if c.workers != 1 else ''}"
            return f"{workers}, {c.reps} call"
        return f"median of {c.reps} calls after the first, synchronised"

    def timed(c) -> str:
        return f"{c.rows_timed} of {c.shape['B']}" + (", scaled" if c.extrapolated else "")

    cells = [
        ["seconds per step", *(f"{c.seconds_full_batch:.3g}" for c in cs)],
        ["ns per state element", *(f"{c.ns_per_state_element:.3g}" for c in cs)],
        ["rows timed", *(timed(c) for c in cs)],
        ["first call, s (compiles)", *(fmt(c.first_call_seconds, ".3g") for c in cs)],
        ["how", *(how(c) for c in cs)],
    ]
    return [CHECK_COLUMN, *(c.check_device for c in cs)], cells


def harness_cost_lines(cost: HarnessCost) -> list[str]:
    """What the check table measures, the devices without a column and why, and the runner."""
    lines = []
    if cost.checks:
        s = cost.checks[0].shape
        lines.append(
            f"check of one step at B={s['B']} H={s['H']} HV={s['HV']} K={s['K']} V={s['V']} "
            f"per check device: {cost.check_what}"
        )
        by = {c.check_device: c for c in cost.checks}
        gpu = next((c for c in cost.checks if c.check_device != "cpu"), None)
        if "cpu" in by and gpu is not None and gpu.seconds_full_batch > 0:
            ratio = by["cpu"].seconds_full_batch / gpu.seconds_full_batch
            lines.append(f"{gpu.check_device} checks the step {ratio:.3g}x as fast as cpu")
    lines += [f"check on {name}: {why}" for name, why in cost.check_notes.items()]
    r = cost.runner
    if r:
        c = r.case
        lines.append(
            f"runner per case (run_case, packed + baseline, B={c['B']} HV={c['HV']} K={c['K']}): "
            f"{r.wall_ms:.1f} ms wall, {r.kernel_ms:.3f} ms kernels, "
            f"{r.overhead_ms:.1f} ms overhead ({r.status})"
        )
    if cost.runner_error is not None:
        lines.append(f"runner error: {cost.runner_error}")
    return lines


def _summary(report: Report):
    rec = report.recurrent.rows if report.recurrent else []
    return target_summary(report.rows or [], rec)


def _copy_spread(copy: CopyBandwidth) -> str:
    if copy.start_GBps is None:
        return ""
    return f"; start {copy.start_GBps:.0f}, end {copy.end_GBps:.0f}: the faster"


def render_md(report: Report) -> str:
    dev, ver, copy = report.device, report.versions or {}, report.copy_bandwidth
    lines = [
        "# gdn-harness bench",
        "",
        f"- card: **{dev.get('name')}** ({dev.get('kind')}); "
        f"L2 {dev.get('l2_bytes', 0) / 2**20:.0f} MiB",
        f"- versions: python {ver['python']}, torch {ver['torch']}, triton {ver['triton']}, "
        f"cuda {ver.get('cuda')}",
        f"- created {report.created}{' (DRY RUN: not a measurement)' if report.dry else ''}",
    ]
    if copy:
        lines.append(
            f"- copy bandwidth (floor denominator): {copy.GBps:.0f} GB/s "
            f"({copy.bytes_copied / 2**30:.2f} GiB copied, median of {copy.reps}"
            + _copy_spread(copy)
            + ")"
        )
    order = report.config.get("slot_order", "permuted")
    if order != "permuted":
        lines.append(f"- slot order: {order}: {SLOT_ORDERS[order]}")
    for impl, conv in (report.config.get("conventions") or {}).items():
        lines.append(
            f"- {impl} declares pad={conv['pad']} pad_output={conv['pad_output']}"
            + ("; no row names slot 0 (its null block)" if conv["pad"] == "nonpositive" else "")
        )
    lines += [
        "- compare only numbers from one run (one JSON): the floor is this card's copy "
        "bandwidth in this run",
        "",
    ]
    if report.rows:
        how = "eager wall clock, DRY RUN" if report.dry else "CUDA-graph replay, median"
        lines += [
            f"## Decode step: time per call ({how}, rotated input sets)",
            "",
            md_table(MAIN_COLUMNS, main_table_rows(report.rows)),
            "",
        ]
        peers = peer_names(report.rows)
        if peers:
            lines += [
                "## Peers: the same cases, side by side",
                "",
                "Time per call in us, from the table above; `packed/<peer>` is packed's "
                "time over the peer's (below 1: packed is faster).",
                "",
                md_table(peer_columns(peers), peer_table_rows(report.rows, peers)),
                "",
            ]
    rec = report.recurrent
    if rec:
        lines += [
            "## Recurrent kernel alone: baseline_recurrent vs FLA",
            "",
            f"FLA: {rec.fla}. {rec.note}",
            "",
        ]
        if rec.rows:
            lines += [md_table(RECURRENT_COLUMNS, recurrent_table_rows(rec.rows)), ""]
    if report.harness_cost:
        lines += [
            "## The harness's own cost",
            "",
            *(f"- {x}" for x in harness_cost_lines(report.harness_cost)),
            "",
        ]
        table = check_cost_table(report.harness_cost)
        if table:
            lines += [md_table(*table), ""]
    tally = _summary(report)
    lines += ["## Targets", "", f"{tally.passed} of {tally.evaluated} passed.", ""]
    lines += [f"- {peer_verdict_line(v)}" for v in peer_verdicts(report.rows or [])]
    lines += [f"- MISS {m}" for m in tally.missed]
    return "\n".join(lines) + "\n"


def console_report(report: Report, out_dir: Path) -> str:
    """The tail of the output: recurrent table, harness cost, then the main table and a footer."""
    parts = []
    rec = report.recurrent
    if rec:
        parts.append(f"== recurrent kernel alone (FLA: {rec.fla}) ==")
        if rec.rows:
            parts.append(text_table(RECURRENT_COLUMNS, recurrent_table_rows(rec.rows)))
    if report.harness_cost:
        parts += ["== harness cost ==", *harness_cost_lines(report.harness_cost)]
        table = check_cost_table(report.harness_cost)
        if table:
            parts.append(text_table(*table))
    if report.rows:
        how = "eager wall clock (DRY RUN)" if report.dry else "CUDA-graph replay, median"
        parts.append(f"== decode step: time per call, {how} ==")
        parts.append(text_table(MAIN_COLUMNS, main_table_rows(report.rows)))
        peers = peer_names(report.rows)
        if peers:
            parts.append("== peers: time per call (us); packed/<peer> below 1: packed faster ==")
            parts.append(text_table(peer_columns(peers), peer_table_rows(report.rows, peers)))
    copy, versions = report.copy_bandwidth, report.versions or {}
    tally = _summary(report)
    footer = [
        f"card: {report.device.get('name')} | torch {versions['torch']} | triton "
        f"{versions['triton']}"
        + (f" | copy {copy.GBps:.0f} GB/s{_copy_spread(copy)}" if copy else "")
        + (" | DRY RUN (not a measurement)" if report.dry else ""),
        f"targets: {tally.passed}/{tally.evaluated} passed"
        + (f"; {len(tally.missed)} missed" if tally.missed else ""),
        *(peer_verdict_line(v) for v in peer_verdicts(report.rows or [])),
        f"checks failed: {report.failed_checks} | report: {out_dir}",
    ]
    return "\n".join([*parts, *footer])
