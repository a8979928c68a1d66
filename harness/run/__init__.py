"""Stage 5: running cases. Every implementation on its own copy of the
inputs, every check; in a worker process that may die (the default), in
this process, or under memcheck.

``run_cases`` is what a face calls; ``run_case`` runs one case here. The
names that need torch (``run_case``, ``default_device``) load it on first
use, so that importing this package stays light.
"""

from typing import Any

from harness.run.isolate import IsolatedRunner, death_reason, default_timeout, run_isolated
from harness.run.memcheck import run_sanitized
from harness.run.result import (
    CRASHED,
    FAILED,
    PASSED,
    SKIPPED,
    CaseFailed,
    CaseResult,
    Violation,
)
from harness.run.session import RunMode, run_cases, worker_devices

__all__ = [
    "CRASHED",
    "FAILED",
    "PASSED",
    "SKIPPED",
    "CaseFailed",
    "CaseResult",
    "IsolatedRunner",
    "RunMode",
    "Violation",
    "death_reason",
    "default_device",
    "default_timeout",
    "run_case",
    "run_cases",
    "run_isolated",
    "run_sanitized",
    "worker_devices",
]

_WITH_TORCH = {"run_case", "default_device"}


def __getattr__(name: str) -> Any:
    if name in _WITH_TORCH:
        from harness.run import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'harness.run' has no attribute {name!r}")
