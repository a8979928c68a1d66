"""``gdn-harness report RUN_DIR``: write a run's reports again from its results.jsonl.

A run killed hard (SIGKILL, out of memory, a lost machine) leaves
results.jsonl, with every case it finished, and the INCOMPLETE marker, but no
summaries. This rebuilds summary.json, junit.xml, summary.md, errors.md and
report.html from it, marked partial when the run never finished, tolerating
a last line cut short by the kill. Exit codes as for ``run``: 0 no case
failed, 1 a case failed or crashed, 2 no results to report on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.core.exitcodes import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from harness.report.console import failure_list
from harness.report.log import RESULTS, ResultsError, incomplete, load_results
from harness.report.summary import write_summaries
from harness.report.text import one_line

FACTS = ("impl", "baseline", "device")


def run_facts(rows: list[dict]) -> dict:
    """The run's implementation, baseline and device, where every row agrees on one."""
    facts = {}
    for key in FACTS:
        values = {r.get(key) for r in rows}
        if len(values) == 1:
            facts[key] = values.pop()
    return facts


def rebuild(run_dir: str | Path, partial: bool | None = None) -> dict:
    """Rewrite the reports of ``run_dir``; ``partial`` None: partial when the run never
    finished (its INCOMPLETE marker is still there)."""
    loaded = load_results(run_dir)
    if partial is None:
        partial = incomplete(run_dir)
    return write_summaries(run_dir, run_facts(loaded.rows), partial=partial)


def cmd_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / RESULTS).is_file():
        print(f"error: {run_dir} holds no {RESULTS}: not a run folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        loaded = load_results(run_dir)
        summary = rebuild(run_dir, True if args.partial else None)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if loaded.torn is not None:
        print(
            f"note: skipped the last line of {RESULTS}, cut short ({len(loaded.torn)} characters)",
            file=sys.stderr,
        )
    listed = failure_list(loaded.rows)
    if listed:
        print(listed)
    c = summary["counts"]
    state = "partial run" if summary["partial"] else "complete run"
    print(
        f"{c['passed']} passed, {c['failed'] + c['crashed']} failed, {c['skipped']} skipped "
        f"({state}; reports rewritten in {one_line(run_dir)})"
    )
    return EXIT_FAIL if c["failed"] + c["crashed"] else EXIT_OK


def register(subparsers) -> None:
    """Add the ``report`` subcommand to the ``gdn-harness`` parser."""
    p = subparsers.add_parser(
        "report",
        help="write a run's summaries, JUnit and HTML again from its results.jsonl",
        description=(
            "Rebuild summary.json, junit.xml, summary.md, errors.md and report.html of a run "
            f"folder from its {RESULTS}, for a run that was killed before it wrote them. "
            "The reports are marked partial when the run never finished. Exit 0 when no "
            "case failed, 1 when one failed or crashed, 2 when the folder holds no results."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run's folder, e.g. reports/run-x")
    p.add_argument(
        "--partial",
        action="store_true",
        help="mark the reports partial (default: when the run never finished)",
    )
    p.set_defaults(func=cmd_report)
