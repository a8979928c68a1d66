"""Run cases under compute-sanitizer memcheck.

Each case runs in its own ``compute-sanitizer --tool memcheck`` process with
PyTorch's caching allocator off (``PYTORCH_NO_CUDA_MEMORY_CACHING=1``), so
every tensor is its own allocation and an access past a tensor's end is an
access past an allocation, which memcheck reports. Any finding becomes a
``sanitizer`` violation of that case; the case's own checks still apply.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.core.spec import CaseSpec
from harness.run.result import CRASHED, FAILED, CaseResult, Violation

SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) error")


def sanitizer_path() -> str | None:
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for root in ("/usr/local/cuda/bin", "/opt/cuda/bin"):
        path = Path(root) / "compute-sanitizer"
        if path.exists():
            return str(path)
    return None


def _command(tool: str, spec: CaseSpec, impl: str, report: Path) -> list[str]:
    return [
        tool,
        "--tool",
        "memcheck",
        "--leak-check",
        "no",
        "--print-limit",
        "20",
        sys.executable,
        "-m",
        "harness",
        "run",
        spec.id,
        "--impl",
        impl,
        "--baseline",
        "none",
        "--no-isolate",
        "--report-dir",
        str(report),
        "--run-name",
        "case",
        "--tier",
        spec.tier,
    ]


def run_sanitized(spec: CaseSpec, impl: str, timeout_s: float) -> CaseResult:
    """One case under memcheck; the child's own result plus any memcheck findings."""
    tool = sanitizer_path()
    if tool is None:  # a memcheck run that cannot run must not pass
        return _crashed(spec, impl, "compute-sanitizer not found on PATH or in /usr/local/cuda")
    env = {**os.environ, "PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp)
        try:
            proc = subprocess.run(
                _command(tool, spec, impl, report),
                env=env,
                text=True,
                capture_output=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return _crashed(spec, impl, f"timed out after {timeout_s:g} s under memcheck")
        result = _child_result(spec, impl, report / "case" / "results.jsonl")
    output = proc.stdout + proc.stderr
    found = SUMMARY.search(output)
    errors = int(found.group(1)) if found else None
    if errors is None:
        result.violations.append(
            Violation(
                "sanitizer",
                impl,
                None,
                f"no memcheck summary; exit code {proc.returncode}: {output[-800:]}",
            )
        )
    elif errors:
        lines = [ln for ln in output.splitlines() if ln.startswith("=========")][:24]
        msg = f"memcheck found {errors} errors:\n" + "\n".join(lines)
        result.violations.append(Violation("sanitizer", impl, None, msg))
    if result.violations and result.status not in (CRASHED,):
        result.status = FAILED
    return result


def _child_result(spec: CaseSpec, impl: str, path: Path) -> CaseResult:
    result = CaseResult(spec, impl, None, device="cuda")
    if not path.exists():
        result.status = CRASHED
        result.reason = "the sanitized run wrote no result"
        return result
    row = json.loads(path.read_text().splitlines()[-1])
    result.status, result.reason = row["status"], row["reason"]
    result.duration_s = row["duration_s"]
    result.violations = [Violation(**v) for v in row["violations"]]
    return result


def _crashed(spec: CaseSpec, impl: str, why: str) -> CaseResult:
    result = CaseResult(spec, impl, None, status=CRASHED, reason=why, device="cuda")
    result.violations.append(Violation("sanitizer", impl, None, why))
    return result
