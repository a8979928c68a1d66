"""``gdn-harness bench``: how fast the packed decode step is, measured honestly.

Why each part of the method is the way it is:

* **Correctness first.** A fast wrong kernel is worthless, so every
  implementation is checked against the float64 oracle on the very buffers
  that are then timed (a sample of rows, every output row checked for being
  written), and a case that fails is reported as FAIL and never timed.
* **CUDA-graph replay.** A decode step at small batch lasts a few
  microseconds, less than a Python launch; serving replays CUDA graphs, so the
  bench does too: one graph holds ``R`` calls, and the time per call is the
  median replay time divided by ``R``.
* **Rotating input sets.** Each of the ``R`` calls in the graph uses its own
  activations, output buffer and region of the state pool, and ``R`` is
  chosen so that the rotated working set is several times the L2 size; a
  replayed call therefore finds nothing of its own in L2, as in a model where
  the other layers run in between.
* **A scrubbed L2 before each timing.** Lines that an earlier implementation
  loaded with ``evict_last`` outlive any amount of normal traffic, and a
  later implementation that reads the same state finds them: 3.6% faster on
  an H100 at 16/32 B = 32. Each timing starts after ``harness/l2scrub.py``
  has displaced them.
* **The floor.** The step must at least read and write each live state once
  and read q, k, v, a, b (plus A_log, dt_bias and the slot indices) and
  write out; those bytes divided by the device-to-device copy bandwidth,
  measured on the same card in the same run, are the fastest the step could
  be. The copy is timed at the start and again at the end of the run (it
  moves by a few percent between runs on one card) and the floor takes the
  faster of the two, so a slow first measurement never flatters the
  kernels. "% of floor" is floor time / measured time. Numbers from different runs
  or cards are not comparable; the JSON records the card and versions.
* **A copy of the same size.** Next to each case that moves at least
  ``SAME_COPY_MIN_BYTES``, a device-to-device copy of half the step's bytes
  (so it moves as many), two buffer pairs in turn, timed like the 2 GiB
  copy: issued eagerly between CUDA events (captured in a graph, the same
  copies ran about a fifth slower on an H100, as if on the copy engines). "% of copy" says how close
  the step comes to memory traffic of its own size: short steps pay a
  ramp-up and a tail that the 2 GiB copy behind the floor does not. Smaller
  copies would time their launches, not the memory.
* **Baseline honesty.** The unfused baseline's recurrent kernel alone is timed
  against FLA's ``fused_recurrent_gated_delta_rule`` on the same pre-split
  inputs, so a speedup over the baseline is not a speedup over a strawman.
* **The harness's own cost.** The oracle's time on the largest nightly shape
  and the runner's per-case overhead, so the nightly budget can be planned.

``--dry`` runs everything on tiny shapes without graphs (CPU: the Triton
interpreter), which exercises the code, not the hardware.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.host import to_f64 as _f64

SCHEMA = "gdn-harness-bench/1"
DEFAULT_SHAPES = "16/32,4/8"  # H/HV of Qwen3-Next at TP1 and TP4 (K = V = 128)
DEFAULT_BATCHES = "1,2,4,8,16,32,64,128,256,512,1024"
DEFAULT_LAYOUTS = "vk,kv"
DRY_SHAPES = "1/2/16/16"
DRY_BATCHES = "1,3"
DEFAULT_REPLAYS = 100
WARMUP_REPLAYS = 5
DEFAULT_CHECK_ROWS = 16
L2_FACTOR = 3.0  # rotated working set >= this many times the L2 size
DEFAULT_L2_BYTES = 50 * 2**20  # H100 SXM, when the device does not say
MIN_SETS, MAX_SETS = 2, 512
SET_MEMORY_FRACTION = 0.4  # of free device memory, for all input sets of one case
COPY_BYTES = 2 * 2**30  # the bandwidth probe copies this many bytes (read + write = 2x)
COPY_REPS = 20
SAME_COPY_MIN_BYTES = 64 * 2**20  # below this an eager copy times its launch
SAME_COPY_MIN_CALLS = 10  # copies per timed sample, so one launch gap is spread thin
DRY_COPY_BYTES = 16 * 2**20
ORACLE_SHAPE = {"B": 1024, "H": 16, "HV": 64, "K": 128, "V": 128}  # largest nightly shape
DRY_ORACLE_SHAPE = {"B": 4, "H": 1, "HV": 2, "K": 16, "V": 16}
RUNNER_CASE = {"B": 8, "H": 2, "HV": 4, "K": 128, "V": 128}  # a small GPU case
DRY_RUNNER_CASE = {"B": 2, "H": 1, "HV": 2, "K": 16, "V": 16}
RECURRENT_MAX_RATIO = 1.10  # baseline_recurrent within 10% of FLA's kernel
# FLA vs baseline_recurrent on the same inputs, max |diff| / max |value|: out is bf16
# (a rounding flip is 2**-8 of an element), the state fp32 (summation order only).
AGREE_OUT_REL, AGREE_STATE_REL = 2e-2, 1e-4
TARGET_SHAPES = {(16, 32), (4, 8)}
SLOT_ORDERS = {
    "permuted": "slots a seeded permutation of each set's region",
    "identity": "row n of set i in slot i*B + n (a diagnostic: serving's slots are scattered)",
}
PAD_FREE_NOTE = "every row live (no padding)"

ACT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
STATE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --- shapes and the byte floor ---------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Head counts and head dims of one benchmarked model configuration."""

    H: int
    HV: int
    K: int = 128
    V: int = 128

    @property
    def label(self) -> str:
        dims = "" if (self.K, self.V) == (128, 128) else f"/{self.K}/{self.V}"
        return f"{self.H}/{self.HV}{dims}"


def parse_shapes(text: str) -> list[Shape]:
    """``"16/32,4/8"`` -> shapes; an item is ``H/HV`` or ``H/HV/K/V`` (K = V = 128 default)."""
    shapes = []
    for item in text.split(","):
        parts = [p for p in item.strip().split("/") if p]
        if len(parts) not in (2, 4) or not all(p.isdigit() for p in parts):
            raise argparse.ArgumentTypeError(f"shape {item!r}: expected H/HV or H/HV/K/V")
        dims = [int(p) for p in parts]
        if min(dims) < 1 or dims[1] % dims[0]:
            raise argparse.ArgumentTypeError(f"shape {item!r}: HV must be a multiple of H")
        shapes.append(Shape(*dims))
    return shapes


def parse_ints(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (positive integers)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def parse_layouts(text: str) -> list[str]:
    layouts = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in layouts if x not in ("vk", "kv")]
    if bad or not layouts:
        raise argparse.ArgumentTypeError(f"layouts must be vk and/or kv, got {text!r}")
    return layouts


@dataclass(frozen=True)
class StepBytes:
    """The fewest bytes one decode step must move, by tensor."""

    state: int  # live slots read once and written once
    qkv: int  # q, k, v read
    gates: int  # a, b read
    out: int  # out written
    params: int  # A_log, dt_bias read
    indices: int  # state_indices read

    @property
    def total(self) -> int:
        return self.state + self.qkv + self.gates + self.out + self.params + self.indices


def step_bytes(
    B: int,
    shape: Shape,
    act_bytes: int,
    state_bytes: int,
    param_bytes: int = 4,
    index_bytes: int = 4,
) -> StepBytes:
    """Byte floor of one step: what any implementation must read and write at least once."""
    H, HV, K, V = shape.H, shape.HV, shape.K, shape.V
    return StepBytes(
        state=2 * B * HV * K * V * state_bytes,
        qkv=B * (2 * H * K + HV * V) * act_bytes,
        gates=2 * B * HV * act_bytes,
        out=B * HV * V * act_bytes,
        params=2 * HV * param_bytes,
        indices=B * index_bytes,
    )


def set_footprint(B: int, shape: Shape, act_bytes: int, state_bytes: int) -> int:
    """Distinct bytes one input set occupies (its state region once, activations, out)."""
    sb = step_bytes(B, shape, act_bytes, state_bytes)
    return sb.state // 2 + sb.qkv + sb.gates + sb.out + sb.indices


