"""What one case run produced: its violations, error statistics and drift."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from harness.check.compare import DriftStats, ErrorStats
from harness.core.conventions import Conventions
from harness.core.spec import CaseSpec

PASSED, FAILED, SKIPPED, CRASHED = "passed", "failed", "skipped", "crashed"


class CaseFailed(AssertionError):
    """A case's run found violations: a pytest item fails with it, and the
    fuzzer shrinks on it. The message is the case's console report."""


@dataclass
class Violation:
    """One thing that is wrong, in one sentence a kernel author can act on."""

    check: str  # values, written, padding, untouched-slots, guards, inputs, determinism, ...
    who: str  # the implementation (or pair) at fault
    step: int | None
    message: str

    def __str__(self) -> str:
        step = f" step {self.step}" if self.step is not None else ""
        return f"[{self.check}] {self.who}{step}: {self.message}"


@dataclass
class CaseResult:
    """Everything measured for one case; serialisable line by line."""

    case: CaseSpec
    impl: str
    baseline: str | None
    status: str = PASSED
    reason: str = ""  # skip reason or crash summary
    duration_s: float = 0.0
    device: str = "cpu"
    violations: list[Violation] = field(default_factory=list)
    stats: list[ErrorStats] = field(default_factory=list)
    drift: list[DriftStats] = field(default_factory=list)
    # how the run ran the case, as command-line flags its rerun must repeat
    # (``--isolate --timeout 60``, ``--cuda-graph``); set by ``run_cases``
    rerun_flags: tuple[str, ...] = ()
    # the implementation's padding conventions, when not the default ones
    # (docs/design.md section 3): {"pad": ..., "pad_output": ...}
    conventions: dict[str, str] | None = None

    @property
    def failed(self) -> bool:
        return self.status in (FAILED, CRASHED)

    def rerun_command(self) -> str:
        """A one-line command that reruns exactly this case."""
        cmd = ["gdn-harness", "run", self.case.id, "--impl", self.impl]
        cmd += ["--baseline", self.baseline or "none", *self.rerun_flags]
        if self.conventions:
            cmd += Conventions(**self.conventions).as_options()
        return " ".join(shlex.quote(c) for c in cmd)

    def to_dict(self) -> dict:
        c = self.case
        return {
            "id": c.id,
            "file": c.file,
            "line": c.line,
            "name": c.name,
            "tier": c.tier,
            "impl": self.impl,
            "baseline": self.baseline,
            "status": self.status,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 4),
            "device": self.device,
            "shape": {"B": c.B, "H": c.H, "HV": c.HV, "K": c.K, "V": c.V, "pool": c.pool},
            "dtypes": {
                "act": c.act_dtype,
                "state": c.state_dtype,
                "param": c.param_dtype,
                "index": c.index_dtype,
            },
            "layout": c.layout.state_layout,
            "steps": c.steps,
            "violations": [vars(v) for v in self.violations],
            "stats": [s.to_dict() for s in self.stats],
            "drift": [d.to_dict() for d in self.drift],
            "rerun": self.rerun_command(),
            **({"conventions": self.conventions} if self.conventions else {}),
        }
