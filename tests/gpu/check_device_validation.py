#!/usr/bin/env python3
"""Validation of the GPU check (``harness.check.device``) on a CUDA machine.

Run from the repository root, on a machine with CuPy and a CUDA device:

    PYTHONPATH=. python3 tests/gpu/check_device_validation.py [--quick] [--json FILE]

Parts (``--parts`` picks some):

  oracle    the float64 oracle on CuPy arrays against the same oracle on NumPy,
            random cases of every act and state dtype and both state layouts:
            every element within 1e-12 of its magnitude (the oracle's sum of
            absolute terms, which bounds float64 rounding) and normwise.
  verdicts  ``check_blocks`` on both devices over the same steps, clean and
            with planted errors: identical verdicts, counts, cells and worst
            locations (a different location only where the two values agree
            within VALUE_TOL: a tie within float64 noise).
  runner    ``run_case`` with the check on each device: planted bugs, the
            packed kernel against the baseline, the fp16 overflow regression;
            identical statuses, violations and statistics.
  cells     the CUDA kernel of harness.check.cells against the same rule in
            NumPy's API on the same device arrays: identical per-cell
            maxima, locations and counts (tests/gpu/check_device_cells.py).
  timing    the check of one B=1024, HV=64, K=V=128 step on each device (the
            CPU times 128 rows over its check workers and scales), a small and
            a mid-sized step, and where the GPU's time goes. Target: <= 0.1 s.

Every case and part reports and goes on after an error; the exit status is 1
when anything failed or raised. Without CuPy or a CUDA device the script says
why and exits 0. ``--stand-in`` runs it all on the CPU with NumPy standing in
for CuPy (tests/gpu/standin.py) at small sizes: how this script is tested.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT, ROOT / "tests", ROOT / "tests" / "gpu"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from check_device_cells import part_cells  # noqa: E402  (tests/gpu)
from check_device_timing import device_min_elems, part_timing  # noqa: E402  (tests/gpu)

from harness.check import device as dev  # noqa: E402
from harness.check import pool as check_pool  # noqa: E402
from harness.check.compare import ErrorStats  # noqa: E402
from harness.check.device import ArrayDevice  # noqa: E402
from harness.check.step import Block, StepContext  # noqa: E402
from harness.check.tolerance import resolve  # noqa: E402
from harness.core.spec import CaseSpec, LayoutSpec, SlotSpec, Tolerance, ValueSpec  # noqa: E402
from reference.namespace import to_numpy  # noqa: E402
from reference.oracle import decode_rows, decode_step, to_kv  # noqa: E402

PARTS = ("oracle", "verdicts", "runner", "cells", "timing")
DTYPES = ("fp32", "bf16", "fp16")
LAYOUTS = ("vk", "kv")
PADDINGS = ("none", "all", "alternate", "first", "last", "random")
LIVE_PADDINGS = ("none", "alternate", "first", "last")
ORACLE_TOL = 1e-12  # relative to each element's magnitude, and normwise
VALUE_TOL = 1e-6  # ratios and errors between devices: |a - b| <= VALUE_TOL * max(1, |a|, |b|)


# --- bookkeeping ----------------------------------------------------------------------


@dataclass
class Env:
    device: ArrayDevice
    xp: ModuleType
    run_device: str  # where run_case runs the kernels
    stand_in: bool


@dataclass
class Report:
    results: dict[str, list[dict]] = field(default_factory=dict)
    failed: int = 0
    errors: int = 0

    def case(self, part: str, name: str, fn: Callable[[], dict]) -> None:
        """Run one case; ``fn`` returns its record with ``fails`` (and ``notes``)."""
        try:
            rec = fn()
        except Exception:
            self.errors += 1
            rec = {"error": traceback.format_exc(limit=8)}
        rec["name"] = name
        self.results.setdefault(part, []).append(rec)
        fails, notes = rec.get("fails", []), rec.get("notes", [])
        status = "ERROR" if "error" in rec else "FAIL" if fails else "ok"
        self.failed += bool(fails)
        line = f"  [{status:5s}] {part}: {name}"
        if rec.get("summary"):
            line += f"  {rec['summary']}"
        print(line, flush=True)
        for msg in fails[:12] + notes[:6]:
            print(f"          {msg}", flush=True)
        if "error" in rec:
            print("          " + rec["error"].replace("\n", "\n          "), flush=True)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors


def open_env(stand_in: bool) -> Env | None:
    if stand_in:
        import standin

        xp = sys.modules[standin.NAME]
        return Env(ArrayDevice(xp), xp, "cpu", True)
    why = dev.cuda_unavailable()
    if why:
        print(f"SKIP: no GPU check possible here: {why}")
        return None
    import cupy

    index = int(cupy.cuda.runtime.getDevice())
    run_device = "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            run_device = f"cuda:{index}"
    except Exception:
        pass
    return Env(ArrayDevice(cupy, index), cupy, run_device, False)


def header(env: Env) -> None:
    print(f"python {platform.python_version()}, numpy {np.__version__}")
    if env.stand_in:
        print("device: NumPy standing in for CuPy (tests/gpu/standin.py)")
        return
    cu = env.xp.cuda.runtime
    props = cu.getDeviceProperties(env.device.index)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"cupy {env.xp.__version__}, CUDA runtime {cu.runtimeGetVersion()}, device {name}")
    try:
        import torch

        print(f"torch {torch.__version__}, kernels run on {env.run_device}")
    except Exception as exc:
        print(f"torch unavailable ({exc}); runner part runs on the CPU")
    with env.device.activate():
        free = env.device.free_bytes() or 0
    print(f"device memory free {free / 2**30:.1f} GiB; check budget {budget_gib(env):.1f} GiB")


def budget_gib(env: Env) -> float:
    with env.device.activate():
        return env.device.budget_bytes() / 2**30


def close(a: float, b: float, tol: float = VALUE_TOL) -> bool:
    if a == b:
        return True
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


# --- inputs ---------------------------------------------------------------------------


def random_spec(
    rng: np.random.Generator, act: str, state: str, layout: str, big: bool, live: bool = False
) -> CaseSpec:
    """A random small case (or a K=V=128 one) of the given dtypes and layout;
    ``live``: one with live rows for sure."""
    H = int(rng.choice([1, 2, 4]))
    HV = H * int(rng.choice([1, 2, 4]))
    K, V = (128, 128) if big else (int(rng.choice([16, 32, 48, 64])), int(rng.choice([8, 32, 64])))
    B = 16 if big else int(rng.integers(4 if live else 1, 24))
    padding = str(rng.choice(LIVE_PADDINGS if live else PADDINGS))
    return CaseSpec(
        file="<validation>",
        name="random",
        line=1,
        B=B,
        H=H,
        HV=HV,
        K=K,
        V=V,
        pool=B + int(rng.integers(0, 6)),
        act_dtype=act,
        state_dtype=state,
        layout=LayoutSpec(state_layout=layout),
        slots=SlotSpec(padding=padding, order="permutation", pad_seed=1),
        values=ValueSpec(gate_mean=float(rng.choice([-4.0, 0.0, 4.0])), qkv_std=1.5),
        use_qk_l2norm=bool(rng.integers(0, 2)),
        seed=int(rng.integers(0, 2**31)),
    )


def host_inputs(spec: CaseSpec) -> tuple[list[np.ndarray], np.ndarray]:
    """The case's stored inputs as float64 host arrays, and its slot indices."""
    from harness.core.host import to_f64
    from harness.inputs.build import build_inputs

    inp = build_inputs(spec, "cpu")
    arrays = [to_f64(t) for t in (inp.mixed_qkv, inp.a, inp.b, inp.A_log, inp.dt_bias, inp.state)]
    return arrays, inp.state_indices.numpy().astype(np.int64)


