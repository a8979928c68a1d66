"""Progress of a run: n/N, elapsed and time left on a terminal, a plain line
now and then in a CI log (harness/report/progress.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.report.progress import Progress, clock_text

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(total: int, tty: bool, **kw) -> tuple[Progress, io.StringIO, io.StringIO, Clock]:
    err, out, clock = io.StringIO(), io.StringIO(), Clock()
    progress = Progress(total, stream=err, out=out, clock=clock, tty=tty, **kw)
    progress.tick()
    assert err.getvalue() == ""  # nothing is shown at the start
    return progress, err, out, clock


def one_case_later(progress: Progress, clock: Clock, seconds: float, label: str) -> None:
    clock.now += seconds
    progress.advance(label)
    progress.tick()


def test_clock_text():
    assert [clock_text(s) for s in (0, 42.9, 725, 3729)] == ["0:00", "0:42", "12:05", "1:02:09"]


def test_status_says_done_of_all_elapsed_and_time_left():
    progress, _, _, clock = make(40, tty=False, interval_s=60)
    assert progress.status() == "0/40 cases, 0:00 elapsed"
    clock.now += 30
    for _ in range(10):
        progress.advance("x")
    assert progress.status() == "10/40 cases, 0:30 elapsed, about 1:30 left"


def test_a_ci_log_gets_a_plain_line_every_interval():
    progress, err, out, clock = make(4, tty=False, interval_s=60)
    one_case_later(progress, clock, 61, "a.yaml::one")
    progress.tick()  # not due again yet
    assert err.getvalue() == "progress: 1/4 cases, 1:01 elapsed, about 3:03 left\n"
    clock.now += 60
    progress.tick()
    assert err.getvalue().count("progress: ") == 2
    progress.write("PASS  a.yaml::one")
    assert out.getvalue() == "PASS  a.yaml::one\n" and "\r" not in err.getvalue()


def test_a_ci_log_line_can_be_turned_off():
    progress, err, _, clock = make(4, tty=False, interval_s=0)
    clock.now += 1000
    progress.tick()
    assert err.getvalue() == ""


def test_a_terminal_line_is_redrawn_in_place_and_cleared_for_output():
    progress, err, out, clock = make(3, tty=True, delay_s=2.0)
    clock.now += 1.5
    progress.tick()
    assert err.getvalue() == ""  # short runs show no bar
    one_case_later(progress, clock, 5, "a.yaml::one")
    drawn = err.getvalue()
    assert drawn.startswith("\r[========") and "1/3 cases, 0:06 elapsed, about 0:13 left" in drawn
    assert "a.yaml::one" in drawn and "\n" not in drawn
    progress.write("PASS  a.yaml::one")
    assert out.getvalue() == "PASS  a.yaml::one\n"
    assert err.getvalue().count("\r[") == 2  # cleared, printed, drawn again


def test_the_ticker_thread_writes_while_a_case_runs():
    err = io.StringIO()
    with Progress(2, stream=err, out=io.StringIO(), tty=False, interval_s=0.02):
        import time

        time.sleep(0.3)  # one slow case
    assert err.getvalue().startswith("progress: 0/2 cases")


SLOW_IMPL = """
import time

from harness.impls.oracle import oracle_decode


def decode(*args, **kwargs):
    time.sleep(0.2)
    oracle_decode(*args, **kwargs)
"""
CASES = """
cases:
  - name: slow
    B: 2
    H: 1
    HV: 2
    K: 4
    V: 4
    matrix: {seed: [1, 2, 3]}
"""


def test_a_run_outside_a_terminal_prints_progress_lines(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_IMPL)
    (tmp_path / "cases.yaml").write_text(textwrap.dedent(CASES).lstrip())
    cmd = [sys.executable, "-m", "harness", "run", "cases.yaml", "--impl", "slow.py:decode"]
    cmd += ["--baseline", "none", "--report-dir", "reports"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GDN_PROGRESS_INTERVAL": "0.1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("progress: ")]
    assert lines and all(" cases, " in line and " elapsed" in line for line in lines)
    assert "\r" not in proc.stderr
