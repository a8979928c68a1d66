"""The harness's own cost, so the nightly budget can be planned.

Two numbers: the per-element check of one step on the largest nightly shape
(the oracle, the bounds and the comparisons, on the CPU), and the runner's
fixed cost per case (``run_case`` on a small case, minus the kernel time
inside it).
"""

from __future__ import annotations

import functools
import statistics
import time

import numpy as np
import torch

from harness.bench.rows import HarnessCost, OracleCost, RunnerCost
from harness.bench.timing import time_calls
from harness.check import pool as check_pool
from harness.check import step as step_check
from harness.check.tolerance import resolve
from harness.core.host import to_f64
from harness.core.layouts import KV
from harness.core.spec import CaseSpec, LayoutSpec, SlotSpec
from harness.impls.registry import load_implementation
from harness.inputs import build_inputs
from harness.run.runner import run_case
from reference.oracle import decode_rows

ORACLE_SHAPE = {"B": 1024, "H": 16, "HV": 64, "K": 128, "V": 128}  # largest nightly shape
DRY_ORACLE_SHAPE = {"B": 4, "H": 1, "HV": 2, "K": 16, "V": 16}
RUNNER_CASE = {"B": 8, "H": 2, "HV": 4, "K": 128, "V": 128}  # a small GPU case
DRY_RUNNER_CASE = {"B": 2, "H": 1, "HV": 2, "K": 16, "V": 16}
ORACLE_DISTINCT_ROWS = 4  # rows with values of their own; the others repeat them


def _cost_spec(name: str, dims: dict[str, int], pool: int, **fields) -> CaseSpec:
    return CaseSpec(file="bench", name=name, line=0, pool=pool, **dims, **fields)


def oracle_cost(shape: dict[str, int], rows: int | None, seed: int = 0) -> OracleCost:
    """Time the per-element check of one step as the runner does it, on the
    largest nightly shape: the oracle, the bounds, two implementations and
    their pair compared, over the check workers when the step is big.

    ``rows`` rows are timed (default all ``B``); their values repeat a few
    rows' worth built by the harness (values do not change the cost), and the
    implementations' results are the oracle's own, so the passing path is
    the one timed.
    """
    B, H, HV, K, V = (shape[k] for k in ("B", "H", "HV", "K", "V"))
    rows = B if rows is None else min(rows, B)
    n = min(rows, ORACLE_DISTINCT_ROWS)
    spec = _cost_spec(
        "oracle-cost", {**shape, "B": n}, n, seed=seed, layout=LayoutSpec(state_layout=KV)
    )
    x = build_inputs(spec)  # the kv pool is [n, HV, K, V], as the oracle holds it
    acts = tuple(to_f64(t) for t in (x.mixed_qkv, x.a, x.b, x.A_log, x.dt_bias))
    S = to_f64(x.state)
    ref = decode_rows(*acts, S, H=H, scale=spec.effective_scale)
    out, state = ref.out.astype(np.float32), ref.state.astype(np.float32)
    qkv, a, b, A_log, dt_bias = acts

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

    tol = {q: resolve(spec.tol_out, dt, K) for q, dt in (("out", "bf16"), ("state", "fp32"))}
    ctx = step_check.StepContext(H, spec.effective_scale, True, tol["out"], tol["state"], 0)
    t0 = time.perf_counter()
    stats = check_pool.check_blocks(ctx, rows, 2, (HV, K, V), make_block)
    seconds = time.perf_counter() - t0
    if not all(s.ok for s in stats):
        raise RuntimeError("the timed check failed on the oracle's own results")
    elems = rows * HV * K * V
    return OracleCost(
        shape=dict(shape),
        rows_timed=rows,
        workers=check_pool.default_workers() if elems >= check_pool.POOL_MIN_ELEMS else 1,
        seconds=seconds,
        seconds_full_batch=seconds * B / rows,
        ns_per_state_element=seconds / elems * 1e9,
        extrapolated=rows < B,
        what="one step's per-element check (harness.check.step): oracle with magnitudes, "
        "bounds, two implementations and their pair compared, host copies included",
    )


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
    """Both measurements, each replaced by why it failed if it did."""
    cost = HarnessCost()
    try:
        cost.runner = runner_overhead(device, dry)
    except Exception as exc:
        cost.runner_error = f"{type(exc).__name__}: {exc}"
    print("timing the per-element check on the largest nightly shape (CPU) ...", flush=True)
    try:
        cost.oracle = oracle_cost(DRY_ORACLE_SHAPE if dry else ORACLE_SHAPE, oracle_rows, seed)
    except Exception as exc:
        cost.oracle_error = f"{type(exc).__name__}: {exc}"
    return cost
