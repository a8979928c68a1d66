"""``results.jsonl``: the one file a run writes as it goes.

It is appended and flushed case by case, so a crash keeps everything already
measured, and parallel workers (pytest-xdist, isolated runners) can share it.
Every other report is derived from it at the end.

A run folder is ``<report-dir>/<run-name>``; the run name is a name, never a
path (:func:`check_run_name`). A run starts by removing the previous run's
derived reports and leaving an :data:`INCOMPLETE` marker, which only the
final, complete :func:`harness.report.write_summaries` removes: a run that
died leaves results.jsonl and the marker, never a summary that looks current.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.run.result import CaseResult

RESULTS = "results.jsonl"
INCOMPLETE = "INCOMPLETE"  # present while a run's final reports are not written
DERIVED = ("summary.json", "junit.xml", "summary.md", "errors.md", "report.html")
_SEPARATORS = re.compile(r"[/\\\x00-\x1f\x7f]")


class RunNameError(ValueError):
    """A run name that is not a plain folder name (bad usage)."""


class ResultsError(ValueError):
    """A results.jsonl line that cannot be read, other than a torn last line."""


def default_run_name() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S")


def check_run_name(name: str) -> str:
    """``name`` when it names one folder inside the report folder, else RunNameError.

    ``..``, ``../x``, ``/tmp/x`` or ``a/b`` would put the reports elsewhere and
    overwrite whatever is there.
    """
    problem = None
    if not name or not name.strip():
        problem = "it is empty"
    elif name in (".", ".."):
        problem = "it names the report folder or its parent"
    elif _SEPARATORS.search(name):
        problem = "it holds a path separator or a control character"
    elif os.path.isabs(name) or PureWindowsPath(name).drive:
        problem = "it is an absolute path"
    if problem:
        raise RunNameError(
            f"run name {name!r} is not a name: {problem}. A run name is one folder name "
            "under the report folder (for example 'nightly-2024-05-01'); choose the parent "
            "folder with --report-dir"
        )
    return name


def run_dir(report_dir: str | Path, run_name: str | None = None) -> Path:
    """``report_dir/run_name`` (default: ``run-<timestamp>``), the name checked."""
    return Path(report_dir) / check_run_name(run_name or default_run_name())


def start_run(run_folder: str | Path) -> None:
    """Make ``run_folder`` ready for a new run: no results, no derived reports of an
    earlier run under the same name, and the INCOMPLETE marker until the end."""
    folder = Path(run_folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in DERIVED:
        (folder / name).unlink(missing_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    (folder / INCOMPLETE).write_text(
        f"A gdn-harness run started here at {stamp} and has not written its final reports.\n"
        "If it was killed, `gdn-harness report <this folder>` writes them (marked partial) "
        f"from {RESULTS}.\n",
        encoding="utf-8",
    )
    (folder / RESULTS).write_text("")


def incomplete(run_folder: str | Path) -> bool:
    """Whether the run in ``run_folder`` started and never wrote complete reports."""
    return (Path(run_folder) / INCOMPLETE).exists()


class ResultLog:
    """Appends one JSON line per case; safe to share between processes.

    ``fresh`` starts a new run in the folder (:func:`start_run`): a reused run
    name starts over instead of mixing two runs.
    """

    def __init__(self, report_dir: str | Path, fresh: bool = False):
        self.dir = Path(report_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / RESULTS
        if fresh:
            start_run(self.dir)

    def append(self, result: CaseResult) -> None:
        line = json.dumps(result.to_dict(), default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@dataclass
class LoadedResults:
    """The rows of a results.jsonl, sorted by case id, and a torn last line if any."""

    rows: list[dict]
    torn: str | None = None  # the unreadable last line a hard kill can leave


def load_results(report_dir: str | Path) -> LoadedResults:
    """Read ``report_dir/results.jsonl``, tolerating a torn last line.

    A process killed while appending can leave its last line cut short; every
    line before it was written whole. Any other unreadable line raises
    ResultsError naming it.
    """
    path = Path(report_dir) / RESULTS
    if not path.exists():
        return LoadedResults([])
    lines = [(i, ln) for i, ln in enumerate(path.read_text(encoding="utf-8").split("\n"), 1)]
    lines = [(i, ln) for i, ln in lines if ln.strip()]
    rows, torn = [], None
    for k, (number, line) in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            if k < len(lines) - 1:
                raise ResultsError(f"{path}:{number}: not a JSON result line ({exc})") from None
            torn = line
    return LoadedResults(sorted(rows, key=lambda r: r["id"]), torn)


def read_results(report_dir: str | Path) -> list[dict]:
    """The rows of ``report_dir/results.jsonl``, sorted by case id."""
    return load_results(report_dir).rows
