"""What a run prints: a line per case, a failure's details on one screen, and
the list of failed ids at the end.

Each takes a ``CaseResult`` or its results.jsonl row. A failure's details
group its violations by check, implementation and quantity
(:mod:`harness.report.failures`), so a case that fails every step of a long
run still fits on a screen; the headline names the checks that failed.
Everything printed passes through :func:`harness.report.text.printable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.report.failures import Group, checks_failed, group_violations
from harness.report.failures import worst_ratio as _worst
from harness.report.text import one_line, printable

if TYPE_CHECKING:
    from harness.run.result import CaseResult

TAGS = {"passed": "PASS", "failed": "FAIL", "crashed": "CRASH", "skipped": "SKIP"}
FAILING = ("failed", "crashed")
LABEL_WIDTH = 6  # "state "


STAT_FIELDS = ("quantity", "pair", "step", "tolerance", "checked", "n", "over", "nan", "inf")


def _row(result: CaseResult | dict) -> dict:
    """The parts of a results.jsonl row that the console reads.

    Built directly from a CaseResult: ``to_dict`` copies every stat's cells
    and head ratios, which costs a noticeable fraction of a second per call
    on a long case.
    """
    if isinstance(result, dict):
        return result
    case = result.case
    return {
        "id": case.id,
        "line": case.line,
        "steps": case.steps,
        "status": result.status,
        "reason": result.reason,
        "duration_s": result.duration_s,
        "violations": [vars(v) for v in result.violations],
        "stats": [_stat(s) for s in result.stats],
        "rerun": result.rerun_command(),
    }


def _stat(s) -> dict:
    d = {k: getattr(s, k) for k in STAT_FIELDS}
    d.update(ok=s.ok, worst_ratio=s.worst_ratio, worst_value=s.worst_value)
    d["worst_at"] = None if s.worst_at is None else str(s.worst_at)
    return d


def _outcome(row: dict) -> str:
    """What a headline says after the time: the reason, the failed checks, or the margin."""
    status = row.get("status")
    if status == "skipped":
        return str(row.get("reason", ""))
    if status in FAILING:
        checks = checks_failed(row)
        reason = str(row.get("reason", "")).split("\n", 1)[0]
        if status == "crashed" and reason:
            return f"{checks}: {reason}" if checks else reason
        return checks
    return f"worst {_worst(row):.2g}x bound"


def console_line(result: CaseResult | dict) -> str:
    """``FAIL  file.yaml::case  (0.08s; values 9.7e+04x bound, drift)``."""
    row = _row(result)
    tag = TAGS.get(str(row.get("status")), str(row.get("status")).upper())
    sep = "," if row.get("status") in ("passed", "skipped") else ";"
    duration = float(row.get("duration_s", 0.0))
    return one_line(f"{tag:5} {row['id']}  ({duration:.2f}s{sep} {_outcome(row)})")


def _fact_lines(group: Group, multi: bool) -> list[str]:
    lines = []
    for fact in group.facts:
        label = f"{fact.label:{LABEL_WIDTH}} " if fact.label else ""
        lines.append(f"    {label}{fact.when(multi)}{fact.text}")
        indent = " " * (4 + (len(label) if label else 2))  # under the text, or hanging
        lines += [f"{indent}{more}" for more in fact.more]
    if group.hidden:
        lines.append(f"    ... and {group.hidden} more distinct messages (results.jsonl)")
    return lines


def failure_details(row: dict) -> list[str]:
    """The grouped violations of a failing row, indented, one fact per line."""
    multi = int(row.get("steps", 1) or 1) > 1
    lines = []
    for group in group_violations(row):
        lines.append(f"  {group.title}")
        lines += _fact_lines(group, multi)
    return [line for text in lines for line in printable(text).split("\n")]


def console_failure(result: CaseResult | dict) -> str:
    """A failing case on one screen: headline, grouped violations, rerun command."""
    row = _row(result)
    status = str(row.get("status", "")).upper()
    head = f"--- {status} {row['id']} (line {row.get('line')}; {_outcome(row)})"
    lines = [one_line(head), *failure_details(row)]
    lines.append(f"  rerun: {one_line(row.get('rerun', ''))}")
    return "\n".join(lines)


def failure_list(results: Iterable[CaseResult | dict]) -> str:
    """The end-of-run list of failed and crashed ids with their checks ("" if none)."""
    rows = [r for r in map(_row, results) if r.get("status") in FAILING]
    if not rows:
        return ""
    lines = [f"{len(rows)} failing case{'s' if len(rows) > 1 else ''}:"]
    for r in rows:
        tag = "FAILED" if r["status"] == "failed" else "CRASHED"
        lines.append(one_line(f"  {tag:7} {r['id']}  ({_outcome(r)})"))
    return "\n".join(lines)
