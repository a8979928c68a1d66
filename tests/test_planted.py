"""The case library against planted bugs (tests/planted/bugs.py).

Every planted bug must make ``gdn-harness run --tier cpu`` fail, and the
report must name the check that exists to catch it; the bug-free fixture and
the oracle must pass the whole cpu tier. Beyond that, each bug must be caught
(by its check) by a cpu case tagged with the bug class it models, so that
the tags in the case files stay truthful.

The planted bugs are pure torch (no Triton), so each run takes seconds; one
test per bug, so pytest-xdist spreads them over its workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from harness.core.spec import CaseSpec
from harness.impls.registry import Implementation
from harness.run.runner import run_case

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.planted` is imported from the repository root
    sys.path.append(str(ROOT))

from tests.planted import bugs, tagged_cases  # noqa: E402


def harness_run(impl: str, report_dir: Path, *extra: str) -> tuple[int, list[dict], str]:
    """Run the cpu tier of cases/ under ``impl`` with no baseline; (exit code, results, output)."""
    cmd = [
        sys.executable, "-m", "harness", "run", "cases", "--tier", "cpu",
        "--impl", impl, "--baseline", "none",
        "--report-dir", str(report_dir), "--run-name", "run", *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    results = report_dir / "run" / "results.jsonl"
    lines = results.read_text().splitlines() if results.exists() else []
    rows = [json.loads(line) for line in lines]
    return proc.returncode, rows, proc.stdout + proc.stderr


@pytest.mark.parametrize("impl", ["tests.planted.bugs:correct", "oracle"])
def test_correct_implementations_pass_the_cpu_tier(impl, tmp_path):
    rc, rows, output = harness_run(impl, tmp_path)
    assert rc == 0, output[-6000:]
    assert rows and all(r["status"] in ("passed", "skipped") for r in rows)
    assert any(r["status"] == "passed" for r in rows)


@pytest.mark.parametrize("name", bugs.PLANTED)
def test_planted_bug_fails_the_cpu_tier_with_its_check(name, tmp_path):
    rc, rows, output = harness_run(f"tests.planted.bugs:{name}", tmp_path, "-x")
    assert rc == 1, f"exit {rc}, expected 1 (violations)\n{output[-4000:]}"
    failed = [r for r in rows if r["status"] in ("failed", "crashed")]
    assert len(failed) == 1, output[-4000:]  # -x stops at the first failing case
    checks = {v["check"] for v in failed[0]["violations"]}
    expected = bugs.BUGS[name].check
    assert expected in checks, (
        f"{name} failed {failed[0]['id']} with checks {sorted(checks)}, expected '{expected}'"
        f"\n{output[-4000:]}"
    )
    assert f"[{expected}] tests.planted.bugs:{name}" in output  # the console report too
    assert "crash" not in checks, output[-4000:]


# --- each bug is caught by a case tagged with its class --------------------------------


@cache
def _cpu_cases() -> list[tuple[CaseSpec, frozenset[str]]]:
    return [
        (spec, frozenset(tags or ()))
        for spec, tags in tagged_cases(ROOT / "cases")
        if spec.tier == "cpu" and spec.expect is None
    ]


@pytest.mark.parametrize("name", bugs.PLANTED)
def test_planted_bug_caught_by_a_case_of_its_class(name):
    bug = bugs.BUGS[name]
    impl = Implementation(f"tests.planted.bugs:{name}", getattr(bugs, name), builtin=False)
    specs = [spec for spec, tags in _cpu_cases() if bug.bug_class in tags]
    assert specs, f"no cpu case is tagged '# catches: {bug.bug_class}'"
    seen = []
    for spec in specs:
        result = run_case(spec, impl, None, "cpu")
        checks = {v.check for v in result.violations}
        if bug.check in checks:
            return
        seen.append(f"{spec.id}: {sorted(checks) or 'passed'}")
    pytest.fail(
        f"{name} ({bug.bug_class}) was not caught by check '{bug.check}' in any case tagged "
        "with its class:\n" + "\n".join(seen)
    )
