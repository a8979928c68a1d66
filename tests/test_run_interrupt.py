"""Interrupting a run: SIGTERM or Ctrl-C during a hung case writes the reports
of what ran, marked partial, exits 143 / 130, and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = """
cases:
  - {name: first, B: 2, H: 1, HV: 2, K: 16, V: 16}
  - {name: hangs, B: 3, H: 1, HV: 2, K: 16, V: 16}
  - {name: never, B: 2, H: 1, HV: 2, K: 8, V: 8}
"""


def _children(pid: int) -> list[int]:
    """Every process whose parent chain leads to ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found += kids
        frontier += kids
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_run_writes_partial_reports_and_ends_its_workers(tmp_path, sig, code):
    (tmp_path / "c.yaml").write_text(CASES)
    folder = tmp_path / "r" / "x"
    cmd = [sys.executable, "-m", "harness", "run", str(tmp_path / "c.yaml")]
    cmd += ["--impl", "fixtures_crash:hang_at_b3", "--baseline", "none"]
    cmd += ["--report-dir", str(tmp_path / "r"), "--run-name", "x"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    results = folder / "results.jsonl"
    while time.monotonic() < deadline:  # the first case recorded: the second now hangs
        if results.exists() and results.read_text().strip():
            break
        time.sleep(0.2)
    time.sleep(1.0)
    workers = _children(proc.pid)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["partial"] is True and summary["counts"]["passed"] == 1
    assert (folder / "junit.xml").exists() and (folder / "report.html").exists()
    time.sleep(2.0)  # a worker sees its parent gone within a second
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    assert not alive, f"left running: {alive}"
