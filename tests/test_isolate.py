"""Crash isolation: a dying or hanging implementation costs one case, not the run."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = """
cases:
  - {name: first, B: 2, H: 1, HV: 2, K: 16, V: 16}
  - {name: second, B: 2, H: 1, HV: 2, K: 16, V: 16, seed: 1}
"""


def run_cli(tmp_path: Path, impl: str, *extra: str) -> tuple[int, list[dict], str]:
    case_dir = tmp_path / "cases"
    case_dir.mkdir(exist_ok=True)
    (case_dir / "c.yaml").write_text(CASES)
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "run",
        str(case_dir),
        "--impl",
        impl,
        "--baseline",
        "none",
        "--report-dir",
        str(tmp_path / "r"),
        "--run-name",
        "x",
        "--isolate",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = (tmp_path / "r" / "x" / "results.jsonl").read_text().splitlines()
    return proc.returncode, [json.loads(line) for line in lines], proc.stdout


@pytest.mark.parametrize(
    ("impl", "extra", "reason"),
    [
        ("tests.fixtures_crash:die", (), "exit code 77"),
        ("tests.fixtures_crash:hang", ("--timeout", "5"), "timed out after 5 s"),
    ],
)
def test_crash_is_recorded_and_run_goes_on(tmp_path, impl, extra, reason):
    code, rows, out = run_cli(tmp_path, impl, *extra)
    assert code == 1
    assert [r["name"] for r in rows] == ["first", "second"]
    for r in rows:
        assert r["status"] == "crashed"
        assert reason in r["reason"]
        assert r["rerun"].startswith("gdn-harness run ")
    assert "CRASH" in out


def test_isolated_run_of_a_correct_impl_passes(tmp_path):
    code, rows, _ = run_cli(tmp_path, "oracle")
    assert code == 0
    assert [r["status"] for r in rows] == ["passed", "passed"]


def test_a_runner_never_closed_does_not_hold_up_the_exit():
    """An isolated worker waits for its next case; at exit it is killed, not joined."""
    script = """
from harness.run.isolate import IsolatedRunner
from harness.core.spec import CaseSpec

spec = CaseSpec(file="<t>", name="c", line=1, B=2, H=1, HV=2, K=16, V=16, pool=2)
runner = IsolatedRunner("oracle", None, "cpu", 120.0)
print(runner.run(spec).status, flush=True)
keep = runner  # never closed
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "passed"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_case_workers_start_with_one_blas_thread(monkeypatch):
    """Small steps are checked in the case worker, where BLAS threads only cost."""
    from harness.core.spec import CaseSpec
    from harness.run.isolate import IsolatedRunner

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    spec = CaseSpec(file="<t>", name="c", line=1, B=2, H=1, HV=2, K=16, V=16, pool=2)
    runner = IsolatedRunner("oracle", None, "cpu", 120.0)
    try:
        assert runner.run(spec).status == "passed"  # the worker is up: exec is behind it
        env = Path(f"/proc/{runner.proc.pid}/environ").read_bytes().split(b"\0")
    finally:
        runner.close()
    assert b"OPENBLAS_NUM_THREADS=1" in env
    assert "OPENBLAS_NUM_THREADS" not in os.environ  # the parent's own is left as it was


def test_a_blas_setting_of_the_user_is_kept(monkeypatch):
    from harness.check.pool import spawn_env

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with spawn_env({"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, keep_set=True):
        assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
        assert os.environ["MKL_NUM_THREADS"] == "1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3" and "MKL_NUM_THREADS" not in os.environ
    with spawn_env({"OPENBLAS_NUM_THREADS": "1"}):
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_worker_in_a_hung_case_ends_when_its_parent_is_killed():
    script = """
import threading
from harness.run.isolate import IsolatedRunner
from harness.core.spec import CaseSpec

spec = CaseSpec(file="<t>", name="c", line=1, B=2, H=1, HV=2, K=16, V=16, pool=2)
runner = IsolatedRunner("tests.fixtures_crash:hang", None, "cpu", 3600.0)
assert runner._ready() is None  # started, implementations loaded
threading.Thread(target=runner.run, args=(spec,), daemon=True).start()
print(runner.proc.pid, flush=True)
threading.Event().wait()
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        worker = int(parent.stdout.readline())
        time.sleep(3)  # the worker is in its hung case by now
        assert _running(worker)
    finally:
        parent.kill()
        parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(worker)


def test_a_worker_loads_an_implementation_as_the_parent_holds_it():
    """The spec travels, and so do conventions the command line gave it."""
    import dataclasses
    import pickle

    from harness.core.conventions import Conventions
    from harness.impls.registry import load_implementation
    from harness.run.isolate import load_portable, portable

    held = load_implementation("oracle")
    held = dataclasses.replace(held, conventions=Conventions(pad="nonpositive"))
    again = load_portable(pickle.loads(pickle.dumps(portable(held))))
    assert again.spec == "oracle" and again.conventions == held.conventions
    declared = load_implementation("oracle").conventions
    assert load_portable(portable("oracle")).conventions == declared
    assert portable(None) is None and load_portable(None) is None