def auto_input_sets(per_set: int, l2_bytes: int, mem_budget: int | None = None) -> int:
    """Enough sets that the rotation exceeds ``L2_FACTOR`` x L2, within the memory budget."""
    n = max(MIN_SETS, math.ceil(L2_FACTOR * l2_bytes / max(1, per_set)))
    n = min(MAX_SETS, n)
    if mem_budget is not None:
        n = min(n, max(1, mem_budget // max(1, per_set)))
    return int(n)


# --- targets -----------------------------------------------------------------


@dataclass(frozen=True)
class TargetResult:
    """One target's verdict for one row, with the measured value in ``detail``."""

    name: str
    ok: bool
    detail: str


def targets_apply(row: dict) -> bool:
    """Targets are stated for the packed kernel on Qwen3-Next shapes, bf16/fp32, K=V=128."""
    return (
        row.get("impl") == "packed"
        and (row["H"], row["HV"]) in TARGET_SHAPES
        and (row["K"], row["V"]) == (128, 128)
        and row.get("act_dtype") == "bf16"
        and row.get("state_dtype") == "fp32"
    )


def evaluate_targets(row: dict) -> list[TargetResult]:
    """The issue's targets that apply to one result row, each PASS or MISS.

    A row that was not timed (check failed, crash, skipped) misses every
    target that applies to it: an untimed kernel has not met anything.
    """
    if not targets_apply(row):
        return []
    B, layout = row["B"], row["layout"]
    t, pct, speedup = row.get("time_us"), row.get("pct_floor"), row.get("speedup")
    checks: list[tuple[str, float | None, float, bool]] = []  # name, value, bound, higher_ok
    if layout == "vk" and B >= 256:
        checks.append(("vk >= 97% of floor (B >= 256)", pct, 97.0, True))
    if layout == "vk" and B == 64:
        checks.append(("vk >= 93% of floor (B = 64)", pct, 93.0, True))
    if layout == "kv" and B >= 256:
        checks.append(("kv >= 90% of floor (B >= 256)", pct, 90.0, True))
    checks.append(("faster than baseline", speedup, 1.0, True))
    if B <= 64:
        checks.append((">= 1.3x baseline (B <= 64)", speedup, 1.3, True))
    if B == 1:
        checks.append(("B = 1 within 2.5 us", t, 2.5, False))
    results = []
    for name, value, bound, higher in checks:
        if value is None:
            results.append(TargetResult(name, False, f"{name}: not measured"))
            continue
        if name == "faster than baseline":
            ok = value > bound
        else:
            ok = value >= bound if higher else value <= bound
        results.append(TargetResult(name, ok, f"{name}: {_shown(value, bound)} vs {bound:g}"))
    return results


def _shown(value: float, bound: float) -> str:
    """``value`` in three significant digits, or more where three would print it
    equal to ``bound`` (a speedup of 1.297 must not read "1.3 vs 1.3")."""
    for digits in range(3, 8):
        text = f"{value:.{digits}g}"
        if value == bound or float(text) != bound:
            return text
    return repr(value)


def evaluate_recurrent(row: dict) -> TargetResult | None:
    """baseline_recurrent must be within 10% of FLA's recurrent kernel (None: no FLA time).

    A timing comparison between kernels that computed different things proves
    nothing, so a row where the two disagree on set 0 misses too.
    """
    base, fla = row.get("baseline_us"), row.get("fla_us")
    if base is None or fla is None:
        return None
    ratio = base / fla
    name = f"baseline_recurrent <= {RECURRENT_MAX_RATIO:g}x FLA"
    if not row.get("agree", True):
        return TargetResult(name, False, f"{name}: {ratio:.3f}, but the results disagree")
    return TargetResult(name, ratio <= RECURRENT_MAX_RATIO, f"{name}: {ratio:.3f}")


def target_cell(results: Sequence[TargetResult]) -> str:
    """Console/markdown cell: '-' (none apply), 'PASS', or 'MISS: <names>'."""
    if not results:
        return "-"
    missed = [r.name for r in results if not r.ok]
    return "PASS" if not missed else "MISS: " + "; ".join(missed)


# --- timing ------------------------------------------------------------------


@dataclass
class Timing:
    """Per-call time of one implementation on one case."""

    median_us: float
    min_us: float
    replays: int
    calls_per_replay: int
    method: str  # "cuda-graph" or "wall (dry)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.cache
def _l2_scrubber(device: torch.device) -> Callable[[], None]:
    from harness.bench.l2scrub import L2Scrubber  # compiles a Triton kernel: CUDA only

    return L2Scrubber(device, _l2_bytes(device))


def _scrub_l2(device: torch.device) -> None:
    """Evict what earlier kernels left in L2 with evict_last (harness/l2scrub.py)."""
    index = torch.cuda.current_device() if device.index is None else device.index
    _l2_scrubber(torch.device("cuda", index))()


def time_calls(
    calls: Sequence[Callable[[], Any]],
    device: torch.device,
    replays: int,
    *,
    use_graph: bool,
    warmup: int = WARMUP_REPLAYS,
    scrub: bool = True,
) -> Timing:
    """Time ``calls`` (one per input set) as one unit; return the time per call.

    With ``use_graph`` the calls are warmed up outside capture (Triton compiles
    on the first call), captured into ONE CUDA graph, and the graph is replayed
    ``replays`` times, each timed with CUDA events; the per-call time is the
    median replay time divided by ``len(calls)``. Without it (dry runs) the
    calls run eagerly and wall time is taken, which only exercises the code.
    ``scrub`` first clears L2 of lines left by earlier kernels (harness/l2scrub.py).
    """
    R = len(calls)
    if not use_graph:
        for call in calls[:1]:
            call()
        _sync(device)
        samples = []
        for _ in range(max(1, replays)):
            start = time.perf_counter()
            for call in calls:
                call()
            _sync(device)
            samples.append((time.perf_counter() - start) * 1e3)
        return Timing(
            statistics.median(samples) * 1e3 / R,
            min(samples) * 1e3 / R,
            len(samples),
            R,
            "wall (dry)",
        )
    if scrub:  # lines an earlier kernel kept with evict_last would flatter these calls
        _scrub_l2(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            for call in calls:
                call()
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    # Keep whatever the captured calls return (FLA allocates its outputs) alive while the
    # graph replays: each call then writes its own buffers, as an in-place kernel does,
    # instead of one reused block that could stay in L2.
    with torch.cuda.graph(graph):
        keep = [call() for call in calls]
    torch.cuda.synchronize(device)
    for _ in range(warmup):
        graph.replay()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    for s, e in zip(starts, ends, strict=True):
        s.record()
        graph.replay()
        e.record()
    torch.cuda.synchronize(device)
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]  # ms
    del graph, keep
    return Timing(
        statistics.median(samples) * 1e3 / R, min(samples) * 1e3 / R, replays, R, "cuda-graph"
    )


def best_copy(first: dict, last: dict) -> dict:
    """The faster of the run's two copy measurements, with both recorded."""
    best = max(first, last, key=lambda c: c["GBps"])
    return {**best, "start_GBps": first["GBps"], "end_GBps": last["GBps"]}


def refloor(rows: list[dict], copy_GBps: float) -> None:
    """Floor time, % of floor and target verdicts of ``rows`` for ``copy_GBps``."""
    for r in rows:
        r["floor_us"] = r["floor_bytes"] / (copy_GBps * 1e9) * 1e6
        if "time_us" in r:
            r["pct_floor"] = 100.0 * r["floor_us"] / r["time_us"]
        r["targets"] = [asdict(x) for x in evaluate_targets(r)]


def eager_copy_seconds(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], copies: int, device: torch.device, reps: int
) -> float:
    """Median seconds per copy: ``copies`` copies, taking the (source, target)
    ``pairs`` in turn, issued back to back between two CUDA events (wall clock
    on CPU); the median is over ``reps`` such samples."""
    calls = (list(pairs) * math.ceil(copies / len(pairs)))[:copies]
    samples = []
    for _ in range(max(1, reps)):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for src, dst in calls:
                dst.copy_(src)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            for src, dst in calls:
                dst.copy_(src)
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples) / len(calls)


def measure_copy_bandwidth(device: torch.device, nbytes: int, reps: int = COPY_REPS) -> dict:
    """Device-to-device copy bandwidth (bytes read + bytes written per second).

    This is the practical ceiling that the floor divides by: a kernel that
    streams its bytes as well as ``cudaMemcpy`` does sits at 100%.
    """
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    _sync(device)
    seconds = eager_copy_seconds([(src, dst)], 1, device, reps)
    if device.type == "cuda":
        method = "torch copy_ of a contiguous uint8 buffer (cudaMemcpyAsync D2D), CUDA events"
    else:
        method = "torch copy_ on CPU, wall clock (dry run: meaningless as a floor)"
    del src, dst
    return {
        "bytes_copied": nbytes,
        "bytes_moved": 2 * nbytes,
        "reps": reps,
        "median_ms": seconds * 1e3,
        "GBps": 2 * nbytes / seconds / 1e9,
        "method": method,
    }


