"""The end-of-run reports, all derived from ``results.jsonl``: summary.json,
junit.xml, summary.md, errors.md and report.html."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.report.html import write_html
from harness.report.junit import junit_xml
from harness.report.log import read_results
from harness.report.markdown import errors_markdown, summary_markdown
from harness.report.text import first_line

STATUS_ORDER = ("failed", "crashed", "passed", "skipped")


def summarize(rows: list[dict], meta: dict | None = None) -> dict:
    counts = Counter(r["status"] for r in rows)
    return {
        **(meta or {}),
        "total": len(rows),
        "counts": {s: counts.get(s, 0) for s in STATUS_ORDER},
        "duration_s": round(sum(r["duration_s"] for r in rows), 3),
        "failures": [
            {
                "id": r["id"],
                "status": r["status"],
                "file": r["file"],
                "line": r["line"],
                "violations": [first_line(v["message"]) for v in r["violations"]][:10],
                "rerun": r["rerun"],
            }
            for r in rows
            if r["status"] in ("failed", "crashed")
        ],
    }


def write_summaries(report_dir: str | Path, meta: dict | None = None) -> dict:
    """Write summary.json, junit.xml, summary.md, errors.md and report.html."""
    report_dir = Path(report_dir)
    rows = read_results(report_dir)
    summary = summarize(rows, meta)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (report_dir / "junit.xml").write_text(junit_xml(rows), encoding="utf-8")
    (report_dir / "summary.md").write_text(summary_markdown(rows, summary), encoding="utf-8")
    (report_dir / "errors.md").write_text(errors_markdown(rows), encoding="utf-8")
    write_html(report_dir, rows, meta)
    return summary