# --- part 1: the oracle on both devices -----------------------------------------------


def agreement(name: str, cpu: np.ndarray, gpu: np.ndarray, mag: np.ndarray) -> tuple[dict, list]:
    """Elementwise |gpu - cpu| / magnitude and normwise error of one result."""
    d = np.abs(gpu - cpu)
    scale = np.maximum(mag, np.finfo(np.float64).tiny)
    by_mag = float(np.max(d / scale, initial=0.0))
    norm = float(np.linalg.norm(cpu))
    normwise = float(np.linalg.norm(d)) / norm if norm > 0 else float(np.linalg.norm(d))
    nz = np.abs(cpu) > 0
    by_value = float(np.max(d[nz] / np.abs(cpu[nz]), initial=0.0))
    fails = []
    if not (by_mag <= ORACLE_TOL and normwise <= ORACLE_TOL):
        fails.append(f"{name}: max |d|/mag {by_mag:.3g}, normwise {normwise:.3g}")
    return {"by_magnitude": by_mag, "normwise": normwise, "by_value": by_value}, fails


def oracle_case(env: Env, spec: CaseSpec) -> dict:
    arrays, idx = host_inputs(spec)
    qkv, a, b, A_log, dt_bias, state = arrays
    B, HV, V = spec.B, spec.HV, spec.V
    kw = dict(scale=spec.effective_scale, use_qk_l2norm=spec.use_qk_l2norm)
    layout = spec.layout.state_layout
    out_h, state_h = np.full((B, HV, V), 7.0), state.copy()
    decode_step(qkv, a, b, A_log, dt_bias, state_h, idx, out_h, **kw, state_layout=layout)
    rows = np.flatnonzero(idx >= 0)
    slots = idx[rows]
    S = np.ascontiguousarray(to_kv(state[slots], layout))
    ref = decode_rows(
        qkv[rows], a[rows], b[rows], A_log, dt_bias, S, H=spec.H, **kw, with_magnitude=True
    )
    with env.device.activate():
        put = env.device.put
        host = (qkv, a, b, A_log, dt_bias, state.copy(), idx, np.full((B, HV, V), 7.0))
        on_dev = [put(x) for x in host]
        decode_step(*on_dev, **kw, state_layout=layout)
        out_d, state_d = to_numpy(on_dev[7]), to_numpy(on_dev[5])
        if rows.size:  # the runner never asks for zero rows
            dev_acts = [put(x[rows]) for x in (qkv, a, b)] + [put(A_log), put(dt_bias)]
            got = decode_rows(*dev_acts, put(S), H=spec.H, **kw, with_magnitude=True)
            got = [to_numpy(x) for x in (got.out, got.state, got.out_mag, got.state_mag)]
        else:
            got = [ref.out, ref.state, ref.out_mag, ref.state_mag]
    fails: list[str] = []
    metrics: dict[str, Any] = {}
    pad = np.flatnonzero(idx < 0)
    if not (np.all(out_d[pad] == 0) and np.all(out_h[pad] == 0)):
        fails.append("padding rows not zero")
    untouched = np.setdiff1d(np.arange(state.shape[0]), slots)
    if not np.array_equal(state_d[untouched], state[untouched]):
        fails.append("a slot no row names changed on the device")
    checks = [
        ("step out", out_h[rows], out_d[rows], ref.out_mag),
        ("step state", to_kv(state_h[slots], layout), to_kv(state_d[slots], layout), ref.state_mag),
        ("rows out", ref.out, got[0], ref.out_mag),
        ("rows state", ref.state, got[1], ref.state_mag),
        ("out magnitude", ref.out_mag, got[2], ref.out_mag),
        ("state magnitude", ref.state_mag, got[3], ref.state_mag),
    ]
    for name, cpu, gpu, mag in checks:
        metrics[name], bad = agreement(name, cpu, gpu, mag)
        fails += bad
    worst = max(m["by_magnitude"] for m in metrics.values())
    worst_norm = max(m["normwise"] for m in metrics.values())
    summary = f"max |d|/mag {worst:.2g}, normwise {worst_norm:.2g}"
    return {"metrics": metrics, "fails": fails, "summary": summary}


