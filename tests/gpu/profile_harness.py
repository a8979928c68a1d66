#!/usr/bin/env python3
"""Where the harness's own time goes on a CUDA machine.

    PYTHONPATH=. python3 tests/gpu/profile_harness.py [--parts ops,copies,kernel,runner] [--out DIR]

Parts:

  ops      each array pass of the oracle and the check on one float64 piece
           of the big step (B=1024, HV=64, K=V=128), timed on CuPy: ms and GB/s.
  copies   the block copies (torch tensors into CuPy float32 arrays).
  kernel   the cell-statistics kernel (harness.check.cells) on that piece, two
           tested arrays and their pair: ms and GB/s of what it reads (run it
           under ncu with --kernel-name regex:cell_stats to see why).
  runner   a cProfile of ``run_case`` over the first 40 runnable cases of
           cases/cpu with the packed kernel and the baseline, kernels compiled:
           ms per case and the functions the time goes to.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cuda_timer(cp, fn, reps: int = 5) -> float:
    fn()
    cp.cuda.runtime.deviceSynchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        cp.cuda.runtime.deviceSynchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def part_ops() -> None:
    import cupy as cp

    from harness.check.compare import ErrorStats, relative_floor
    from harness.check.tolerance import resolve
    from harness.core.spec import Tolerance
    from reference.oracle import decode_rows

    R, HV, K, V, H = 80, 64, 128, 128, 16
    n = R * HV * K * V
    rng = cp.random.default_rng(0)
    S32 = rng.standard_normal((R, HV, K, V), dtype=cp.float32)
    S = S32.astype(cp.float64)
    k = rng.standard_normal((R, HV, K))
    u = rng.standard_normal((R, HV, V))
    eg = rng.uniform(0.5, 1.0, (R, HV))
    qkv = rng.standard_normal((R, 2 * H * K + HV * V))
    a, b = rng.standard_normal((R, HV)), rng.standard_normal((R, HV))
    A_log, dt_bias = rng.uniform(-1, 1, HV), rng.standard_normal(HV)
    tol = resolve(Tolerance(), "fp32", K)
    rows, slots = np.arange(R), np.arange(R)
    ref = decode_rows(qkv, a, b, A_log, dt_bias, S32, H=H, scale=K**-0.5, with_magnitude=True)
    x32 = ref.state.astype(cp.float32)
    bound = tol.bound(ref.state, ref.state_mag)
    floor = relative_floor(ref.state)
    ops = {
        "multiply f32*eg -> f64 (12 B)": (
            lambda: cp.multiply(S32, eg[..., None, None], dtype=cp.float64),
            12,
        ),
        "abs (16 B)": (lambda: cp.abs(S), 16),
        "einsum rhk,rhkv->rhv (8 B)": (lambda: cp.einsum("rhk,rhkv->rhv", k, S), 8),
        "matmul x[...,None,:] @ M (8 B)": (lambda: cp.matmul(k[..., None, :], S)[..., 0, :], 8),
        "outer k*u temp (8 B)": (lambda: k[..., :, None] * u[..., None, :], 8),
        "S += outer (32 B)": (lambda: S.__iadd__(k[..., :, None] * u[..., None, :]), 32),
        "decode_rows with magnitude (124 B)": (
            lambda: decode_rows(
                qkv, a, b, A_log, dt_bias, S32, H=H, scale=K**-0.5, with_magnitude=True
            ),
            124,
        ),
        "bound (ulp + mag)": (lambda: tol.bound(ref.state, ref.state_mag), 16),
        "relative_floor": (lambda: relative_floor(ref.state), 16),
        "ErrorStats.add one tested state": (
            lambda: ErrorStats("state", "", 0, "").add(
                x32, ref.state, bound, rows, slots, 0, floor, tol.overflow
            ),
            12,
        ),
        "ErrorStats.add pair (no bound)": (
            lambda: ErrorStats("state", "", 0, "").add(x32, x32, None, rows, slots),
            8,
        ),
    }
    print(f"piece [{R}, {HV}, {K}, {V}] float64 = {n * 8 / 1e9:.2f} GB")
    for name, (fn, nbytes) in ops.items():
        t = _cuda_timer(cp, fn)
        print(f"  {name:40s} {t * 1e3:8.2f} ms  {n * nbytes / t / 1e9:7.0f} GB/s (nominal bytes)")


def part_kernel() -> None:
    import cupy as cp

    from harness.check.cells import cell_stats
    from harness.check.tolerance import resolve
    from harness.core.spec import Tolerance

    R, HV, K, V = 80, 64, 128, 128
    rng = cp.random.default_rng(0)
    ref = rng.standard_normal((R, HV, K, V))
    mag = cp.abs(ref) + 1.0
    xs = [(ref + rng.standard_normal(ref.shape) * 1e-6).astype(cp.float32) for _ in range(2)]
    tol = resolve(Tolerance(), "fp32", K)
    t = _cuda_timer(cp, lambda: cell_stats(xs, ref, mag, tol, pair=True))
    read = ref.nbytes + mag.nbytes + sum(x.nbytes for x in xs)
    print(f"  cell_stats, 2 tested + pair, [{R}, {HV}, {K}, {V}]: {t * 1e3:.2f} ms, "
          f"{read / t / 1e9:.0f} GB/s of what it reads")  # fmt: skip


def part_copies() -> None:
    import cupy as cp
    import torch

    from harness.core.host import to_host

    R, HV, K, V = 256, 64, 128, 128
    t = torch.randn(R, HV, V, K, device="cuda")
    view = t.transpose(-1, -2)
    n = R * HV * K * V

    def current():
        return to_host(view, lambda shape: cp.empty(shape, cp.float32))

    def direct():
        dst = cp.empty((R, HV, K, V), cp.float32)
        torch.from_dlpack(dst).copy_(view)
        return dst

    def gather():
        idx = torch.arange(R, device="cuda").flip(0)
        return t[idx]

    for name, fn in (("to_host (vk view)", current), ("copy_ direct", direct), ("gather", gather)):
        torch.cuda.synchronize()
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            cp.cuda.runtime.deviceSynchronize()
            ts.append(time.perf_counter() - t0)
        ms = statistics.median(ts) * 1e3
        print(f"  {name:24s} {ms:8.2f} ms for {n * 4 / 1e9:.2f} GB float32")


def part_runner(out: Path | None) -> None:
    from harness.cases import load_paths
    from harness.impls.registry import load_implementation
    from harness.run.runner import run_case

    specs = [s for s in load_paths([ROOT / "cases" / "cpu"]) if s.expect is None]
    packed, baseline = load_implementation("packed"), load_implementation("baseline")
    for check in ("cuda", "cpu"):
        for s in specs[:40]:  # compile everything first
            run_case(s, packed, baseline, "cuda", check_device=check)
        prof = cProfile.Profile()
        times = []
        for s in specs[:40]:
            t0 = time.perf_counter()
            prof.enable()
            r = run_case(s, packed, baseline, "cuda", check_device=check)
            prof.disable()
            times.append(time.perf_counter() - t0)
            assert r.status == "passed", (s.name, r.status, r.reason)
        print(
            f"check on {check}: {len(times)} cases, median {statistics.median(times) * 1e3:.1f} ms"
            f", mean {statistics.mean(times) * 1e3:.1f} ms"
        )
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(28)
            print(buf.getvalue()[-9000:])
        if out is not None:
            prof.dump_stats(str(out / f"runner-{check}.prof"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="ops,copies,kernel,runner")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    for part in args.parts.split(","):
        print(f"=== {part}", flush=True)
        t0 = time.perf_counter()
        if part == "ops":
            part_ops()
        elif part == "copies":
            part_copies()
        elif part == "kernel":
            part_kernel()
        elif part == "runner":
            part_runner(args.out)
        print(f"=== {part}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
