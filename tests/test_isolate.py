"""Crash isolation: a dying or hanging implementation costs one case, not the run."""

import json
import subprocess
import sys
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
from harness.isolate import IsolatedRunner
from harness.spec import CaseSpec

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
