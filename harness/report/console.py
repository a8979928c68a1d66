"""What a run prints per case: a status line, and the details of a failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report.text import one_line, printable

if TYPE_CHECKING:
    from harness.run.result import CaseResult


def console_line(result: CaseResult) -> str:
    worst = max((s.worst_ratio for s in result.stats if s.checked), default=0.0)
    tag = {"passed": "PASS", "failed": "FAIL", "crashed": "CRASH", "skipped": "SKIP"}
    extra = result.reason if result.status == "skipped" else f"worst {worst:.2g}x tol"
    line = f"{tag[result.status]:5} {result.case.id}  ({result.duration_s:.2f}s, {extra})"
    return one_line(line)


def console_failure(result: CaseResult) -> str:
    case = result.case
    lines = [one_line(f"--- {result.status.upper()}: {case.id} ({case.file}:{case.line})")]
    lines += [f"  {line}" for v in result.violations for line in printable(v).split("\n")]
    lines.append(f"  rerun: {one_line(result.rerun_command())}")
    return "\n".join(lines)
