"""One bench run: every section the config asks for, in order, and the files it writes.

The copy bandwidth first; the main table (``table.py``), case by case; the
recurrent comparison (``recurrent.py``); the copy bandwidth again, and the
floor recomputed from the faster measurement; the harness's own cost
(``cost.py``). bench.json is rewritten after every case, so a run killed by
a time limit still leaves what it measured (marked ``"partial": true``);
bench.md and bench.svg are written at the end.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import triton

from harness.bench.bandwidth import COPY_BYTES, DRY_COPY_BYTES, best_copy, measure_copy_bandwidth
from harness.bench.config import SLOT_ORDERS, BenchConfig
from harness.bench.cost import harness_cost
from harness.bench.floor import L2_FACTOR, MAX_SETS, MIN_SETS
from harness.bench.inputsets import NULL_SLOT_NOTE, PAD_FREE_NOTE, SET_MEMORY_FRACTION
from harness.bench.output import fmt, render_md
from harness.bench.plot import render_svg
from harness.bench.recurrent import bench_recurrent_case, new_section
from harness.bench.rows import MainRow, Report, strict_json
from harness.bench.table import bench_case, refloor
from harness.bench.targets import peer_verdicts, target_summary
from harness.bench.timing import l2_bytes, release
from harness.impls.registry import load_implementation


def _log(msg: str) -> None:
    print(msg, flush=True)


def _versions() -> dict[str, Any]:
    fla = sys.modules.get("fla")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "numpy": np.__version__,
        "fla": getattr(fla, "__version__", None) if fla else None,
    }


def _device_info(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"kind": "cpu", "name": platform.processor() or platform.machine(), "l2_bytes": 0}
    p = torch.cuda.get_device_properties(device)
    return {
        "kind": "cuda",
        "name": torch.cuda.get_device_name(device),
        "l2_bytes": l2_bytes(device),
        "sm_count": p.multi_processor_count,
        "total_memory": p.total_memory,
        "capability": f"{p.major}.{p.minor}",
    }


def _method(cfg: BenchConfig, device: torch.device, null_slot: bool) -> dict[str, str]:
    """How each number was obtained, in words (recorded in the JSON)."""
    slots = f"{PAD_FREE_NOTE}, " + (f"{NULL_SLOT_NOTE}, " if null_slot else "")
    return {
        "timing": "one CUDA graph of R calls (one per input set), median of the replays / R"
        if device.type == "cuda"
        else "dry: eager calls, wall clock",
        "input_sets": f"auto: enough that R x footprint >= {L2_FACTOR:g} x L2 "
        f"({MIN_SETS}..{MAX_SETS}, within {SET_MEMORY_FRACTION:.0%} of free memory); "
        + slots
        + SLOT_ORDERS[cfg.slot_order],
        "floor": "state read + written once, q/k/v/a/b/A_log/dt_bias/indices read, out "
        "written; divided by the copy bandwidth of this card in this run",
        "check": f"before timing: set 0, {cfg.check_rows} sampled rows vs the float64 oracle "
        "under harness.check.tolerance; every output row must be written, and under "
        "an implementation's pad: nonpositive slot 0 must keep its bits",
    }


def run_bench(cfg: BenchConfig, out_dir: Path) -> Report:
    """Run every section the config asks for; write bench.json/md/svg; return the report."""
    device = torch.device(cfg.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # Triton launches on the current device
    specs = list(dict.fromkeys(["packed", "baseline", *cfg.impls]))
    impls = [load_implementation(s) for s in specs]  # a bad spec fails before any work
    conventions = {i.spec: i.conventions for i in impls}  # as each declares them
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        dry=cfg.dry,
        device=_device_info(device),
        config={
            **asdict(cfg),
            "shapes": [s.label for s in cfg.shapes],
            "impls": specs,
            "conventions": {k: c.as_dict() for k, c in conventions.items() if not c.is_default},
        },
        method=_method(cfg, device, any(c.null_slot for c in conventions.values())),
    )
    with torch.no_grad():
        _log(f"bench on {report.device['name']} ({device}); impls: {', '.join(specs)}")
        copy_bytes = DRY_COPY_BYTES if cfg.dry else COPY_BYTES
        report.copy_bandwidth = first_copy = measure_copy_bandwidth(device, copy_bytes)
        release(device)
        again = " (measured again at the end)" if cfg.main else ""
        _log(f"copy bandwidth: {first_copy.GBps:.0f} GB/s{again}")
        if cfg.main:
            report.rows = []
            for shape, layout, B in _cases(cfg):
                case_rows = bench_case(cfg, impls, shape, layout, B, device, first_copy.GBps)
                report.rows += case_rows
                _log("  " + " | ".join(_progress(r) for r in case_rows))
                report.failed_checks = sum(r.status not in ("ok", "skipped") for r in report.rows)
                write_json(report, out_dir)
        if cfg.recurrent:
            fla, report.recurrent = new_section()
            for shape, layout, B in _cases(cfg):
                r = bench_recurrent_case(cfg, fla, shape, layout, B, device)
                report.recurrent.rows.append(r)
                write_json(report, out_dir)
                _log(
                    f"  recurrent {shape.label} {layout} B={B}: baseline "
                    f"{fmt(r.baseline_us)} us, fla {fmt(r.fla_us)} us"
                )
        if cfg.main:
            last_copy = measure_copy_bandwidth(device, copy_bytes)
            release(device)
            report.copy_bandwidth = best_copy(first_copy, last_copy)
            refloor(report.rows or [], report.copy_bandwidth.GBps)
            write_json(report, out_dir)
        if cfg.harness_cost:
            report.harness_cost = harness_cost(device, cfg.dry, cfg.oracle_rows, cfg.seed)
    report.partial = None
    write_json(report, out_dir)
    (out_dir / "bench.md").write_text(render_md(report))
    (out_dir / "bench.svg").write_text(render_svg(report))
    return report


def _cases(cfg: BenchConfig):
    """(shape, layout, B) in the order the tables list them."""
    return ((s, layout, B) for s in cfg.shapes for layout in cfg.layouts for B in cfg.batches)


def write_json(report: Report, out_dir: Path) -> None:
    """(Re)write bench.json, with the versions and the target tally brought up to date."""
    report.versions = _versions()
    rec = report.recurrent.rows if report.recurrent else []
    report.targets = target_summary(report.rows or [], rec)
    report.peer_targets = peer_verdicts(report.rows or []) or None
    text = json.dumps(strict_json(report), indent=1, default=str, allow_nan=False)
    (out_dir / "bench.json").write_text(text + "\n")


def _progress(r: MainRow) -> str:
    s = f"{r.shape} {r.layout} B={r.B} {r.impl}: "
    if r.time_us is not None:
        return s + f"{r.time_us:.2f} us ({r.pct_floor:.0f}% floor)"
    return s + f"{r.status} {r.detail[:120]}"
