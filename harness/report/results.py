"""Run reports under ``reports/<run-name>/``.

``results.jsonl`` is appended and flushed case by case, so a crash keeps
everything already measured; ``summary.json``, ``junit.xml`` and
``summary.md`` (ready to append to a CI job summary) are derived from it at
the end, which also lets parallel workers share one results file.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from harness.run.result import CaseResult

RESULTS = "results.jsonl"
STATUS_ORDER = ("failed", "crashed", "passed", "skipped")


def default_run_name() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S")


class ResultLog:
    """Appends one JSON line per case; safe to share between processes."""

    def __init__(self, report_dir: str | Path, fresh: bool = False):
        self.dir = Path(report_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / RESULTS
        if fresh:  # a reused run name starts over instead of mixing two runs
            self.path.write_text("")

    def append(self, result: CaseResult) -> None:
        line = json.dumps(result.to_dict(), default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_results(report_dir: str | Path) -> list[dict]:
    path = Path(report_dir) / RESULTS
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["id"])


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
                "violations": [v["message"].splitlines()[0] for v in r["violations"]][:10],
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
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (report_dir / "junit.xml").write_text(junit_xml(rows))
    (report_dir / "summary.md").write_text(summary_markdown(rows, summary))
    (report_dir / "errors.md").write_text(errors_markdown(rows))
    from harness.report.html import write_html

    write_html(report_dir, rows, meta)
    return summary


def _violation_text(r: dict) -> str:
    lines = [
        f"[{v['check']}] {v['who']}"
        + (f" step {v['step']}" if v["step"] is not None else "")
        + f": {v['message']}"
        for v in r["violations"]
    ]
    return "\n".join([*lines, f"rerun: {r['rerun']}"])


def junit_xml(rows: list[dict]) -> str:
    counts = Counter(r["status"] for r in rows)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<testsuite name="gdn-harness" tests="{len(rows)}" failures="{counts["failed"]}" '
        f'errors="{counts["crashed"]}" skipped="{counts["skipped"]}">',
    ]
    for r in rows:
        attrs = (
            f"classname={quoteattr(r['file'])} name={quoteattr(r['name'])} "
            f'time="{r["duration_s"]}" file={quoteattr(r["file"])} line="{r["line"]}"'
        )
        out.append(f"  <testcase {attrs}>")
        text = escape(_violation_text(r))
        if r["status"] == "failed":
            first = r["violations"][0]["message"].splitlines()[0] if r["violations"] else ""
            out.append(f"    <failure message={quoteattr(first)}>{text}</failure>")
        elif r["status"] == "crashed":
            out.append(f"    <error message={quoteattr(r['reason'])}>{text}</error>")
        elif r["status"] == "skipped":
            out.append(f"    <skipped message={quoteattr(r['reason'])}/>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"


def summary_markdown(rows: list[dict], summary: dict) -> str:
    c = summary["counts"]
    head = [
        f"## gdn-harness: {summary.get('impl', '?')} (baseline: {summary.get('baseline', '?')})"
        f" on {summary.get('device', '?')}",
        "",
        f"**{c['passed']} passed, {c['failed']} failed, {c['crashed']} crashed, "
        f"{c['skipped']} skipped** of {summary['total']} cases "
        f"({summary['duration_s']:.1f} s in cases)",
        "",
    ]
    if summary["failures"]:
        head += ["| case | status | first violation | rerun |", "|---|---|---|---|"]
        for f in summary["failures"]:
            first = (f["violations"] or [""])[0].replace("|", "\\|")[:200]
            head.append(
                f"| `{f['id']}` (line {f['line']}) | {f['status']} | {first} | `{f['rerun']}` |"
            )
        head.append("")
    drift = [r for r in rows if r["drift"]]
    if drift:
        head += ["### Drift of the carried state (max abs vs exact float64 trajectory)", ""]
        head += [
            "| case | impl | steps | final state drift | final out drift |",
            "|---|---|---|---|---|",
        ]
        for r in drift:
            for who in dict.fromkeys(d["who"] for d in r["drift"]):
                last = [d for d in r["drift"] if d["who"] == who][-1]
                head.append(
                    f"| `{r['id']}` | {who} | {last['step'] + 1} | "
                    f"{_fmt(last['state_max_abs'])} | {_fmt(last['out_max_abs'])} |"
                )
        head.append("")
    return "\n".join(head)


def _fmt(x) -> str:
    return x if isinstance(x, str) else f"{x:.3g}"


def errors_markdown(rows: list[dict]) -> str:
    """Largest errors per case and pair (over all steps), worst element vs its bound;
    a pair that is only reported (implementation vs implementation) has no bound."""
    out = [
        "### Largest errors per case",
        "",
        "| case | pair | out max abs | out worst/bound | state max abs | state worst/bound |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        pairs: dict[str, dict[str, dict]] = {}
        for st in r["stats"]:
            rank = "worst_ratio" if st.get("checked", True) else "max_abs"
            cur = pairs.setdefault(st["pair"], {}).get(st["quantity"])
            if cur is None or _key(st[rank]) > _key(cur[rank]):
                pairs[st["pair"]][st["quantity"]] = st
        for pair, q in pairs.items():
            o, s_ = q.get("out", {}), q.get("state", {})
            out.append(
                f"| `{r['name']}` | {pair} | {_fmt(o.get('max_abs', '-'))} | "
                f"{_ratio(o)} | {_fmt(s_.get('max_abs', '-'))} | {_ratio(s_)} |"
            )
    return "\n".join(out) + "\n"


def _ratio(st: dict) -> str:
    return _fmt(st["worst_ratio"]) if st and st.get("checked", True) else "-"


def _key(x) -> float:
    return float(x) if not isinstance(x, str) else float("inf")


def console_line(result: CaseResult) -> str:
    worst = max((s.worst_ratio for s in result.stats if s.checked), default=0.0)
    tag = {"passed": "PASS", "failed": "FAIL", "crashed": "CRASH", "skipped": "SKIP"}
    extra = result.reason if result.status == "skipped" else f"worst {worst:.2g}x tol"
    return f"{tag[result.status]:5} {result.case.id}  ({result.duration_s:.2f}s, {extra})"


def console_failure(result: CaseResult) -> str:
    lines = [
        f"--- {result.status.upper()}: {result.case.id} ({result.case.file}:{result.case.line})"
    ]
    lines += [f"  {line}" for v in result.violations for line in str(v).splitlines()]
    lines.append(f"  rerun: {result.rerun_command()}")
    return "\n".join(lines)