# --- input sets ----------------------------------------------------------------


@dataclass
class InputSet:
    """One call's arguments: its own activations, slots in its own pool region, its own out."""

    mixed_qkv: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    state_indices: torch.Tensor
    out: torch.Tensor


@dataclass
class CaseBuffers:
    """Every input set of one (shape, layout, B) case, sharing one state pool."""

    shape: Shape
    B: int
    layout: str
    A_log: torch.Tensor
    dt_bias: torch.Tensor
    pool: torch.Tensor  # [R * B, HV, V, K] (vk) or [R * B, HV, K, V] (kv)
    sets: list[InputSet]
    scale: float

    def args(self, i: int) -> tuple[torch.Tensor, ...]:
        s = self.sets[i]
        return (s.mixed_qkv, s.a, s.b, self.A_log, self.dt_bias, self.pool, s.state_indices, s.out)

    def kwargs(self) -> dict[str, Any]:
        return {"scale": self.scale, "use_qk_l2norm": True, "state_layout": self.layout}


def build_case(
    shape: Shape,
    B: int,
    layout: str,
    n_sets: int,
    act: torch.dtype,
    state_dtype: torch.dtype,
    device: torch.device,
    seed: int = 0,
    slot_order: str = "permuted",
) -> CaseBuffers:
    """Input sets laid out as serving has them (DESIGN.md's contract layouts).

    ``mixed_qkv`` dense ``[B, 2HK + HV*V]``; ``a`` and ``b`` views of one
    packed ``[B, 2HV]`` buffer; A_log and dt_bias fp32; one pool of
    ``n_sets * B`` slots where set ``i`` owns slots ``[i*B, (i+1)*B)`` in a
    seeded random order (int32 indices), or in row order with ``slot_order``
    "identity". Values are drawn on the device
    (fast for multi-GiB pools); their distribution does not change the
    timing, and the correctness check uses exactly these values.
    """
    H, HV, K, V = shape.H, shape.HV, shape.K, shape.V
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    inner = (V, K) if layout == "vk" else (K, V)
    pool = torch.empty((n_sets * B, HV, *inner), dtype=state_dtype, device=device)
    rows_per_chunk = max(1, (1 << 26) // (HV * K * V))
    for lo in range(0, pool.shape[0], rows_per_chunk):
        part = pool[lo : lo + rows_per_chunk]
        part.copy_(torch.randn(part.shape, generator=gen, device=device))
    A_log = torch.rand(HV, generator=gen, device=device) * 2 - 1
    dt_bias = torch.randn(HV, generator=gen, device=device)
    perm_gen = torch.Generator().manual_seed(seed + 1)
    sets = []
    for i in range(n_sets):
        qkv = torch.randn((B, 2 * H * K + HV * V), generator=gen, device=device).to(act)
        ab = torch.randn((B, 2 * HV), generator=gen, device=device).to(act)
        if slot_order == "identity":
            perm = torch.arange(B) + i * B
        else:
            perm = torch.randperm(B, generator=perm_gen) + i * B
        sets.append(
            InputSet(
                mixed_qkv=qkv,
                a=ab[:, :HV],
                b=ab[:, HV:],
                state_indices=perm.to(device=device, dtype=torch.int32),
                out=torch.empty((B, HV, V), dtype=act, device=device),
            )
        )
    return CaseBuffers(shape, B, layout, A_log, dt_bias, pool, sets, K**-0.5)


def probe_case(
    shape: Shape, B: int, layout: str, device: torch.device, seed: int = 1
) -> CaseBuffers:
    """One case's input sets, bf16 activations and fp32 state, as many as the bench
    rotates: for the scripts under benchmarks/ that time pieces of a step its way."""
    act, st = torch.bfloat16, torch.float32
    per_set = set_footprint(B, shape, act.itemsize, st.itemsize)
    sets = auto_input_sets(per_set, _l2_bytes(device))
    return build_case(shape, B, layout, sets, act, st, device, seed=seed)


# --- correctness check -------------------------------------------------------------


def sample_rows(B: int, n: int) -> np.ndarray:
    """Up to ``n`` rows spread over the batch, always including the first and the last."""
    if n >= B:
        return np.arange(B)
    return np.unique(np.linspace(0, B - 1, n).round().astype(np.int64))


@dataclass
class CaseCheck:
    """Oracle reference for sampled rows of set 0, shared by every implementation."""

    rows: torch.Tensor
    slots: torch.Tensor
    pre: torch.Tensor  # the sampled slots before any call
    ref_out: np.ndarray
    ref_state: np.ndarray
    bound_out: np.ndarray
    bound_state: np.ndarray
    layout: str


def prepare_check(bufs: CaseBuffers, n_rows: int, act_name: str, state_name: str) -> CaseCheck:
    """Run the float64 oracle once on the sampled rows of set 0 (the harness's bounds)."""
    from harness.check.tolerance import resolve
    from harness.core.spec import Tolerance
    from reference.oracle import decode_rows

    s, dev = bufs.sets[0], bufs.pool.device
    rows = torch.as_tensor(sample_rows(bufs.B, n_rows), device=dev)
    slots = s.state_indices[rows].long()
    pre = bufs.pool[slots].clone()
    canon = _f64(pre)
    if bufs.layout == "vk":
        canon = np.swapaxes(canon, -1, -2)
    ref = decode_rows(
        _f64(s.mixed_qkv[rows]),
        _f64(s.a[rows]),
        _f64(s.b[rows]),
        _f64(bufs.A_log),
        _f64(bufs.dt_bias),
        canon,
        H=bufs.shape.H,
        scale=bufs.scale,
        use_qk_l2norm=True,
        with_magnitude=True,
    )
    tol_out = resolve(Tolerance(), act_name, bufs.shape.K)
    tol_state = resolve(Tolerance(), state_name, bufs.shape.K)
    return CaseCheck(
        rows=rows,
        slots=slots,
        pre=pre,
        ref_out=ref.out,
        ref_state=ref.state,
        bound_out=tol_out.bound(ref.out, ref.out_mag),
        bound_state=tol_state.bound(ref.state, ref.state_mag),
        layout=bufs.layout,
    )


def _over(x: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> tuple[int, float]:
    """Elements over the bound (NaN counts as over) and the worst err/bound ratio."""
    err = np.abs(x - ref)
    over = int((~(err <= bound)).sum())
    ratio = float(np.nanmax(err / bound)) if err.size else 0.0
    return over, ratio if math.isfinite(ratio) else float("inf")


def run_check(fn: Callable[..., None], bufs: CaseBuffers, chk: CaseCheck) -> tuple[bool, str]:
    """Call ``fn`` once on set 0 from the shared pre-state and compare with the oracle.

    The sampled slots are restored first, so every implementation starts from
    the same state; ``out`` is poisoned with NaN, so a row left unwritten
    anywhere in the batch fails.
    """
    s = bufs.sets[0]
    bufs.pool[chk.slots] = chk.pre
    s.out.fill_(float("nan"))
    try:
        fn(*bufs.args(0), **bufs.kwargs())
        _sync(bufs.pool.device)
    except Exception as exc:
        return False, f"raised {type(exc).__name__}: {exc}"
    unwritten = int((~torch.isfinite(s.out)).any(dim=-1).any(dim=-1).sum().item())
    out = _f64(s.out[chk.rows])
    state = _f64(bufs.pool[chk.slots])
    if chk.layout == "vk":
        state = np.swapaxes(state, -1, -2)
    o_over, o_ratio = _over(out, chk.ref_out, chk.bound_out)
    s_over, s_ratio = _over(state, chk.ref_state, chk.bound_state)
    msgs = []
    if unwritten:
        msgs.append(f"{unwritten} of {bufs.B} output rows not finite (unwritten?)")
    if o_over:
        msgs.append(f"out: {o_over} elements over tolerance (worst {o_ratio:.3g}x bound)")
    if s_over:
        msgs.append(f"state: {s_over} elements over tolerance (worst {s_ratio:.3g}x bound)")
    detail = (
        f"{len(chk.rows)} sampled rows vs float64 oracle; worst err/bound out "
        f"{o_ratio:.3g}, state {s_ratio:.3g}"
    )
    return (not msgs), ("; ".join(msgs) if msgs else detail)


# --- the main table --------------------------------------------------------------


def _bench_spec(shape: Shape, B: int, layout: str, act: str, state: str, tier: str):
    """A CaseSpec describing a bench case, for implementations' ``unsupported`` hooks."""
    from harness.core.spec import CaseSpec, LayoutSpec, SlotSpec

    return CaseSpec(
        file="bench",
        name=f"{shape.label}-{layout}-B{B}",
        line=0,
        B=B,
        H=shape.H,
        HV=shape.HV,
        K=shape.K,
        V=shape.V,
        pool=B,
        act_dtype=act,
        state_dtype=state,
        layout=LayoutSpec(state_layout=layout, ab_packed=True),
        slots=SlotSpec(order="permutation"),
        tier=tier,
    )


@dataclass
class BenchConfig:
    """Everything a bench run was asked to do (recorded in the JSON)."""

    impls: list[str]
    shapes: list[Shape]
    batches: list[int]
    layouts: list[str]
    act_dtype: str
    state_dtype: str
    replays: int
    input_sets: int | None
    check: bool
    check_rows: int
    dry: bool
    device: str
    recurrent: bool
    main: bool
    harness_cost: bool
    oracle_rows: int | None
    seed: int = 0
    slot_order: str = "permuted"


def _l2_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return DEFAULT_L2_BYTES
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


def _mem_budget(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * SET_MEMORY_FRACTION)


def _log(msg: str) -> None:
    print(msg, flush=True)


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _time_impl(fn: Callable[..., None], bufs: CaseBuffers, device: torch.device, replays: int):
    """Time ``fn`` with one call per input set (each on its own set, region and out)."""
    kwargs = bufs.kwargs()
    calls = [
        (lambda i=i: fn(*bufs.args(i), **kwargs))  # one call per input set
        for i in range(len(bufs.sets))
    ]
    return time_calls(calls, device, replays, use_graph=device.type == "cuda")


def bench_case(
    cfg: BenchConfig,
    impls: list[Any],
    shape: Shape,
    layout: str,
    B: int,
    device: torch.device,
    copy_GBps: float,
) -> list[dict]:
    """Check, then time, every implementation on one case; one row per implementation."""
    act, st = ACT_DTYPES[cfg.act_dtype], STATE_DTYPES[cfg.state_dtype]
    floor = step_bytes(B, shape, act.itemsize, st.itemsize)
    per_set = set_footprint(B, shape, act.itemsize, st.itemsize)
    if cfg.input_sets is not None:
        n_sets = cfg.input_sets
    else:
        n_sets = auto_input_sets(per_set, _l2_bytes(device), _mem_budget(device))
    common = {
        "shape": shape.label,
        "H": shape.H,
        "HV": shape.HV,
        "K": shape.K,
        "V": shape.V,
        "layout": layout,
        "B": B,
        "act_dtype": cfg.act_dtype,
        "state_dtype": cfg.state_dtype,
        "input_sets": n_sets,
        "rotated_bytes": n_sets * per_set,
        "floor_bytes": floor.total,
        "floor_breakdown": asdict(floor),
    }
    tier = "gpu" if device.type == "cuda" else "cpu"
    spec = _bench_spec(shape, B, layout, cfg.act_dtype, cfg.state_dtype, tier)
    bufs = build_case(
        shape, B, layout, n_sets, act, st, device, seed=cfg.seed + B, slot_order=cfg.slot_order
    )
    chk = prepare_check(bufs, cfg.check_rows, cfg.act_dtype, cfg.state_dtype) if cfg.check else None
    rows = []
    for impl in impls:
        row = {**common, "impl": impl.spec, "status": "ok", "check": "skipped", "detail": ""}
        reason = impl.unsupported(spec)
        if reason:
            row.update(status="skipped", check="-", detail=reason)
            rows.append(row)
            continue
        if chk is not None:
            ok, detail = run_check(impl.fn, bufs, chk)
            row.update(check="PASS" if ok else "FAIL", detail=detail)
            if not ok:
                row["status"] = "check-failed"
                rows.append(row)
                continue
        try:
            t = _time_impl(impl.fn, bufs, device, cfg.replays)
        except Exception as exc:
            row.update(status="error", detail=f"timing failed: {type(exc).__name__}: {exc}")
            _release(device)
            rows.append(row)
            continue
        row.update(
            time_us=t.median_us,
            time_us_min=t.min_us,
            replays=t.replays,
            calls_per_replay=t.calls_per_replay,
            timing=t.method,
            GBps=floor.total / (t.median_us * 1e-6) / 1e9,
        )
        rows.append(row)
    base = next((r for r in rows if r["impl"] == "baseline" and "time_us" in r), None)
    for r in rows:
        if base is not None and "time_us" in r:
            r["speedup"] = base["time_us"] / r["time_us"]
    refloor(rows, copy_GBps)  # floor time, % of floor, target verdicts
    del bufs, chk
    _release(device)
    if floor.total >= SAME_COPY_MIN_BYTES or device.type != "cuda":
        try:
            copy_us = same_size_copy(floor.total // 2, device, cfg.replays)
        except torch.OutOfMemoryError:
            _release(device)
            return rows  # the copy is a reference; the rows stand without it
        for r in rows:
            r["copy_us"] = copy_us
            if "time_us" in r:
                r["pct_copy"] = 100.0 * copy_us / r["time_us"]
        _release(device)
    return rows


def same_size_copy(nbytes: int, device: torch.device, replays: int) -> float:
    """Microseconds per device-to-device copy of ``nbytes``: two buffer pairs in
    turn (each pair is bigger than L2 from ``SAME_COPY_MIN_BYTES`` up), repeated
    to ``SAME_COPY_MIN_CALLS`` copies back to back between two CUDA events
    (eagerly, as the 2 GiB copy is timed); median over ``replays``."""
    pairs = [
        (
            torch.ones(nbytes, dtype=torch.uint8, device=device),
            torch.empty(nbytes, dtype=torch.uint8, device=device),
        )
        for _ in range(2)
    ]
    for src, dst in pairs:
        dst.copy_(src)
    _sync(device)
    return eager_copy_seconds(pairs, SAME_COPY_MIN_CALLS, device, replays) * 1e6


# --- recurrent kernel alone: baseline vs FLA ----------------------------------------


def load_fla() -> tuple[Callable | None, str]:
    """FLA's recurrent GDN kernel, or None and why (import guarded: FLA is optional)."""
    try:
        mod = importlib.import_module("fla.ops.gated_delta_rule")
        fn = mod.fused_recurrent_gated_delta_rule
    except Exception as exc:
        return None, f"fla not installed ({type(exc).__name__}: {exc})"
    version = getattr(sys.modules.get("fla"), "__version__", "unknown")
    return fn, f"fla-core {version}"


FLA_STATE_NOTE = (
    "FLA reads a dense initial_state [B, HV, ...] by batch row and writes final_state to "
    "a new buffer (fla-core 0.6.0 has no state-index argument); baseline_recurrent gets the "
    "same dense per-set states with identity int32 indices and updates them in place: the "
    "same bytes either way"
)


def bench_recurrent_case(
    cfg: BenchConfig,
    fla: Callable | None,
    shape: Shape,
    layout: str,
    B: int,
    device: torch.device,
) -> dict:
    """baseline_recurrent vs FLA's fused_recurrent_gated_delta_rule on the same pre-split inputs."""
    from kernels.baseline import baseline_recurrent

    act, st = ACT_DTYPES[cfg.act_dtype], STATE_DTYPES[cfg.state_dtype]
    H, HV, K, V = shape.H, shape.HV, shape.K, shape.V
    per_set = set_footprint(B, shape, act.itemsize, st.itemsize)
    if cfg.input_sets is not None:
        n_sets = cfg.input_sets
    else:
        n_sets = auto_input_sets(per_set, _l2_bytes(device), _mem_budget(device))
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + 7 * B + 1)
    inner = (V, K) if layout == "vk" else (K, V)
    states = torch.randn((n_sets * B, HV, *inner), generator=gen, device=device).to(st)
    A_log = torch.rand(HV, generator=gen, device=device) * 2 - 1
    dt_bias = torch.randn(HV, generator=gen, device=device)
    idx = torch.arange(B, dtype=torch.int32, device=device)
    sets = []
    for i in range(n_sets):
        q = torch.randn((B, H, K), generator=gen, device=device).to(act)
        k = torch.randn((B, H, K), generator=gen, device=device).to(act)
        v = torch.randn((B, HV, V), generator=gen, device=device).to(act)
        a = torch.randn((B, HV), generator=gen, device=device)
        b = torch.randn((B, HV), generator=gen, device=device)
        g = (-torch.exp(A_log) * torch.nn.functional.softplus(a + dt_bias)).contiguous()
        beta = torch.sigmoid(b).contiguous()
        out = torch.empty((B, HV, V), dtype=act, device=device)
        sets.append((q, k, v, g, beta, states[i * B : (i + 1) * B], out))
    scale = K**-0.5
    row: dict[str, Any] = {
        "shape": shape.label,
        "H": H,
        "HV": HV,
        "K": K,
        "V": V,
        "layout": layout,
        "B": B,
        "input_sets": n_sets,
    }

    def base_call(s):
        q, k, v, g, beta, state, out = s
        baseline_recurrent(
            q,
            k,
            v,
            g,
            beta,
            state,
            idx,
            out,
            scale=scale,
            use_qk_l2norm=True,
            state_layout=layout,
        )

    def fla_call(s):
        q, k, v, g, beta, state, _ = s
        # By keyword: FLA's positional order is (q, k, v, g, gk, gv, beta, ...).
        return fla(
            q.unsqueeze(1),
            k.unsqueeze(1),
            v.unsqueeze(1),
            g=g.unsqueeze(1),
            beta=beta.unsqueeze(1),
            scale=scale,
            initial_state=state,
            output_final_state=True,
            use_qk_l2norm_in_kernel=True,
            state_v_first=layout == "vk",
        )

    use_graph = device.type == "cuda"
    if fla is not None:
        # Agreement on set 0 from the same state: a sanity check that both run the same math.
        s0 = sets[0]
        try:
            o_fla, ht = fla_call(s0)
            saved = s0[5].clone()
            base_call(s0)
            _sync(device)
            diff = {
                "out_max_rel": _rel_diff(o_fla.squeeze(1), s0[6]),
                "state_max_rel": _rel_diff(ht, s0[5]),
            }
            row["fla_vs_baseline"] = diff
            row["agree"] = bool(
                diff["out_max_rel"] <= AGREE_OUT_REL and diff["state_max_rel"] <= AGREE_STATE_REL
            )
            s0[5].copy_(saved)
            del o_fla, ht, saved
        except Exception as exc:
            row["fla_error"] = f"{type(exc).__name__}: {exc}"
    try:
        t = time_calls(
            [lambda s=s: base_call(s) for s in sets], device, cfg.replays, use_graph=use_graph
        )
        row["baseline_us"] = t.median_us
    except Exception as exc:
        row["baseline_error"] = f"{type(exc).__name__}: {exc}"
    if fla is not None and "fla_error" not in row:
        try:
            t = time_calls(
                [lambda s=s: fla_call(s) for s in sets], device, cfg.replays, use_graph=use_graph
            )
            row["fla_us"] = t.median_us
        except Exception as exc:
            row["fla_error"] = f"{type(exc).__name__}: {exc}"
    if row.get("baseline_us") and row.get("fla_us"):
        row["ratio"] = row["baseline_us"] / row["fla_us"]
    target = evaluate_recurrent(row)
    row["target"] = asdict(target) if target else None
    del sets, states
    _release(device)
    return row


def _rel_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """max |x - y| / max |y| (in fp64 on the device's own tensors)."""
    x, y = x.double(), y.double()
    scale = float(y.abs().max().item()) or 1.0
    return float((x - y).abs().max().item()) / scale


# --- the harness's own cost -------------------------------------------------------


def oracle_cost(shape: dict, rows: int | None, seed: int = 0) -> dict:
    """Time the per-element check of one step as the runner does it, on the
    largest nightly shape: the oracle, the bounds, two implementations and
    their pair compared, over the check workers when the step is big.

    ``rows`` rows are timed (default all ``B``); their values repeat a few
    rows' worth (values do not change the cost), and the implementations'
    results are the oracle's own, so the passing path is the one timed.
    """
    from harness.check import pool as check_pool
    from harness.check import step as step_check
    from harness.check.tolerance import resolve
    from harness.core.spec import Tolerance
    from reference.oracle import decode_rows

    B, H, HV, K, V = (shape[k] for k in ("B", "H", "HV", "K", "V"))
    rows = B if rows is None else min(rows, B)
    rng = np.random.default_rng(seed)
    n = min(rows, 4)
    qkv = rng.standard_normal((n, 2 * H * K + HV * V)).astype(np.float32).astype(np.float64)
    a, b = rng.standard_normal((n, HV)), rng.standard_normal((n, HV))
    A_log, dt_bias = rng.uniform(-1, 1, HV), rng.standard_normal(HV)
    S = rng.standard_normal((n, HV, K, V), dtype=np.float32)
    acts = (qkv, a, b, A_log, dt_bias)
    ref = decode_rows(*acts, S, H=H, scale=K**-0.5)
    out, state = ref.out.astype(np.float32), ref.state.astype(np.float32)

    def make_block(chunk: np.ndarray, new_array) -> step_check.Block:
        idx = chunk % n
        pre = new_array((chunk.size, HV, K, V))
        pre[:] = S[idx]
        block = step_check.Block((qkv[idx], a[idx], b[idx], A_log, dt_bias), chunk, chunk, pre)
        for _ in range(2):
            o, st = new_array((chunk.size, HV, V)), new_array((chunk.size, HV, K, V))
            o[:], st[:] = out[idx], state[idx]
            block.tested.append((o, st))
        return block

    ctx = step_check.StepContext(
        H, K**-0.5, True, resolve(Tolerance(), "bf16", K), resolve(Tolerance(), "fp32", K), 0
    )
    t0 = time.perf_counter()
    stats = check_pool.check_blocks(ctx, rows, 2, (HV, K, V), make_block)
    seconds = time.perf_counter() - t0
    if not all(s.ok for s in stats):
        raise RuntimeError("the timed check failed on the oracle's own results")
    elems = rows * HV * K * V
    return {
        "shape": dict(shape),
        "rows_timed": rows,
        "workers": check_pool.default_workers() if elems >= check_pool.POOL_MIN_ELEMS else 1,
        "seconds": seconds,
        "seconds_full_batch": seconds * B / rows,
        "ns_per_state_element": seconds / elems * 1e9,
        "extrapolated": rows < B,
        "what": "one step's per-element check (harness.check.step): oracle with magnitudes, "
        "bounds, two implementations and their pair compared, host copies included",
    }


def runner_overhead(device: torch.device, dry: bool, reps: int = 5) -> dict:
    """Wall time of ``run_case`` on a small case minus the kernel time inside it.

    ``run_case`` calls each of packed and baseline twice (the call and the
    determinism twin); the kernel time is those four calls' graph-replayed
    (or, dry, wall) time, so the rest is the harness's own cost per case.
    """
    from harness.core.spec import CaseSpec, SlotSpec
    from harness.impls.registry import load_implementation
    from harness.inputs import build as inp_mod
    from harness.run.runner import run_case

    dims = DRY_RUNNER_CASE if dry else RUNNER_CASE
    spec = CaseSpec(
        file="bench",
        name="runner-overhead",
        line=0,
        pool=2 * dims["B"],
        slots=SlotSpec(order="permutation"),
        tier="gpu" if device.type == "cuda" else "cpu",
        **dims,
    )
    impl, base = load_implementation("packed"), load_implementation("baseline")
    dev = str(device)
    first = run_case(spec, impl, base, dev)  # compiles
    walls, status = [], first.status
    for _ in range(1 if dry else reps):
        t0 = time.perf_counter()
        res = run_case(spec, impl, base, dev)
        walls.append(time.perf_counter() - t0)
        status = res.status if res.status != "passed" else status
    kernel_us = 0.0
    for fn in (impl.fn, base.fn):
        inputs = inp_mod.build_inputs(spec, device)
        call = functools.partial(fn, *inputs.args(), **inputs.kwargs())
        t = time_calls([call], device, 1 if dry else 20, use_graph=device.type == "cuda")
        kernel_us += 2 * t.median_us
    wall_ms = statistics.median(walls) * 1e3
    return {
        "case": {k: getattr(spec, k) for k in ("B", "H", "HV", "K", "V", "pool")},
        "status": status,
        "wall_ms": wall_ms,
        "kernel_ms": kernel_us / 1e3,
        "overhead_ms": wall_ms - kernel_us / 1e3,
        "reps": len(walls),
    }


# --- reports -----------------------------------------------------------------


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


MAIN_COLUMNS = (
    "shape",
    "layout",
    "B",
    "impl",
    "sets",
    "time_us",
    "x_base",
    "GB/s",
    "%floor",
    "%copy",
    "check",
    "targets",
)


def main_table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        cell = target_cell([TargetResult(**t) for t in r.get("targets", [])])
        check = r["check"] if r["status"] in ("ok", "check-failed") else r["status"].upper()
        out.append(
            [
                r["shape"],
                r["layout"],
                str(r["B"]),
                r["impl"],
                str(r["input_sets"]),
                _fmt(r.get("time_us")),
                _fmt(r.get("speedup")),
                _fmt(r.get("GBps"), ".0f"),
                _fmt(r.get("pct_floor"), ".1f"),
                _fmt(r.get("pct_copy"), ".1f"),
                check,
                cell,
            ]
        )
    return out


RECURRENT_COLUMNS = (
    "shape",
    "layout",
    "B",
    "sets",
    "baseline_us",
    "fla_us",
    "base/fla",
    "agree",
    "target",
)


def recurrent_table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        agree = "-"
        if "agree" in r:
            agree = "yes" if r["agree"] else "NO"
        elif "fla_error" in r:
            agree = "ERROR"
        t = r.get("target")
        out.append(
            [
                r["shape"],
                r["layout"],
                str(r["B"]),
                str(r["input_sets"]),
                _fmt(r.get("baseline_us")),
                _fmt(r.get("fla_us")),
                _fmt(r.get("ratio"), ".3f"),
                agree,
                "-" if t is None else ("PASS" if t["ok"] else "MISS"),
            ]
        )
    return out


def text_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]
    right = {
        i
        for i, c in enumerate(columns)
        if c not in ("shape", "layout", "impl", "check", "targets", "agree", "target")
    }

    def line(cells):
        return "  ".join(
            (c.rjust(w) if i in right else c.ljust(w))
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    return "\n".join([head, sep, *("| " + " | ".join(r) + " |" for r in rows)])


def harness_cost_lines(cost: dict) -> list[str]:
    lines = []
    o = cost.get("oracle")
    if o:
        s = o["shape"]
        extra = f" (timed {o['rows_timed']} rows, scaled linearly)" if o["extrapolated"] else ""
        lines.append(
            f"check of one step at B={s['B']} H={s['H']} HV={s['HV']} K={s['K']} V={s['V']}: "
            f"{o['seconds_full_batch']:.1f} s{extra}, {o['ns_per_state_element']:.2f} ns per "
            f"state element, {o['workers']} check workers"
        )
    r = cost.get("runner")
    if r:
        c = r["case"]
        lines.append(
            f"runner per case (run_case, packed + baseline, B={c['B']} HV={c['HV']} K={c['K']}): "
            f"{r['wall_ms']:.1f} ms wall, {r['kernel_ms']:.3f} ms kernels, "
            f"{r['overhead_ms']:.1f} ms overhead ({r['status']})"
        )
    for key in ("oracle_error", "runner_error"):
        if key in cost:
            lines.append(f"{key.replace('_', ' ')}: {cost[key]}")
    return lines


def target_summary(report: dict) -> tuple[int, int, list[str]]:
    """(evaluated, passed, miss lines) over the main rows and the recurrent rows."""
    n = passed = 0
    misses = []
    for r in report.get("rows", []):
        for t in r.get("targets", []):
            n += 1
            passed += t["ok"]
            if not t["ok"]:
                misses.append(f"{r['shape']} {r['layout']} B={r['B']} {r['impl']}: {t['detail']}")
    for r in report.get("recurrent", {}).get("rows", []):
        t = r.get("target")
        if t:
            n += 1
            passed += t["ok"]
            if not t["ok"]:
                misses.append(f"{r['shape']} {r['layout']} B={r['B']} recurrent: {t['detail']}")
    return n, passed, misses


# --- SVG plot (no dependencies) ---------------------------------------------------

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_DASH = {"vk": "", "kv": "6,3"}


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _panel(x0, y0, w, h, title, series, *, ylog, xs_all, colors, ref=None, zero=False) -> list[str]:
    """One line chart: x is log2(B); series maps (name, layout) to [(B, y)]; ``zero``
    starts the y axis at 0."""
    out = [
        f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
        f'<text x="{x0 + w / 2}" y="{y0 - 6}" text-anchor="middle" font-size="12">'
        f"{_esc(title)}</text>",
    ]
    pts = [y for s in series.values() for _, y in s if y is not None and (y > 0 or not ylog)]
    if not pts or not xs_all:
        out.append(
            f'<text x="{x0 + w / 2}" y="{y0 + h / 2}" text-anchor="middle" '
            'font-size="11">no data</text>'
        )
        return out
    fy = (lambda y: math.log10(y)) if ylog else (lambda y: y)
    lo, hi = min(map(fy, pts)), max(map(fy, pts))
    if ref is not None:
        hi = max(hi, fy(ref))
    if zero:
        lo = min(0.0, lo)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    pad = 0.05 * (hi - lo)
    lo, hi = lo - (pad if ylog else 0), hi + pad
    xl, xh = math.log2(min(xs_all)), math.log2(max(xs_all))
    xh = xh if xh > xl else xl + 1

    def px(b):
        return x0 + 40 + (math.log2(b) - xl) / (xh - xl) * (w - 50)

    def py(y):
        return y0 + h - 20 - (fy(y) - lo) / (hi - lo) * (h - 30)

    for b in sorted(set(xs_all)):
        out.append(
            f'<text x="{px(b):.1f}" y="{y0 + h - 6}" text-anchor="middle" font-size="9">{b}</text>'
        )
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        label = f"{10**v:.3g}" if ylog else f"{v:.3g}"
        yy = y0 + h - 20 - (v - lo) / (hi - lo) * (h - 30)
        out.append(
            f'<line x1="{x0 + 38}" x2="{x0 + w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{x0 + 35}" y="{yy + 3:.1f}" text-anchor="end" font-size="9">{label}</text>'
        )
    if ref is not None:
        out.append(
            f'<line x1="{x0 + 38}" x2="{x0 + w}" y1="{py(ref):.1f}" y2="{py(ref):.1f}" '
            'stroke="#555" stroke-dasharray="2,2"/>'
        )
    for (name, layout), s in series.items():
        good = [(b, y) for b, y in sorted(s) if y is not None and (y > 0 or not ylog)]
        if not good:
            continue
        d = " ".join(f"{px(b):.1f},{py(y):.1f}" for b, y in good)
        dash = _DASH.get(layout, "")
        out.append(
            f'<polyline points="{d}" fill="none" stroke="{colors[name]}" stroke-width="1.5"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
        )
        out.extend(
            f'<circle cx="{px(b):.1f}" cy="{py(y):.1f}" r="2" fill="{colors[name]}"/>'
            for b, y in good
        )
    return out


def render_svg(report: dict) -> str:
    """Per shape: % of floor and time per call vs B (log2), one line per impl and layout;
    plus baseline_recurrent / FLA time ratios when measured. Hand-written SVG, so the
    plot exists on machines without matplotlib."""
    rows = report.get("rows", [])
    rec = report.get("recurrent", {}).get("rows", [])
    shapes = list(dict.fromkeys([r["shape"] for r in rows] + [r["shape"] for r in rec]))
    impls = [*dict.fromkeys(r["impl"] for r in rows), "base/fla"]
    colors = {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(impls)}
    w, h, gap = 360, 220, 40
    metrics = []
    if rows:
        metrics += [
            ("% of floor", "pct_floor", False, 100.0),
            ("time per call (us)", "time_us", True, None),
        ]
    if any(r.get("ratio") for r in rec):
        metrics.append(("recurrent: baseline / FLA time", "ratio", False, RECURRENT_MAX_RATIO))
    n_cols, n_rows = max(1, len(shapes)), max(1, len(metrics))
    width, height = n_cols * (w + gap) + gap, n_rows * (h + gap) + 70 + 20 * len(impls)
    dev = report.get("device", {}).get("name", "?")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{gap}" y="20" font-size="14">gdn-harness bench on {_esc(dev)} '
        f"({_esc(report.get('created', ''))})</text>",
    ]
    for ci, shape in enumerate(shapes):
        for mi, (title, key, ylog, ref) in enumerate(metrics):
            x0, y0 = gap + ci * (w + gap), 50 + mi * (h + gap)
            series: dict[tuple[str, str], list] = {}
            source = rec if key == "ratio" else rows
            for r in source:
                if r["shape"] != shape:
                    continue
                name = "base/fla" if key == "ratio" else r["impl"]
                series.setdefault((name, r["layout"]), []).append((r["B"], r.get(key)))
            xs = [r["B"] for r in source if r["shape"] == shape]
            out += _panel(
                x0,
                y0,
                w,
                h,
                f"H/HV {shape}: {title}",
                series,
                ylog=ylog,
                xs_all=xs,
                colors=colors,
                ref=ref,
                zero=key == "pct_floor",
            )
    if not metrics:
        out.append(f'<text x="{gap}" y="60" font-size="12">no timed rows</text>')
    ly = 50 + n_rows * (h + gap)
    for i, name in enumerate(impls):
        y = ly + 20 * i
        c = colors[name]
        out.append(
            f'<line x1="{gap}" x2="{gap + 30}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="2"/>'
        )
        out.append(
            f'<text x="{gap + 36}" y="{y + 4}" font-size="11">{_esc(name)} '
            "(solid: vk, dashed: kv)</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _copy_spread(copy: dict) -> str:
    if "start_GBps" not in copy:
        return ""
    return f"; start {copy['start_GBps']:.0f}, end {copy['end_GBps']:.0f}: the faster"


def render_md(report: dict) -> str:
    dev, ver, copy = report["device"], report["versions"], report.get("copy_bandwidth") or {}
    lines = [
        "# gdn-harness bench",
        "",
        f"- card: **{dev.get('name')}** ({dev.get('kind')}); "
        f"L2 {dev.get('l2_bytes', 0) / 2**20:.0f} MiB",
        f"- versions: python {ver['python']}, torch {ver['torch']}, triton {ver['triton']}, "
        f"cuda {ver.get('cuda')}",
        f"- created {report['created']}{' (DRY RUN: not a measurement)' if report['dry'] else ''}",
    ]
    if copy:
        lines.append(
            f"- copy bandwidth (floor denominator): {copy['GBps']:.0f} GB/s "
            f"({copy['bytes_copied'] / 2**30:.2f} GiB copied, median of {copy['reps']}"
            + _copy_spread(copy)
            + ")"
        )
    order = report["config"].get("slot_order", "permuted")
    if order != "permuted":
        lines.append(f"- slot order: {order}: {SLOT_ORDERS[order]}")
    lines += [
        "- compare only numbers from one run (one JSON): the floor is this card's copy "
        "bandwidth in this run",
        "",
    ]
    if report.get("rows"):
        lines += [
            "## Decode step: time per call ("
            + ("eager wall clock, DRY RUN" if report["dry"] else "CUDA-graph replay, median")
            + ", rotated input sets)",
            "",
            md_table(MAIN_COLUMNS, main_table_rows(report["rows"])),
            "",
        ]
    rec = report.get("recurrent")
    if rec:
        lines += [
            "## Recurrent kernel alone: baseline_recurrent vs FLA",
            "",
            f"FLA: {rec['fla']}. {rec['note']}",
            "",
        ]
        if rec["rows"]:
            lines += [md_table(RECURRENT_COLUMNS, recurrent_table_rows(rec["rows"])), ""]
    cost = report.get("harness_cost")
    if cost:
        lines += [
            "## The harness's own cost",
            "",
            *(f"- {x}" for x in harness_cost_lines(cost)),
            "",
        ]
    n, passed, misses = target_summary(report)
    lines += ["## Targets", "", f"{passed} of {n} passed.", "", *(f"- MISS {m}" for m in misses)]
    return "\n".join(lines) + "\n"


def console_report(report: dict, out_dir: Path) -> str:
    """The tail of the output: recurrent table, harness cost, then the main table and a footer."""
    parts = []
    rec = report.get("recurrent")
    if rec:
        parts.append(f"== recurrent kernel alone (FLA: {rec['fla']}) ==")
        if rec["rows"]:
            parts.append(text_table(RECURRENT_COLUMNS, recurrent_table_rows(rec["rows"])))
    cost = report.get("harness_cost")
    if cost:
        parts += ["== harness cost ==", *harness_cost_lines(cost)]
    if report.get("rows"):
        how = "eager wall clock (DRY RUN)" if report["dry"] else "CUDA-graph replay, median"
        parts.append(f"== decode step: time per call, {how} ==")
        parts.append(text_table(MAIN_COLUMNS, main_table_rows(report["rows"])))
    dev, copy = report["device"], report.get("copy_bandwidth") or {}
    n, passed, misses = target_summary(report)
    footer = [
        f"card: {dev.get('name')} | torch {report['versions']['torch']} | triton "
        f"{report['versions']['triton']}"
        + (f" | copy {copy['GBps']:.0f} GB/s{_copy_spread(copy)}" if copy else "")
        + (" | DRY RUN (not a measurement)" if report["dry"] else ""),
        f"targets: {passed}/{n} passed" + (f"; {len(misses)} missed" if misses else ""),
        f"checks failed: {report['failed_checks']} | report: {out_dir}",
    ]
    return "\n".join([*parts, *footer])


# --- the command -----------------------------------------------------------------


def _versions() -> dict:
    import triton

    fla = sys.modules.get("fla")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "numpy": np.__version__,
        "fla": getattr(fla, "__version__", None) if fla else None,
    }


def _device_info(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"kind": "cpu", "name": platform.processor() or platform.machine(), "l2_bytes": 0}
    p = torch.cuda.get_device_properties(device)
    return {
        "kind": "cuda",
        "name": torch.cuda.get_device_name(device),
        "l2_bytes": _l2_bytes(device),
        "sm_count": p.multi_processor_count,
        "total_memory": p.total_memory,
        "capability": f"{p.major}.{p.minor}",
    }


def run_bench(cfg: BenchConfig, out_dir: Path) -> dict:
    """Run every section the config asks for; write bench.json/md/svg; return the report."""
    import kernels  # noqa: F401  (sets TRITON_INTERPRET on CPU before any kernel loads)
    from harness.impls.registry import load_implementation

    device = torch.device(cfg.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # Triton launches on the current device
    specs = list(dict.fromkeys(["packed", "baseline", *cfg.impls]))
    impls = [load_implementation(s) for s in specs]  # a bad spec fails before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dry": cfg.dry,
        "device": _device_info(device),
        "config": {**asdict(cfg), "shapes": [s.label for s in cfg.shapes], "impls": specs},
        "method": {
            "timing": "one CUDA graph of R calls (one per input set), median of the replays / R"
            if device.type == "cuda"
            else "dry: eager calls, wall clock",
            "input_sets": f"auto: enough that R x footprint >= {L2_FACTOR:g} x L2 "
            f"({MIN_SETS}..{MAX_SETS}, within {SET_MEMORY_FRACTION:.0%} of free memory); "
            + f"{PAD_FREE_NOTE}, {SLOT_ORDERS[cfg.slot_order]}",
            "floor": "state read + written once, q/k/v/a/b/A_log/dt_bias/indices read, out "
            "written; divided by the copy bandwidth of this card in this run",
            "check": f"before timing: set 0, {cfg.check_rows} sampled rows vs the float64 oracle "
            "under harness.check.tolerance; every output row must be written",
        },
        "failed_checks": 0,
        "partial": True,
    }
    with torch.no_grad():
        _log(f"bench on {report['device']['name']} ({device}); impls: {', '.join(specs)}")
        copy_bytes = DRY_COPY_BYTES if cfg.dry else COPY_BYTES
        report["copy_bandwidth"] = first_copy = measure_copy_bandwidth(device, copy_bytes)
        copy_GBps = first_copy["GBps"]
        _release(device)
        _log(
            f"copy bandwidth: {copy_GBps:.0f} GB/s"
            + (" (measured again at the end)" if cfg.main else "")
        )
        if cfg.main:
            rows = report["rows"] = []
            for shape in cfg.shapes:
                for layout in cfg.layouts:
                    for B in cfg.batches:
                        case_rows = bench_case(cfg, impls, shape, layout, B, device, copy_GBps)
                        rows += case_rows
                        _log("  " + " | ".join(_progress(r) for r in case_rows))
                        report["failed_checks"] = sum(
                            r["status"] != "ok" for r in rows if r["status"] != "skipped"
                        )
                        _write_json(report, out_dir)
        if cfg.recurrent:
            fla, fla_desc = load_fla()
            rec: dict[str, Any] = {"fla": fla_desc, "note": FLA_STATE_NOTE, "rows": []}
            if fla is not None:
                sig = inspect.signature(fla).parameters
                rec["fla_has_state_indices"] = "ssm_state_indices" in sig
            report["recurrent"] = rec
            for shape in cfg.shapes:
                for layout in cfg.layouts:
                    for B in cfg.batches:
                        r = bench_recurrent_case(cfg, fla, shape, layout, B, device)
                        rec["rows"].append(r)
                        _write_json(report, out_dir)
                        _log(
                            f"  recurrent {shape.label} {layout} B={B}: baseline "
                            f"{_fmt(r.get('baseline_us'))} us, fla {_fmt(r.get('fla_us'))} us"
                        )
        if cfg.main:
            last_copy = measure_copy_bandwidth(device, copy_bytes)
            _release(device)
            report["copy_bandwidth"] = best_copy(first_copy, last_copy)
            refloor(report["rows"], report["copy_bandwidth"]["GBps"])
            _write_json(report, out_dir)
        if cfg.harness_cost:
            cost: dict[str, Any] = {}
            try:
                cost["runner"] = runner_overhead(device, cfg.dry)
            except Exception as exc:
                cost["runner_error"] = f"{type(exc).__name__}: {exc}"
            _log("timing the per-element check on the largest nightly shape (CPU) ...")
            try:
                shape = DRY_ORACLE_SHAPE if cfg.dry else ORACLE_SHAPE
                cost["oracle"] = oracle_cost(shape, cfg.oracle_rows, cfg.seed)
            except Exception as exc:
                cost["oracle_error"] = f"{type(exc).__name__}: {exc}"
            report["harness_cost"] = cost
    report.pop("partial", None)
    _write_json(report, out_dir)
    (out_dir / "bench.md").write_text(render_md(report))
    (out_dir / "bench.svg").write_text(render_svg(report))
    return report


def _write_json(report: dict, out_dir: Path) -> None:
    """(Re)write bench.json; called after every case too, so a run killed by a time
    limit still leaves what it measured (marked ``"partial": true``)."""
    report["versions"] = _versions()
    n, passed, misses = target_summary(report)
    report["targets"] = {"evaluated": n, "passed": passed, "missed": misses}
    text = json.dumps(strict_json(report), indent=1, default=str, allow_nan=False)
    (out_dir / "bench.json").write_text(text + "\n")


def strict_json(x: Any) -> Any:
    """``x`` with NaN and infinities as strings, so bench.json is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return x


def _progress(r: dict) -> str:
    s = f"{r['shape']} {r['layout']} B={r['B']} {r['impl']}: "
    if "time_us" in r:
        return s + f"{r['time_us']:.2f} us ({r['pct_floor']:.0f}% floor)"
    return s + f"{r['status']} {r['detail'][:120]}"


def cmd_bench(args: argparse.Namespace) -> int:
    """Entry point of ``gdn-harness bench``; exit 1 when a correctness check failed."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda") and not args.dry:
        print(
            "error: bench times CUDA graphs and needs a CUDA device; --dry runs a CPU smoke test",
            file=sys.stderr,
        )
        return 2
    cfg = BenchConfig(
        impls=args.impl or [],
        shapes=args.shapes or parse_shapes(DRY_SHAPES if args.dry else DEFAULT_SHAPES),
        batches=args.batches or parse_ints(DRY_BATCHES if args.dry else DEFAULT_BATCHES),
        layouts=args.layouts,
        act_dtype=args.act_dtype,
        state_dtype=args.state_dtype,
        replays=args.replays if args.replays is not None else (1 if args.dry else DEFAULT_REPLAYS),
        input_sets=args.input_sets if args.input_sets is not None else (2 if args.dry else None),
        check=not args.no_check,
        check_rows=args.check_rows
        if args.check_rows is not None
        else (4 if args.dry else DEFAULT_CHECK_ROWS),
        dry=args.dry,
        device=device,
        recurrent=not args.no_recurrent,
        main=not args.recurrent_only,
        harness_cost=not (args.no_harness_cost or args.recurrent_only),
        oracle_rows=args.oracle_rows,
        slot_order=args.slot_order,
    )
    out_dir = Path(args.out) if args.out else Path("reports") / time.strftime("bench-%Y%m%d-%H%M%S")
    report = run_bench(cfg, out_dir)
    print(console_report(report, out_dir), flush=True)
    if report["failed_checks"]:
        return 1
    if args.fail_on_miss and report["targets"]["missed"]:
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add ``bench`` to the ``gdn-harness`` command (called by harness.cli)."""
    p = subparsers.add_parser(
        "bench",
        help="time packed vs baseline (and --impl) under CUDA-graph replay; table, JSON, plot",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    p.add_argument(
        "--impl",
        action="append",
        metavar="IMPL",
        help="impl name of an extra implementation beside packed and baseline (repeatable)",
    )
    p.add_argument(
        "--shapes",
        type=parse_shapes,
        metavar="H/HV[,...]",
        help=f"H/HV or H/HV/K/V items (default {DEFAULT_SHAPES}, K = V = 128)",
    )
    p.add_argument(
        "--batches",
        type=parse_ints,
        metavar="B[,...]",
        help=f"batch sizes (default {DEFAULT_BATCHES})",
    )
    p.add_argument(
        "--layouts",
        type=parse_layouts,
        default=parse_layouts(DEFAULT_LAYOUTS),
        help="state layouts (default vk,kv)",
    )
    for flag, dtypes, default in (("--state", STATE_DTYPES, "fp32"), ("--act", ACT_DTYPES, "bf16")):
        what = f"{flag[2:]} dtype of the timed steps (default {default})"
        p.add_argument(f"{flag}-dtype", choices=list(dtypes), default=default, help=what)
    p.add_argument(
        "--replays",
        type=int,
        metavar="N",
        help=f"timed graph replays per implementation and case (default {DEFAULT_REPLAYS})",
    )
    p.add_argument(
        "--input-sets",
        type=int,
        metavar="N",
        help=f"input sets rotated in one graph (default: auto, >= {L2_FACTOR:g}x L2)",
    )
    p.add_argument(
        "--check-rows",
        type=int,
        metavar="N",
        help=f"rows checked against the oracle before timing (default {DEFAULT_CHECK_ROWS})",
    )
    p.add_argument("--no-check", action="store_true", help="time without the correctness check")
    p.add_argument(
        "--recurrent-only",
        action="store_true",
        help="only baseline_recurrent vs FLA's recurrent kernel",
    )
    p.add_argument("--no-recurrent", action="store_true", help="skip the recurrent section")
    p.add_argument(
        "--no-harness-cost", action="store_true", help="skip timing the oracle and the runner"
    )
    p.add_argument(
        "--oracle-rows",
        type=int,
        metavar="N",
        help="rows of the B=1024 oracle timing (default all; fewer are scaled)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="report folder (default reports/bench-<timestamp>/)"
    )
    p.add_argument("--device", help="cuda (default when present) or cpu (with --dry)")
    p.add_argument(
        "--dry",
        action="store_true",
        help="smoke run: tiny shapes, 1 replay, no CUDA graphs (CPU: interpreter)",
    )
    p.add_argument(
        "--slot-order",
        choices=list(SLOT_ORDERS),
        default="permuted",
        help="state slots of each input set: permuted (default, as in serving) or identity",
    )
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.bench.command [options]``: the same command without harness.cli.

    Useful on a GPU box that has torch, triton and numpy but not the CLI's other
    dependencies (pyyaml, jsonschema, hypothesis), which the bench does not need.
    """
    from harness.impls.registry import ImplError

    parser = argparse.ArgumentParser(prog="python -m harness.bench.command")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except ImplError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
