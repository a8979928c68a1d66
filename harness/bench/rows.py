"""What a bench run measures, as typed rows, and how they are written to bench.json.

A row's field that is None was not measured (an untimed row has no
``time_us``) and is left out of the JSON, except the fields marked ``NULL``,
which are written as ``null``. Plain Python without torch: the reports
(``output.py``, ``plot.py``) read these rows too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from harness.bench.config import Shape
from harness.bench.floor import StepBytes

SCHEMA = "gdn-harness-bench/2"  # 2: harness_cost.checks per check device
NULL = {"null": True}  # field metadata: None is written as null, not left out


@dataclass(frozen=True)
class TargetResult:
    """One target's verdict for one row, with the measured value in ``detail``."""

    name: str
    ok: bool
    detail: str
    value: float | None = None  # the measured ratio, where the target is one (peer targets)


@dataclass(kw_only=True)
class CaseRow:
    """The case a row measures: a shape, a state layout and a batch size."""

    shape: str  # Shape.label
    H: int
    HV: int
    K: int
    V: int
    layout: str
    B: int

    @staticmethod
    def case(shape: Shape, layout: str, B: int) -> dict[str, Any]:
        """The case fields of a row, as keyword arguments."""
        dims = {"H": shape.H, "HV": shape.HV, "K": shape.K, "V": shape.V}
        return {"shape": shape.label, **dims, "layout": layout, "B": B}


@dataclass(kw_only=True)
class MainRow(CaseRow):
    """One implementation on one case of the main table: its check, then its time."""

    act_dtype: str
    state_dtype: str
    input_sets: int
    rotated_bytes: int
    floor_bytes: int
    floor_breakdown: StepBytes
    impl: str
    conventions: str | None = None  # Conventions.describe(), where not the default
    status: str = "ok"  # ok, skipped, check-failed, error
    check: str = "skipped"  # PASS, FAIL, skipped, "-"
    detail: str = ""
    time_us: float | None = None  # median per call
    time_us_min: float | None = None
    replays: int | None = None
    calls_per_replay: int | None = None
    timing: str | None = None  # Timing.method
    GBps: float | None = None  # floor bytes / time
    speedup: float | None = None  # baseline time / this time
    floor_us: float | None = None
    pct_floor: float | None = None
    targets: list[TargetResult] = field(default_factory=list)
    copy_us: float | None = None  # a copy of as many bytes
    pct_copy: float | None = None


@dataclass(frozen=True)
class Agreement:
    """FLA vs baseline_recurrent on set 0: max |difference| / max |value|."""

    out_max_rel: float
    state_max_rel: float


@dataclass(kw_only=True)
class RecurrentRow(CaseRow):
    """baseline_recurrent vs FLA's recurrent kernel on one case."""

    input_sets: int
    fla_vs_baseline: Agreement | None = None
    agree: bool | None = None
    fla_error: str | None = None
    baseline_us: float | None = None
    baseline_error: str | None = None
    fla_us: float | None = None
    ratio: float | None = None  # baseline_us / fla_us
    target: TargetResult | None = field(default=None, metadata=NULL)


@dataclass
class RecurrentSection:
    """The recurrent comparison: which FLA, how the two kernels see the state, the rows."""

    fla: str  # "fla-core <version>", or why FLA is not there
    note: str
    rows: list[RecurrentRow] = field(default_factory=list)
    fla_has_state_indices: bool | None = None


@dataclass
class CopyBandwidth:
    """Device-to-device copy bandwidth (bytes read + bytes written per second)."""

    bytes_copied: int
    bytes_moved: int
    reps: int
    median_ms: float
    GBps: float
    method: str
    start_GBps: float | None = None  # of the run's two measurements (best_copy)
    end_GBps: float | None = None


@dataclass(kw_only=True)
class CheckCost:
    """The per-element check of one step on the largest nightly shape, on one check device."""

    check_device: str  # "cpu", "cuda" or "cuda:N"
    shape: dict[str, int]
    rows_timed: int
    seconds: float  # the timed call (GPU: the median of the calls after the first)
    seconds_full_batch: float  # scaled to every row of the shape
    ns_per_state_element: float
    extrapolated: bool  # rows_timed < B: seconds_full_batch is scaled linearly
    workers: int | None = None  # CPU: processes the check ran over
    reps: int = 1  # calls timed
    first_call_seconds: float | None = None  # GPU: the first call, compiling CuPy's kernels


@dataclass
class RunnerCost:
    """``run_case`` on a small case: wall time, the kernels inside it, the rest."""

    case: dict[str, int]
    status: str
    wall_ms: float
    kernel_ms: float
    overhead_ms: float
    reps: int


@dataclass
class HarnessCost:
    """The harness's own cost, each part or why it could not be measured."""

    runner: RunnerCost | None = None
    runner_error: str | None = None
    check_what: str = ""  # what the timed check does
    checks: list[CheckCost] = field(default_factory=list)  # one per check device measured
    check_notes: dict[str, str] = field(default_factory=dict)  # device: why it has no time


@dataclass
class PeerVerdict:
    """Packed against one outside kernel over the whole grid a peer target is stated for."""

    peer: str
    claim: str
    met: bool | None  # None: the run did not cover the grid (and nothing it covered missed)
    compared: int  # grid cases with a verdict in this run
    grid: int  # cases of the grid
    missed: list[str]  # a line per case that missed, with its ratio or why
    not_run: list[str]  # grid cases this run did not have
    worst_ratio: float | None = None  # the largest packed / peer time
    worst_case: str | None = None


@dataclass
class TargetTally:
    """How many targets were evaluated, how many passed, and a line per miss."""

    evaluated: int
    passed: int
    missed: list[str]


@dataclass(kw_only=True)
class Report:
    """Everything one run wrote: bench.json, and what bench.md and bench.svg show."""

    schema: str = SCHEMA
    created: str
    dry: bool
    device: dict[str, Any]
    config: dict[str, Any]
    method: dict[str, str]
    failed_checks: int = 0
    partial: bool | None = True  # until the run ends: bench.json is rewritten as it goes
    copy_bandwidth: CopyBandwidth | None = None
    rows: list[MainRow] | None = None
    recurrent: RecurrentSection | None = None
    harness_cost: HarnessCost | None = None
    versions: dict[str, Any] | None = None
    targets: TargetTally | None = None
    peer_targets: list[PeerVerdict] | None = None  # where a run has a peer of PEER_TARGETS


def strict_json(x: Any) -> Any:
    """``x`` as JSON values: a row as an object of its fields (unmeasured ones left
    out), NaN and infinities as strings, so bench.json is strict JSON."""
    if is_dataclass(x) and not isinstance(x, type):
        return {
            f.name: strict_json(getattr(x, f.name))
            for f in fields(x)
            if getattr(x, f.name) is not None or f.metadata.get("null")
        }
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return x
