"""Tiers: which cases a machine can run.

``cpu`` cases are small enough for the Triton interpreter; ``gpu`` and
``nightly`` cases need CUDA. One rule, used by the command line, the pytest
plugin, the fuzzer and the runner.
"""

from __future__ import annotations

TIERS = ("cpu", "gpu", "nightly")


def on_cuda(device: str) -> bool:
    return device.startswith("cuda")


def runnable_tiers(device: str) -> set[str]:
    """The tiers ``device`` can run: all of them on CUDA, the cpu tier elsewhere."""
    return set(TIERS) if on_cuda(device) else {"cpu"}


def tier_unrunnable(tier: str, device: str) -> str | None:
    """Why ``tier`` cannot run on ``device``, or None when it can."""
    if tier not in runnable_tiers(device):
        return f"tier {tier} needs a CUDA device; running on {device}"
    return None
