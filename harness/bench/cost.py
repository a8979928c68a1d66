"""The harness's own cost, so the nightly budget can be planned.

Two measurements. The per-element check of one step on the largest nightly
shape (the float64 oracle, the bounds and the comparisons), once per check
device (``harness.check.device``): on the CPU, over the check workers, and
on the GPU through CuPy where CUDA and CuPy are present; without them the
CPU's column stands alone, with the reason beside it. Then the runner's
fixed cost per case (``run_case`` on a small case, minus the kernel time
inside it).

On the CPU the workers are started by an untimed check of a few rows, then
one call is timed (its rows may be fewer than the batch: ``--oracle-rows``,
scaled linearly). On the GPU the whole batch is checked, each call timed
between device synchronisations; the first call, which compiles CuPy's
kernels, is reported apart from the median of the calls after it. The
step's sources are put where the check runs before any timing, as a run's
results already are (the runner copies its blocks from device tensors).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from harness.bench.rows import CheckCost, HarnessCost, RunnerCost
from harness.bench.timing import time_calls
from harness.check import device as check_device
from harness.check import pool as check_pool
from harness.check import step as step_check
from harness.check.device import ArrayDevice
from harness.check.tolerance import resolve
from harness.core.host import to_f64
from harness.core.layouts import KV
from harness.core.spec import CaseSpec, LayoutSpec, SlotSpec
from harness.impls.registry import load_implementation
from harness.inputs import build_inputs
from harness.run.runner import run_case
from reference.namespace import array_namespace
from reference.oracle import decode_rows

ORACLE_SHAPE = {"B": 1024, "H": 16, "HV": 64, "K": 128, "V": 128}  # largest nightly shape
DRY_ORACLE_SHAPE = {"B": 4, "H": 1, "HV": 2, "K": 16, "V": 16}
RUNNER_CASE = {"B": 8, "H": 2, "HV": 4, "K": 128, "V": 128}  # a small GPU case
DRY_RUNNER_CASE = {"B": 2, "H": 1, "HV": 2, "K": 16, "V": 16}
ORACLE_DISTINCT_ROWS = 4  # rows with values of their own; the others repeat them
WARMUP_ROWS = 16  # the CPU's untimed first check, which starts the workers
DEVICE_REPS = 3  # GPU checks timed after the first
CHECK_WHAT = (
    "one step's per-element check (harness.check.step): oracle with magnitudes, bounds, "
    "two implementations and their pair compared, block copies included"
)


def _cost_spec(name: str, dims: dict[str, int], pool: int, **fields) -> CaseSpec:
    return CaseSpec(file="bench", name=name, line=0, pool=pool, **dims, **fields)


def check_sources(shape: dict[str, int], seed: int = 0):
    """A few rows of a step built by the harness (values do not change the cost),
    and the oracle's own results for them, which the timed implementations
    return, so the passing path is the one timed: (context, activations,
    arrays ``pre``/``out``/``state`` float32, rows)."""
    H, K = shape["H"], shape["K"]
    n = min(shape["B"], ORACLE_DISTINCT_ROWS)
    spec = _cost_spec(
        "oracle-cost", {**shape, "B": n}, n, seed=seed, layout=LayoutSpec(state_layout=KV)
    )
    x = build_inputs(spec)  # the kv pool is [n, HV, K, V], as the oracle holds it
    acts = tuple(to_f64(t) for t in (x.mixed_qkv, x.a, x.b, x.A_log, x.dt_bias))
    S = to_f64(x.state)
    ref = decode_rows(*acts, S, H=H, scale=spec.effective_scale)
    arrays = {
        "pre": S.astype(np.float32),  # exact: the pool is fp32
        "out": ref.out.astype(np.float32),
        "state": ref.state.astype(np.float32),
    }
    tol = {q: resolve(spec.tol_out, dt, K) for q, dt in (("out", "bf16"), ("state", "fp32"))}
    ctx = step_check.StepContext(H, spec.effective_scale, True, tol["out"], tol["state"], 0)
    return ctx, acts, arrays, n


def block_maker(acts: tuple, arrays: dict[str, Any], n: int, device: ArrayDevice | None):
    """``make_block`` for ``check_blocks``: batch row ``r`` repeats source row
    ``r % n``, gathered where the check runs (from device arrays on a GPU)."""
    if device is not None:  # the sources once on the device: blocks gather there
        with device.activate():
            arrays = {k: device.put(v) for k, v in arrays.items()}
            acts = tuple(device.put(x) for x in acts)
    qkv, a, b, A_log, dt_bias = acts

    def make_block(chunk: np.ndarray, new_array) -> step_check.Block:
        idx = chunk % n
        at = idx if device is None else device.put(idx)

        def gather(name: str):
            src = arrays[name]
            xp = array_namespace(src)
            dst = new_array((chunk.size, *src.shape[1:]))
            if step_check.row_run(chunk) is None:
                xp.take(src, at, axis=0, out=dst)
                return dst
            # a run: row i repeats row i - n, so past the first n rows each
            # contiguous copy doubles what is there (n, 2n, 4n, ... rows)
            done = min(n, chunk.size)
            xp.take(src, at[:done], axis=0, out=dst[:done])
            while done < chunk.size:
                more = min(done, chunk.size - done)
                dst[done : done + more] = dst[:more]
                done += more
            return dst

        block = step_check.Block((qkv[at], a[at], b[at], A_log, dt_bias), chunk, chunk,
                                 gather("pre"))  # fmt: skip
        block.tested = [(gather("out"), gather("state")) for _ in range(2)]
        return block

    return make_block


def _timed(call: Callable[[], list], sync: Callable[[], None]) -> float:
    """Seconds of one check between synchronisations; raises if it did not pass."""
    sync()
    t0 = time.perf_counter()
    stats = call()
    sync()
    seconds = time.perf_counter() - t0
    if not all(s.ok for s in stats):
        raise RuntimeError("the timed check failed on the oracle's own results")
    return seconds


def check_cost(
    shape: dict[str, int],
    rows: int | None = None,
    seed: int = 0,
    device: ArrayDevice | None = None,
    reps: int = DEVICE_REPS,
) -> CheckCost:
    """Time the per-element check of one step as the runner does it, on the CPU
    (``device`` None: ``rows`` rows, default all) or on ``device`` (every row;
    the first call apart, then the median of ``reps``)."""
    B, HV, K, V = (shape[k] for k in ("B", "HV", "K", "V"))
    ctx, acts, arrays, n = check_sources(shape, seed)
    dims = (HV, K, V)
    make_block = block_maker(acts, arrays, n, device)
    if device is None:
        rows = B if rows is None else min(rows, B)

        def run(count: int) -> list:
            return check_pool.check_blocks(ctx, count, 2, dims, make_block, device="cpu")

        run(min(rows, WARMUP_ROWS))  # starts the check workers, if the step uses them
        seconds, first, times = _timed(lambda: run(rows), lambda: None), None, None
        pooled = rows * HV * K * V >= check_pool.POOL_MIN_ELEMS
        workers = check_pool.default_workers() if pooled else 1
    else:
        rows, workers = B, None
        if B * HV * K * V < check_device.DEVICE_MIN_ELEMS:
            raise ValueError(
                f"a step of {B * HV * K * V} state elements is below DEVICE_MIN_ELEMS "
                f"({check_device.DEVICE_MIN_ELEMS}): check_blocks keeps it on the host"
            )

        def run_all() -> list:
            return check_pool.check_blocks(ctx, B, 2, dims, make_block, device=device)

        first = _timed(run_all, device.synchronize)
        times = [_timed(run_all, device.synchronize) for _ in range(max(1, reps))]
        seconds = statistics.median(times)
    return CheckCost(
        check_device="cpu" if device is None else device.name,
        shape=dict(shape),
        rows_timed=rows,
        seconds=seconds,
        seconds_full_batch=seconds * B / rows,
        ns_per_state_element=seconds / (rows * HV * K * V) * 1e9,
        extrapolated=rows < B,
        workers=workers,
        reps=1 if times is None else len(times),
        first_call_seconds=first,
    )


def cuda_check_device(run_device: torch.device) -> tuple[ArrayDevice | None, str | None]:
    """The GPU check device for a run on ``run_device``, or None and why there is none."""
    try:
        name = check_device.resolve_check_device("cuda", str(run_device))
        return check_device.device_for(name), None
    except (RuntimeError, ValueError, ImportError) as exc:
        return None, str(exc)


def runner_overhead(device: torch.device, dry: bool, reps: int = 5) -> RunnerCost:
    """Wall time of ``run_case`` on a small case minus the kernel time inside it.

    ``run_case`` calls each of packed and baseline twice (the call and the
    determinism twin); the kernel time is those four calls' graph-replayed
    (or, dry, wall) time, so the rest is the harness's own cost per case.
    """
    dims = DRY_RUNNER_CASE if dry else RUNNER_CASE
    tier = "gpu" if device.type == "cuda" else "cpu"
    spec = _cost_spec(
        "runner-overhead", dims, 2 * dims["B"], tier=tier, slots=SlotSpec(order="permutation")
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
        inputs = build_inputs(spec, device)
        call = functools.partial(fn, *inputs.args(), **inputs.kwargs())
        t = time_calls([call], device, 1 if dry else 20, use_graph=device.type == "cuda")
        kernel_us += 2 * t.median_us
    wall_ms = statistics.median(walls) * 1e3
    return RunnerCost(
        case={k: getattr(spec, k) for k in ("B", "H", "HV", "K", "V", "pool")},
        status=status,
        wall_ms=wall_ms,
        kernel_ms=kernel_us / 1e3,
        overhead_ms=wall_ms - kernel_us / 1e3,
        reps=len(walls),
    )


def harness_cost(
    device: torch.device, dry: bool, oracle_rows: int | None, seed: int
) -> HarnessCost:
    """Every measurement, each replaced by why it failed if it did."""
    cost = HarnessCost(check_what=CHECK_WHAT)
    try:
        cost.runner = runner_overhead(device, dry)
    except Exception as exc:
        cost.runner_error = f"{type(exc).__name__}: {exc}"
    shape = DRY_ORACLE_SHAPE if dry else ORACLE_SHAPE
    gpu, why = cuda_check_device(device)
    targets: list[tuple[str, ArrayDevice | None]] = [("cpu", None)]
    if gpu is None:
        cost.check_notes["cuda"] = f"not measured: {why}"
    else:
        targets.append((gpu.name, gpu))
    for name, target in targets:
        print(f"timing the per-element check on the largest nightly shape ({name}) ...",
              flush=True)  # fmt: skip
        try:
            cost.checks.append(check_cost(shape, oracle_rows, seed, target))
        except Exception as exc:
            cost.check_notes[name] = f"{type(exc).__name__}: {exc}"
    return cost
