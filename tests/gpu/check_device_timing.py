"""Part ``timing`` of check_device_validation.py: the check of one step on
each device, and where the GPU's time goes.

The timed step repeats four rows' values (values do not change the cost);
the implementations' results are the oracle's own, so the passing path is
timed, and the rows are gathered where the check runs (on the GPU from
device arrays), as the runner copies its blocks.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.bench.cost import block_maker
from harness.check import device as dev
from harness.check import pool as check_pool
from harness.check.device import ArrayDevice
from harness.check.step import Block, StepContext
from harness.check.tolerance import resolve
from harness.core.spec import Tolerance
from reference.oracle import decode_rows

if TYPE_CHECKING:
    from check_device_validation import Env, Report

TARGET_S = 0.1  # the GPU check of one big step
WIDTHS = (6, 12, 11, 16, 11, 9, 11, 11, 8)  # the timing table's columns
BIG = {"B": 1024, "H": 16, "HV": 64, "K": 128, "V": 128}
STAND_IN_BIG = {"B": 12, "H": 2, "HV": 4, "K": 32, "V": 32}


@contextlib.contextmanager
def device_min_elems(n: int):
    """Steps of ``n`` state elements and more checked on the device (0: all)."""
    saved = dev.DEVICE_MIN_ELEMS
    dev.DEVICE_MIN_ELEMS = n
    try:
        yield
    finally:
        dev.DEVICE_MIN_ELEMS = saved


def timing_sources(shape: dict, seed: int = 0):
    """Four rows of a step (values do not change the cost) and the oracle's
    results for them, which the timed implementations return (the passing path)."""
    H, HV, K, V = (shape[k] for k in ("H", "HV", "K", "V"))
    rng = np.random.default_rng(seed)
    n = 4
    qkv = rng.standard_normal((n, 2 * H * K + HV * V)).astype(np.float32).astype(np.float64)
    a, b = rng.standard_normal((n, HV)), rng.standard_normal((n, HV))
    A_log, dt_bias = rng.uniform(-1, 1, HV), rng.standard_normal(HV)
    S = rng.standard_normal((n, HV, K, V), dtype=np.float32)
    ref = decode_rows(qkv, a, b, A_log, dt_bias, S, H=H, scale=K**-0.5)
    tols = resolve(Tolerance(), "bf16", K), resolve(Tolerance(), "fp32", K)
    ctx = StepContext(H, K**-0.5, True, *tols, 0)
    arrays = {"pre": S, "out": ref.out.astype(np.float32), "state": ref.state.astype(np.float32)}
    return ctx, (qkv, a, b, A_log, dt_bias), arrays


def timing_maker(acts, arrays: dict, device: ArrayDevice | None):
    """make_block gathering rows ``chunk % 4`` from sources where the check
    runs: the bench's own (harness.bench.cost.block_maker)."""
    return block_maker(acts, arrays, 4, device)


