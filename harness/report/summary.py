"""The end-of-run reports, all derived from ``results.jsonl``: summary.json,
junit.xml, summary.md, errors.md and report.html.

A run that ended early (interrupted, killed, stopped at its first failure by
an outside signal) writes them from whatever results.jsonl holds, marked
*partial* in every one of them, so nobody mistakes them for a whole run.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.report.html import write_html
from harness.report.junit import junit_xml
from harness.report.log import INCOMPLETE, read_results
from harness.report.markdown import errors_markdown, summary_markdown
from harness.report.text import first_line

STATUS_ORDER = ("failed", "crashed", "passed", "skipped")
FAILING = ("failed", "crashed")


def summarize(rows: list[dict], meta: dict | None = None, partial: bool = False) -> dict:
    """summary.json: counts, time in cases and, per failing case, its first lines."""
    counts = Counter(r["status"] for r in rows)
    return {
        **(meta or {}),
        "partial": partial,
        "total": len(rows),
        "counts": {s: counts.get(s, 0) for s in STATUS_ORDER},
        "duration_s": round(sum(r["duration_s"] for r in rows), 3),
        "failures": [
            {
                "id": r["id"],
                "status": r["status"],
                "file": r["file"],
                "line": r["line"],
                "checks": list(dict.fromkeys(v["check"] for v in r["violations"])),
                "violations": [first_line(v["message"]) for v in r["violations"]][:10],
                "rerun": r["rerun"],
            }
            for r in rows
            if r["status"] in FAILING
        ],
    }


def write_summaries(
    report_dir: str | Path, meta: dict | None = None, partial: bool = False
) -> dict:
    """Write summary.json, junit.xml, summary.md, errors.md and report.html.

    ``partial``: the run ended before every selected case ran; the reports say
    so and the folder keeps its INCOMPLETE marker. Otherwise the marker goes.
    """
    report_dir = Path(report_dir)
    rows = read_results(report_dir)
    summary = summarize(rows, meta, partial)
    files = {
        "summary.json": json.dumps(summary, indent=2) + "\n",
        "junit.xml": junit_xml(rows, partial),
        "summary.md": summary_markdown(rows, summary),
        "errors.md": errors_markdown(rows),
    }
    for name, text in files.items():
        (report_dir / name).write_text(text, encoding="utf-8")
    write_html(report_dir, rows, meta, partial)
    marker = report_dir / INCOMPLETE
    if partial and not marker.exists():
        marker.write_text("The reports here are partial: the run ended early.\n")
    elif not partial:
        marker.unlink(missing_ok=True)
    return summary
