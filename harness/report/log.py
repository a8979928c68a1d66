"""``results.jsonl``: the one file a run writes as it goes.

It is appended and flushed case by case, so a crash keeps everything already
measured, and parallel workers (pytest-xdist, isolated runners) can share it.
Every other report is derived from it at the end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.run.result import CaseResult

RESULTS = "results.jsonl"


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
    """The rows of ``report_dir/results.jsonl``, sorted by case id."""
    path = Path(report_dir) / RESULTS
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["id"])