def timed(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> float:
    sync()
    t0 = time.perf_counter()
    result = fn()
    sync()
    seconds = time.perf_counter() - t0
    if isinstance(result, list) and not all(s.ok for s in result):
        raise RuntimeError("the timed check failed on the oracle's own results")
    return seconds


def timing_case(env: Env, shape: dict, cpu_rows: int, reps: int) -> dict:
    B, HV, K, V = (shape[k] for k in ("B", "HV", "K", "V"))
    ctx, acts, arrays = timing_sources(shape)
    dims = (HV, K, V)
    cpu_rows = min(cpu_rows, B)
    host = timing_maker(acts, arrays, None)
    check_pool.check_blocks(ctx, min(cpu_rows, 16), 2, dims, host)  # starts the check workers
    t_cpu = timed(lambda: check_pool.check_blocks(ctx, cpu_rows, 2, dims, host, device="cpu"))
    on_dev = timing_maker(acts, arrays, env.device)

    def run(rows: int):
        return check_pool.check_blocks(ctx, rows, 2, dims, on_dev, device=env.device)

    with device_min_elems(0):
        cold = timed(lambda: run(min(B, 8)), env.device.synchronize)  # kernels compile here
        warm = [timed(lambda: run(B), env.device.synchronize) for _ in range(reps)]
        saved = dev.RELEASE_AFTER_CHECK
        dev.RELEASE_AFTER_CHECK = False
        try:
            run(B)
            kept = [timed(lambda: run(B), env.device.synchronize) for _ in range(reps)]
        finally:
            dev.RELEASE_AFTER_CHECK = saved
            with env.device.activate():
                env.device.release()
    with env.device.activate():
        rows_per_block, piece_bytes = dev.sizes(env.device, 2, dims)
    elems = B * HV * K * V
    pooled = cpu_rows * HV * K * V >= check_pool.POOL_MIN_ELEMS
    workers = check_pool.default_workers() if pooled else 1
    cpu_step = t_cpu * B / cpu_rows
    gpu_step = statistics.median(warm)
    rec = {
        "shape": shape,
        "state_elements": elems,
        "cpu_rows_timed": cpu_rows,
        "cpu_workers": workers,
        "cpu_seconds_per_step": cpu_step,
        "gpu_seconds_per_step": gpu_step,
        "gpu_seconds_all": warm,
        "gpu_seconds_cache_kept": kept,
        "gpu_first_call_seconds": cold,
        "gpu_rows_per_block": rows_per_block,
        "gpu_piece_bytes": piece_bytes,
        "speedup": cpu_step / gpu_step if gpu_step > 0 else float("inf"),
    }
    return rec


def breakdown(env: Env, shape: dict) -> dict:
    """Where the GPU's time goes in one block of the big step: the block's
    copies, the oracle with magnitudes, the state bound, the whole check."""
    HV, K, V = (shape[k] for k in ("HV", "K", "V"))
    ctx, acts, arrays = timing_sources(shape)
    make = timing_maker(acts, arrays, env.device)
    with env.device.activate(), device_min_elems(0):
        rows_per_block, piece_bytes = dev.sizes(env.device, 2, (HV, K, V))
        rows = np.arange(min(shape["B"], rows_per_block))
        sync = env.device.synchronize
        out = {"block copies": timed(lambda: make(rows, env.device.empty), sync)}
        out |= _block_parts(
            ctx, dev.on_device(make(rows, env.device.empty), env.device), piece_bytes, sync
        )
        env.device.release()
    return {f"{name} ({rows.size} rows)": seconds for name, seconds in out.items()}


def _block_parts(ctx: StepContext, block: Block, piece_bytes: int, sync) -> dict[str, float]:
    from harness.check.step import _piece_by_cells, block_stats, new_stats, pieces

    R, HV, K, V = block.pre.shape
    spent = {"oracle": 0.0, "cells": 0.0}

    def oracle_then_cells() -> None:
        for r, h in pieces(R, HV, K, V, piece_bytes):
            acts = [x[r] for x in block.acts[:3]] + list(block.acts[3:])
            sync()
            t0 = time.perf_counter()
            ref = decode_rows(
                *acts, block.pre[r, h], H=ctx.H, scale=ctx.scale, with_magnitude=True, heads=h
            )
            sync()
            t1 = time.perf_counter()
            _piece_by_cells(ctx, block, (r, h), ref, new_stats(ctx, len(block.tested)))()
            sync()
            spent["oracle"] += t1 - t0
            spent["cells"] += time.perf_counter() - t1

    oracle_then_cells()
    return {
        "oracle with magnitudes": spent["oracle"],
        "cell statistics (one pass per quantity)": spent["cells"],
        "whole check": timed(lambda: block_stats(ctx, block, piece_bytes=piece_bytes), sync),
    }


def part_timing(env: Env, args, rep: Report) -> None:
    big = STAND_IN_BIG if env.stand_in else BIG
    mid = {"B": 64, "H": 4, "HV": 16, "K": 128, "V": 128}
    small = {"B": 8, "H": 2, "HV": 4, "K": 32, "V": 32}
    table = []

    def case(label: str, shape: dict, cpu_rows: int, reps: int) -> Callable[[], dict]:
        def run() -> dict:
            rec = timing_case(env, shape, cpu_rows, reps)
            table.append((label, rec))
            notes = []  # a speed, not a verdict: the exit status stays about correctness
            if label == "big" and not env.stand_in and rec["gpu_seconds_per_step"] > TARGET_S:
                notes.append(f"GPU check {rec['gpu_seconds_per_step']:.3f} s > target {TARGET_S} s")
            summary = (
                f"cpu {rec['cpu_seconds_per_step']:.3g} s/step, "
                f"gpu {rec['gpu_seconds_per_step']:.3g} s/step (x{rec['speedup']:.0f})"
            )
            return {**rec, "notes": notes, "summary": summary}

        return run

    shapes = [("small", small, small["B"], 5)]
    shapes += [] if env.stand_in else [("mid", mid, mid["B"], 3)]
    shapes.append(("big", big, 32 if args.quick else 128, 3))
    for label, shape, cpu_rows, reps in shapes:
        dims = " ".join(f"{k}={v}" for k, v in shape.items())
        rep.case("timing", f"{label}: {dims}", case(label, shape, cpu_rows, reps))
    rep.case("timing", "GPU breakdown of the big step", lambda: {"seconds": breakdown(env, big)})
    print_table(table, (rep.results.get("timing") or [{}])[-1].get("seconds", {}))


def print_table(table: list, parts: dict) -> None:
    if not table:
        return
    print()
    heads = ("step", "state elems", "cpu s/step", "(rows, workers)", "gpu s/step", "gpu min")
    heads += ("cache kept", "first call", "speedup")
    print(" ".join(f"{h:>{w}s}" for h, w in zip(heads, WIDTHS, strict=True)))
    for label, r in table:
        cells = (
            label,
            str(r["state_elements"]),
            f"{r['cpu_seconds_per_step']:.4f}",
            f"({r['cpu_rows_timed']}, {r['cpu_workers']})",
            f"{r['gpu_seconds_per_step']:.4f}",
            f"{min(r['gpu_seconds_all']):.4f}",
            f"{min(r['gpu_seconds_cache_kept']):.4f}",
            f"{r['gpu_first_call_seconds']:.3f}",
            f"{r['speedup']:.1f}",
        )
        print(" ".join(f"{c:>{w}s}" for c, w in zip(cells, WIDTHS, strict=True)))
    for name, seconds in parts.items():
        print(f"  {name}: {seconds:.4f}")
    print()
