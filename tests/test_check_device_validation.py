"""The GPU validation script (tests/gpu/check_device_validation.py) runs clean
on the CPU with NumPy standing in for CuPy, and bows out without a GPU.

GPU time is scarce: the script must work the first time it meets an H200, so
every part of it runs here first, at small sizes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "gpu" / "check_device_validation.py"


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRITON_INTERPRET": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_part_passes_with_the_standin(tmp_path):
    out = tmp_path / "records.json"
    proc = _run("--stand-in", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "-> PASS" in proc.stdout and "[ERROR]" not in proc.stdout
    records = json.loads(out.read_text())
    assert set(records) == {"oracle", "verdicts", "runner", "cells", "timing"}
    assert len(records["cells"]) >= 40 and all(not r.get("fails") for r in records["cells"])
    assert len(records["oracle"]) == 9 and all(not r.get("fails") for r in records["oracle"])
    assert any("systematic" in r["name"] for r in records["verdicts"])
    assert "step" in proc.stdout and "speedup" in proc.stdout  # the timing table


def test_a_failure_is_reported_and_sets_the_exit_status(tmp_path):
    """A device that disagrees with the host: the script says so and exits 1."""
    shim = tmp_path / "shim.py"
    shim.write_text(
        "import runpy, sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests' / 'gpu')!r}]\n"
        "import standin\n"
        "real = standin.DeviceArray.__iadd__\n"
        "def off(self, other):\n"
        "    out = real(self, other)\n"
        "    self._a.reshape(-1)[:1] *= 1.5  # every in-place add is off at one element\n"
        "    return out\n"
        "standin.DeviceArray.__iadd__ = off\n"
        f"sys.argv = [{str(SCRIPT)!r}, '--stand-in', '--quick', '--parts', 'oracle']\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(shim)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[FAIL ]" in proc.stdout and "-> FAIL" in proc.stdout


def test_without_cupy_it_says_why_and_exits_0():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    proc = _run("--parts", "oracle", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("SKIP: no GPU check possible here: CuPy cannot be imported")


def test_unknown_parts_are_a_usage_error():
    proc = _run("--parts", "oracle,speed", timeout=120)
    assert proc.returncode == 2 and "unknown parts ['speed']" in proc.stderr