def part_oracle(env: Env, args, rep: Report) -> None:
    rng = np.random.default_rng(args.seed)
    per_combo = 1 if args.quick else 3
    for n, (act, state) in enumerate((a, s) for a in DTYPES for s in DTYPES):
        for layout in (LAYOUTS[n % 2],) if args.quick else LAYOUTS:  # quick: one layout each
            for i in range(per_combo):
                big = i == 0 and not args.quick and not env.stand_in
                spec = random_spec(rng, act, state, layout, big)
                name = (
                    f"act {act} state {state} {layout} B={spec.B} H={spec.H} "
                    f"HV={spec.HV} K={spec.K} V={spec.V} l2={spec.use_qk_l2norm}"
                )
                rep.case("oracle", name, lambda s=spec: oracle_case(env, s))


# --- comparing statistics -------------------------------------------------------------

EXACT = ("quantity", "pair", "step", "checked", "n", "over", "nan", "inf", "rounded_inf", "ok")
LOCATED = (("worst_ratio", "worst_at"), ("max_abs", "max_abs_at"))


def stats_diff(cpu: ErrorStats, gpu: ErrorStats) -> tuple[list[str], list[str]]:
    """(failures, notes) between the host's and the device's stats of one pair."""
    fails, notes = [], []
    where = f"{cpu.quantity} {cpu.pair} step {cpu.step}"
    for attr in EXACT:
        if getattr(cpu, attr) != getattr(gpu, attr):
            fails.append(f"{where}: {attr} {getattr(cpu, attr)!r} vs {getattr(gpu, attr)!r}")
    for value, loc in LOCATED:
        va, vb = getattr(cpu, value), getattr(gpu, value)
        if not close(va, vb):
            fails.append(f"{where}: {value} {va!r} vs {vb!r}")
        la, lb = getattr(cpu, loc), getattr(gpu, loc)
        if la != lb:
            msg = f"{where}: {loc} {la} vs {lb} ({value} {va:.17g} vs {vb:.17g})"
            (notes if close(va, vb) else fails).append(("tie: " if close(va, vb) else "") + msg)
    if cpu.max_rel_at != gpu.max_rel_at or not close(cpu.max_rel, gpu.max_rel):
        notes.append(
            f"{where}: max_rel {cpu.max_rel:.6g} at {cpu.max_rel_at} vs {gpu.max_rel:.6g} at "
            f"{gpu.max_rel_at} (relative to a near-zero reference: not part of the verdict)"
        )
    if set(cpu.cells) != set(gpu.cells):
        fails.append(
            f"{where}: cells over the bound differ: {sorted(set(cpu.cells) ^ set(gpu.cells))[:8]}"
        )
    if set(cpu.head_ratio) != set(gpu.head_ratio):
        fails.append(f"{where}: heads differ")
    for name, da, db in (
        ("cells", cpu.cells, gpu.cells),
        ("head_ratio", cpu.head_ratio, gpu.head_ratio),
    ):
        bad = [k for k in set(da) & set(db) if not close(da[k], db[k])]
        if bad:
            fails.append(f"{where}: {name} values differ at {sorted(bad)[:6]}")
    for attr in ("err_sq", "ref_sq"):
        if not close(getattr(cpu, attr), getattr(gpu, attr)):
            fails.append(f"{where}: {attr} {getattr(cpu, attr)!r} vs {getattr(gpu, attr)!r}")
    if cpu.worst_at == gpu.worst_at and cpu.worst_value and gpu.worst_value:
        (ga, wa), (gb, wb) = cpu.worst_value, gpu.worst_value
        if not (ga == gb or (math.isnan(ga) and math.isnan(gb))) or not close(wa, wb):
            fails.append(f"{where}: worst value {cpu.worst_value} vs {gpu.worst_value}")
    return fails, notes


def all_stats_diff(cpu: list[ErrorStats], gpu: list[ErrorStats]) -> tuple[list[str], list[str]]:
    if len(cpu) != len(gpu):
        return [f"{len(cpu)} stats on the host, {len(gpu)} on the device"], []
    fails, notes = [], []
    for a, b in zip(cpu, gpu, strict=True):
        f, n = stats_diff(a, b)
        fails += f
        notes += n
    return fails, notes


# --- part 2: verdicts of the check on both devices ------------------------------------


def rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` (round to nearest even), as float32."""
    import torch

    from harness.core.dtypes import torch_dtype

    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(torch_dtype(dtype)).float().numpy()


def copy_into(src: np.ndarray, new_array):
    """``src`` copied into an array of ``new_array`` as the runner copies (through torch)."""
    import torch

    from harness.core.host import to_host

    return to_host(torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32)), new_array)


def planted_step(spec: CaseSpec, variant: str, seed: int) -> tuple[StepContext, Block]:
    """A step's block: two implementations' results (the oracle's rounded to the
    dtypes), with ``variant``'s errors planted."""
    arrays, idx = host_inputs(spec)
    qkv, a, b, A_log, dt_bias, state = arrays
    rows = np.flatnonzero(idx >= 0)
    slots = idx[rows]
    pre = np.ascontiguousarray(to_kv(state[slots], spec.layout.state_layout)).astype(np.float32)
    kw = dict(H=spec.H, scale=spec.effective_scale, use_qk_l2norm=spec.use_qk_l2norm)
    ref = decode_rows(qkv[rows], a[rows], b[rows], A_log, dt_bias, pre, **kw)
    out = rounded(ref.out, spec.act_dtype)
    st = rounded(ref.state, spec.state_dtype)
    tested = [(out.copy(), st.copy()), (out.copy(), st.copy())]
    rng = np.random.default_rng(seed)

    def at(shape):
        return tuple(int(rng.integers(0, n)) for n in shape)

    if variant == "one-off":
        tested[1][1][at(st.shape)] += 1.0
        tested[0][0][at(out.shape)] -= 0.5
    elif variant == "nonfinite":
        tested[0][1][at(st.shape)] = np.nan
        tested[1][0][at(out.shape)] = np.inf
        tested[1][1][at(st.shape)] = -np.inf
    elif variant == "systematic":  # one bf16 rounding of an fp32 intermediate, everywhere
        tested[0] = (tested[0][0], rounded(ref.state * (1 + 2.0**-9), "fp32"))
    block = Block((qkv[rows], a[rows], b[rows], A_log, dt_bias), rows, slots, pre, tested)
    ctx = StepContext(
        spec.H,
        spec.effective_scale,
        spec.use_qk_l2norm,
        resolve(Tolerance(), spec.act_dtype, spec.K),
        resolve(Tolerance(), spec.state_dtype, spec.K),
        0,
    )
    return ctx, block


def maker(block: Block):
    def make_block(chunk: np.ndarray, new_array) -> Block:
        acts = tuple(x[chunk] for x in block.acts[:3]) + tuple(block.acts[3:])
        part = Block(
            acts, block.rows[chunk], block.slots[chunk], copy_into(block.pre[chunk], new_array)
        )
        for o, s in block.tested:
            part.tested.append((copy_into(o[chunk], new_array), copy_into(s[chunk], new_array)))
        return part

    return make_block


def verdict_case(
    env: Env, spec: CaseSpec, variant: str, seed: int, budget: int | None = None
) -> dict:
    ctx, block = planted_step(spec, variant, seed)
    shape = (spec.HV, spec.K, spec.V)
    R = block.rows.size
    cpu = check_pool.check_blocks(ctx, R, 2, shape, maker(block), device="cpu")
    device = env.device if budget is None else ArrayDevice(env.device.xp, env.device.index, budget)
    with device_min_elems(0):
        gpu = check_pool.check_blocks(ctx, R, 2, shape, maker(block), device=device)
    fails, notes = all_stats_diff(cpu, gpu)
    verdicts = "".join("." if s.ok else "x" for s in cpu)
    over = sum(s.over for s in cpu)
    return {"fails": fails, "notes": notes, "summary": f"verdicts {verdicts}, {over} over"}


def part_verdicts(env: Env, args, rep: Report) -> None:
    rng = np.random.default_rng(args.seed + 1)
    variants = ("clean", "one-off", "nonfinite", "systematic")
    combos = [(a, s) for a in DTYPES for s in DTYPES]
    for n, (act, state) in enumerate(combos[::4] if args.quick else combos):
        layout = LAYOUTS[n % 2]
        spec = random_spec(rng, act, state, layout, big=False, live=True)
        dims = f"B={spec.B} HV={spec.HV} K={spec.K} V={spec.V}"
        for variant in variants[1 + n % 3 : 2 + n % 3] if args.quick else variants:
            seed = int(rng.integers(0, 2**31))
            name = f"act {act} state {state} {layout} {dims} {variant}"
            rep.case("verdicts", name, lambda s=spec, v=variant, x=seed: verdict_case(env, s, v, x))
    # a small budget: a row per block, a head per piece
    spec = random_spec(rng, "bf16", "fp32", "vk", big=not env.stand_in, live=True)
    budget = 2 * dev.PIECE_TEMPS * spec.K * spec.V * 8
    for variant in ("nonfinite",) if args.quick else ("one-off", "nonfinite"):
        name = f"a head per piece, {variant} (B={spec.B} HV={spec.HV} K={spec.K} V={spec.V})"
        rep.case("verdicts", name, lambda v=variant: verdict_case(env, spec, v, 5, budget))


# --- part 3: the runner with the check on each device ---------------------------------


@contextlib.contextmanager
def checks_on(device):
    """Every check of ``run_case`` on ``device``, whatever the runner passes."""
    from harness.run import runner

    saved = runner.check_blocks

    def check_blocks(*args, **kwargs):
        kwargs["device"] = device
        return check_pool.check_blocks(*args, **kwargs)

    runner.check_blocks = check_blocks
    try:
        yield
    finally:
        runner.check_blocks = saved


def runner_case(env: Env, spec: CaseSpec, impl_name: str, base_name: str) -> dict:
    from harness.impls.registry import load_implementation
    from harness.run.runner import run_case

    impl, base = load_implementation(impl_name), load_implementation(base_name)
    with checks_on("cpu"):
        cpu = run_case(spec, impl, base, env.run_device)
    with checks_on(env.device), device_min_elems(0):
        gpu = run_case(spec, impl, base, env.run_device)
    fails, notes = [], []
    if cpu.status != gpu.status:
        fails.append(f"status {cpu.status} vs {gpu.status} ({cpu.reason} | {gpu.reason})")
    va = [(v.check, v.who, v.step) for v in cpu.violations]
    vb = [(v.check, v.who, v.step) for v in gpu.violations]
    if va != vb:
        fails.append(f"violations {va} vs {vb}")
    elif [str(v) for v in cpu.violations] != [str(v) for v in gpu.violations]:
        notes.append("violation messages differ in printed digits only")
    f, n = all_stats_diff(cpu.stats, gpu.stats)
    fails += f
    notes += n
    fails += drift_diff(cpu.drift, gpu.drift)
    if gpu.status == "crashed":
        fails.append(f"crashed: {gpu.reason}")
    return {"fails": fails, "notes": notes, "summary": f"{cpu.status} / {gpu.status}"}


def drift_diff(cpu: list, gpu: list) -> list[str]:
    """Drift figures of the two devices' exact trajectories: the same rows, each
    figure within VALUE_TOL relative plus 1e-13 (the trajectories differ by
    float64 rounding of the state's magnitude, far below the drift they measure)."""
    if [(d.who, d.step) for d in cpu] != [(d.who, d.step) for d in gpu]:
        return ["drift rows differ"]
    fails = []
    for a, b in zip(cpu, gpu, strict=True):
        for key in ("state_max_abs", "state_rel_rms", "out_max_abs", "out_rel_rms"):
            x, y = getattr(a, key), getattr(b, key)
            if not (x == y or abs(x - y) <= VALUE_TOL * max(abs(x), abs(y)) + 1e-13):
                fails.append(f"drift {a.who} step {a.step} {key}: {x!r} vs {y!r}")
    return fails


def part_runner(env: Env, args, rep: Report) -> None:
    from harness.cases import load_file

    rng = np.random.default_rng(args.seed + 2)
    bugs = ["beta_bf16", "slot_from_row", "transposed_state", "state_bf16", "out_bf16", "k_tail"]
    bugs += ["decay_after_update", "gqa_mod"]
    for i, bug in enumerate(bugs[:2] if args.quick else bugs):
        act, state = DTYPES[i % 3], DTYPES[(i // 3) % 3]
        spec = _with(random_spec(rng, act, state, LAYOUTS[i % 2], big=False, live=True), steps=2)
        name = f"planted {bug} vs oracle (act {act} state {state} {spec.layout.state_layout})"
        impl = f"tests.planted.bugs:{bug}"
        rep.case("runner", name, lambda s=spec, i=impl: runner_case(env, s, i, "oracle"))
    (overflow,) = load_file(ROOT / "cases/regressions/fp16_output_overflow.yaml")
    pairs = [("fp16 overflow regression", overflow, "tests.planted.bugs:correct", "oracle")]
    if env.run_device.startswith("cuda"):
        pairs.append(("fp16 overflow regression", overflow, "packed", "baseline"))
        for act, state, layout in (
            ("bf16", "fp32", "vk"),
            ("fp16", "bf16", "kv"),
            ("bf16", "fp16", "vk"),
        ):
            spec = random_spec(rng, act, state, layout, big=True, live=True)
            spec = _with(spec, B=64, pool=70, steps=2, tier="gpu")
            pairs.append(
                (f"act {act} state {state} {layout} B=64 K=V=128", spec, "packed", "baseline")
            )
    for what, spec, impl, base in pairs:
        name = f"{what}: {impl} vs {base}"
        rep.case("runner", name, lambda s=spec, i=impl, b=base: runner_case(env, s, i, b))


def _with(spec: CaseSpec, **fields) -> CaseSpec:
    import dataclasses

    return dataclasses.replace(spec, **fields)


# --- main -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    ap.add_argument("--quick", action="store_true", help="fewer cases, fewer CPU rows timed")
    ap.add_argument(
        "--stand-in", action="store_true", help="NumPy standing in for CuPy, on the CPU"
    )
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--json", help="write every record to this file")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    env = open_env(args.stand_in)
    if env is None:
        return 0
    rep = Report()
    try:
        header(env)
    except Exception:
        print("header failed:\n" + traceback.format_exc(limit=4))
    funcs = {
        "oracle": part_oracle,
        "verdicts": part_verdicts,
        "runner": part_runner,
        "cells": part_cells,
        "timing": part_timing,
    }
    for part in parts:
        print(f"== {part}", flush=True)
        t0 = time.perf_counter()
        try:
            funcs[part](env, args, rep)
        except Exception:
            rep.errors += 1
            print(f"  [ERROR] {part} stopped:\n" + traceback.format_exc(limit=8), flush=True)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    n = sum(len(v) for v in rep.results.values())
    print(
        f"== {n} cases: {rep.failed} failed, {rep.errors} errors -> {'PASS' if rep.ok else 'FAIL'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rep.results, indent=1, default=str))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
