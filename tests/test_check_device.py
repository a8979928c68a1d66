"""The device check, with NumPy standing in for CuPy (``tests/gpu/standin.py``).

The stand-in's arrays refuse every NumPy function, host operand, host index
and implicit conversion, as CuPy's do, and it counts transfers and device
memory. So these tests hold the device path to what matters on a GPU: the
oracle and the statistics run where the arrays are (bit for bit the NumPy
results, since NumPy computes behind the wall), nothing big comes back to
the host, memory stays in its budget, and the verdicts and locations are the
host's, through the check and through the runner.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import spec as make_spec
from test_step_check import _block, _plant

from harness.check import device as dev
from harness.check import pool as cp
from harness.check import step as sc
from harness.check.compare import ErrorStats, relative_floor, saturate_overflow
from harness.check.tolerance import resolve, ulp
from harness.core.host import to_host
from harness.core.spec import Tolerance
from reference.namespace import array_namespace, to_numpy
from reference.oracle import decode_rows, decode_step

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gpu"))
import standin  # noqa: E402

xp = sys.modules[standin.NAME]
STANDIN = dev.ArrayDevice(xp)
SUMS = ("err_sq", "ref_sq", "rms_ratio")  # summed in another order over other pieces


@pytest.fixture(autouse=True)
def counters():
    standin.STATS.reset()
    yield standin.STATS


def _rng_inputs(seed=0, R=5, H=2, HV=4, K=16, V=8):
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((R, 2 * H * K + HV * V)).astype(np.float32)
    a = (rng.standard_normal((R, HV)) * 4).astype(np.float32)
    b = (rng.standard_normal((R, HV)) * 4).astype(np.float32)
    A_log, dt_bias = rng.uniform(-1, 1, HV), rng.standard_normal(HV)
    S = rng.standard_normal((R, HV, K, V)).astype(np.float32)
    return (qkv, a, b, A_log, dt_bias), S


def _bits_equal(got, want) -> None:
    got = to_numpy(got)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def _agrees(got, want, scale) -> None:
    """Within float64 rounding of ``scale`` (the oracle's sum of absolute terms):
    the device spells the vector-matrix products as matmul, NumPy as einsum."""
    got = to_numpy(got)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.all(np.abs(got - want) <= 1e-13 * scale)


# --- the namespace ----------------------------------------------------------------


def test_the_namespace_is_that_of_the_arrays():
    host = np.ones(3)
    on_dev = xp.asarray(host)
    assert array_namespace(host, 1.0, [1, 2], None) is np
    assert array_namespace(on_dev) is xp and array_namespace(host, on_dev, 2.0) is xp
    with pytest.raises(TypeError, match="NumPy-compatible"):
        array_namespace(object())
    np.testing.assert_array_equal(to_numpy(on_dev), host)


def test_the_standin_refuses_what_cupy_refuses():
    on_dev = xp.asarray(np.ones((2, 3)))
    refused = [
        lambda: np.asarray(on_dev),
        lambda: np.exp(on_dev),
        lambda: on_dev + np.ones(3),
        lambda: xp.exp(np.ones(3)),
        lambda: on_dev[np.array([0])],
        lambda: xp.errstate,
    ]
    for attempt in refused:
        with pytest.raises((TypeError, AttributeError)):
            attempt()


# --- the oracle --------------------------------------------------------------------


@pytest.mark.parametrize("l2", [True, False])
@pytest.mark.parametrize("heads", [None, slice(1, 3)])
def test_the_oracle_on_the_device_agrees_with_numpy(counters, l2, heads):
    acts, S = _rng_inputs()
    if heads is not None:
        S = S[:, heads]
    kw = dict(H=2, scale=0.3, use_qk_l2norm=l2, with_magnitude=True, heads=heads)
    want = decode_rows(*acts, S, **kw)
    got = decode_rows(*(xp.asarray(x) for x in acts), xp.asarray(S), **kw)
    for name, scale in (("out", "out_mag"), ("state", "state_mag")):
        for x in (name, scale):
            assert array_namespace(getattr(got, x)) is xp
            _agrees(getattr(got, x), getattr(want, x), getattr(want, scale))
    assert counters.downloads == 4  # only the comparisons above came back


def test_the_oracle_takes_host_activations_to_the_state_s_device():
    acts, S = _rng_inputs(1)
    want = decode_rows(*acts, S, H=2, scale=0.25)
    got = decode_rows(*acts, xp.asarray(S), H=2, scale=0.25, with_magnitude=True)
    _agrees(
        got.state, want.state, decode_rows(*acts, S, H=2, scale=0.25, with_magnitude=True).state_mag
    )


@pytest.mark.parametrize("layout", ["vk", "kv"])
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 30])
def test_decode_step_on_the_device_agrees_with_numpy(counters, layout, chunk_bytes):
    (qkv, a, b, A_log, dt_bias), _ = _rng_inputs(2)
    rng = np.random.default_rng(3)
    N, HV, K, V = 7, 4, 16, 8
    state = rng.standard_normal((N, HV, V, K) if layout == "vk" else (N, HV, K, V))
    state = state.astype(np.float32)
    idx = np.array([3, -1, 0, 6, 2], np.int32)
    host = [qkv, a, b, A_log, dt_bias, state.copy(), idx, np.full((5, HV, V), 7, np.float32)]
    on_dev = [xp.asarray(x) for x in host]
    kw = dict(scale=0.3, state_layout=layout, chunk_bytes=chunk_bytes)
    decode_step(*host, **kw)
    counters.reset()
    decode_step(*on_dev, **kw)
    assert counters.downloads == 0
    for got, want in ((on_dev[5], host[5]), (on_dev[7], host[7])):  # float32 results
        assert np.all(np.abs(to_numpy(got) - want) <= np.spacing(np.abs(want)))


# --- bounds and statistics ------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_bounds_on_the_device_are_numpy_bit_for_bit(dtype):
    acts, S = _rng_inputs(4)
    ref = decode_rows(*acts, S, H=2, scale=0.3, with_magnitude=True)
    ref.state[0, 0, 0, :3] = [0.0, 1e-310, np.inf]
    tol = resolve(Tolerance(), dtype, 16)
    want = tol.bound(ref.state, ref.state_mag)
    _bits_equal(tol.bound(xp.asarray(ref.state), xp.asarray(ref.state_mag)), want)
    _bits_equal(ulp(xp.asarray(ref.state), dtype), ulp(ref.state, dtype))
    _bits_equal(relative_floor(xp.asarray(ref.state)), relative_floor(ref.state))


def _stats_inputs(seed: int, variant: str):
    acts, S = _rng_inputs(seed, R=4, HV=4, K=16, V=8)
    ref = decode_rows(*acts, S, H=2, scale=0.3, with_magnitude=True)
    tol = resolve(Tolerance(), "fp16", 16)
    bound = tol.bound(ref.state, ref.state_mag)
    x = ref.state.astype(np.float32)
    if variant == "over":
        x[1, 2, 3, 4] += 1.0
        x[3, 0, 0, 0] -= 0.5
    elif variant == "nonfinite":
        x[0, 1, 2, 3], x[2, 2, 2, 2], x[3, 3, 3, 3] = np.nan, np.inf, -np.inf
    elif variant == "overflow":
        ref.state[1, 1, 1, 1] = 70000.0  # beyond fp16: an Inf is its correct rounding
        x[1, 1, 1, 1] = np.inf
        x[2, 0, 1, 1] += 0.25
    return x, ref.state, bound, tol.overflow


@pytest.mark.parametrize("variant", ["pass", "over", "nonfinite", "overflow"])
@pytest.mark.parametrize("checked", [True, False])
def test_error_stats_on_the_device_equal_numpy_s(counters, variant, checked):
    x, ref, bound, overflow = _stats_inputs(5, variant)
    rows, slots = np.arange(4) * 3, np.arange(4) + 20
    want, got = ErrorStats("state", "p", 1, "t"), ErrorStats("state", "p", 1, "t")
    want.add(x, ref, bound if checked else None, rows, slots, 2, None, overflow)
    on_dev = [xp.asarray(a) for a in (x, ref, bound)]
    counters.reset()
    got.add(on_dev[0], on_dev[1], on_dev[2] if checked else None, rows, slots, 2, None, overflow)
    assert got.to_dict() == want.to_dict()
    assert counters.largest_download <= 4 * 4 * 8  # a per-(row, head) array at most
    assert want.over == (
        {"over": 2, "nonfinite": 3, "overflow": 1}.get(variant, 0) if checked else 0
    )
    assert want.rounded_inf == (1 if variant == "overflow" and checked else 0)


def test_saturating_overflow_on_the_device():
    x, ref, bound, overflow = _stats_inputs(6, "overflow")
    want, n = saturate_overflow(x, ref, bound, overflow)
    got, m = saturate_overflow(*(xp.asarray(a) for a in (x, ref, bound)), overflow)
    assert n == m == 1
    _bits_equal(got, want)


# --- a whole step ----------------------------------------------------------------------


def _maker(whole: sc.Block):
    """make_block as the runner's: torch copies into the arrays of ``new_array``."""

    def copy(src: np.ndarray, new_array):
        return to_host(torch.from_numpy(np.ascontiguousarray(src)), new_array)

    def make_block(chunk: np.ndarray, new_array) -> sc.Block:
        part = sc.Block(
            tuple(x[chunk] for x in whole.acts[:3]) + whole.acts[3:],
            whole.rows[chunk],
            whole.slots[chunk],
            copy(whole.pre[chunk], new_array),
        )
        for out, state in whole.tested:
            part.tested.append((copy(out[chunk], new_array), copy(state[chunk], new_array)))
        return part

    return make_block


def _planted_step(R=6, HV=4, K=64, V=48):
    ctx, whole = _block(R=R, HV=HV, K=K, V=V)
    _plant(whole)  # second implementation, row 4
    whole.tested[0][1][1, 2, 5, 6] = np.nan  # first implementation, row 1
    whole.tested[0][0][5, 0, 3] += 1.0  # its output, row 5
    return ctx, whole


def _stats_dicts(stats: list[ErrorStats]) -> list[dict]:
    return [{k: v for k, v in s.to_dict().items() if k not in SUMS} for s in stats]


def _close_stats(got: list[ErrorStats], want: list[ErrorStats]) -> None:
    """The same statistics but for float64 rounding: the device's oracle spells
    its vector-matrix products as matmul, NumPy's as einsum."""
    for g, w in zip(_stats_dicts(got), _stats_dicts(want), strict=True):
        assert g.keys() == w.keys()
        for key, value in w.items():
            if key == "cells":
                assert [c[:2] for c in g[key]] == [c[:2] for c in value]
                assert [c[2] for c in g[key]] == pytest.approx([c[2] for c in value], rel=1e-9)
            elif isinstance(value, (float, list, dict)) and key != "tolerance":
                assert g[key] == pytest.approx(value, rel=1e-9, abs=1e-7), key
            else:
                assert g[key] == value, key


# budgets: whole rows in a piece and one block; a head per piece and a row per block
@pytest.mark.parametrize("budget", [2**24, 2 * 12 * 64 * 48 * 8])
def test_a_step_on_the_device_gives_the_host_s_verdicts(monkeypatch, counters, budget):
    monkeypatch.setattr(dev, "DEVICE_MIN_ELEMS", 0)
    monkeypatch.setattr(dev, "RELEASE_ABOVE_BYTES", 0)  # every check gives its memory back
    R, HV, K, V = 6, 4, 64, 48
    ctx, whole = _planted_step(R, HV, K, V)
    want = cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole), device="cpu")
    emptied = standin.POOL.emptied
    counters.reset()
    device = dataclasses.replace(STANDIN, budget=budget)
    got = cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole), device=device)
    _close_stats(got, want)
    assert [s.ok for s in got] == [False, False, True, False, True, False]  # pair: the NaN
    assert str(got[1].worst_at) == "row 2 slot 101 head 2 k=5 v=6" and got[1].nan == 1
    assert str(got[3].worst_at) == "row 8 slot 104 head 3 k=10 v=7"
    assert counters.peak_bytes <= budget
    assert counters.largest_download <= R * HV * 8  # scalars and per-(row, head) maxima
    assert counters.upload_bytes < R * (2 * 2 * 64 + HV * V + 2 * HV) * 8 * 2  # activations
    assert standin.POOL.emptied == emptied + 1


def test_the_pieces_follow_the_budget(monkeypatch):
    seen = []
    monkeypatch.setattr(dev, "DEVICE_MIN_ELEMS", 0)
    monkeypatch.setattr(dev, "block_stats", lambda *a, **k: seen.append(k) or [])
    monkeypatch.setattr(dev, "merge_into", lambda *a: None)
    ctx, whole = _planted_step()
    device = dataclasses.replace(STANDIN, budget=2 * 12 * 64 * 48 * 8 * 4)
    cp.check_blocks(ctx, 6, 2, (4, 64, 48), _maker(whole), device=device)
    per_row = 3 * 4 * 64 * 48 * 4 + 2 * 4 * 48 * 4
    assert len(seen) == -(-6 // ((12 * 64 * 48 * 8 * 4) // per_row))  # blocks
    assert {k["piece_bytes"] for k in seen} == {64 * 48 * 8 * 4}  # a row of four heads


def test_small_steps_stay_on_the_host(counters):
    ctx, whole = _block(R=2, HV=2, K=8, V=8)
    got = cp.check_blocks(ctx, 2, 2, (2, 8, 8), _maker(whole), device=STANDIN)
    assert counters.uploads == 0 and len(got) == 6


def test_device_memory_is_given_back_when_a_check_fails(monkeypatch):
    monkeypatch.setattr(dev, "DEVICE_MIN_ELEMS", 0)
    monkeypatch.setattr(dev, "RELEASE_ABOVE_BYTES", 0)
    ctx, whole = _planted_step()
    inner = _maker(whole)

    def make_block(chunk, new_array):
        if chunk[0] > 0:
            raise RuntimeError("planted failure while copying a block")
        return inner(chunk, new_array)

    emptied = standin.POOL.emptied
    device = dataclasses.replace(STANDIN, budget=2 * 12 * 64 * 48 * 8)  # a row a block
    with pytest.raises(RuntimeError, match="planted failure"):
        cp.check_blocks(ctx, 6, 2, (4, 64, 48), make_block, device=device)
    assert standin.POOL.emptied == emptied + 1


# --- through the runner ---------------------------------------------------------------------


def _planted_runs(monkeypatch, case):
    """``run_case`` of ``case`` for the planted bf16-beta bug against the oracle,
    on the CPU, as a call to repeat on the host and on the stand-in."""
    from harness.impls.registry import load_implementation
    from harness.run.runner import run_case

    if str(ROOT) not in sys.path:
        monkeypatch.syspath_prepend(str(ROOT))
    impl = load_implementation("tests.planted.bugs:beta_bf16")
    base = load_implementation("oracle")
    return lambda: run_case(case, impl, base, "cpu")


def test_the_runner_s_cases_check_on_the_device_as_on_the_host(monkeypatch, counters):
    """A failing multi-step case, its blocks made by the runner itself: the same
    violations, statistics and locations as on the host."""
    from harness.run import runner

    case = make_spec(B=6, H=2, HV=4, K=32, V=24, pool=9, steps=2, slots={"padding": "alternate"})
    run = _planted_runs(monkeypatch, case)
    here = run()
    monkeypatch.setattr(dev, "DEVICE_MIN_ELEMS", 0)
    calls = []

    def on_standin(*args, **kwargs):
        calls.append(1)
        kwargs["device"] = dataclasses.replace(STANDIN, budget=2 * 12 * 32 * 24 * 8)  # a head
        return cp.check_blocks(*args, **kwargs)

    monkeypatch.setattr(runner, "check_blocks", on_standin)
    counters.reset()
    there = run()
    assert calls and counters.uploads and counters.peak_bytes >= 3 * 4 * 32 * 24 * 4
    assert here.status == there.status == "failed"
    assert [str(v) for v in here.violations] == [str(v) for v in there.violations]
    _close_stats(here.stats, there.stats)
    want = [getattr(s, k) for s in here.stats for k in SUMS]
    assert [getattr(s, k) for s in there.stats for k in SUMS] == pytest.approx(want, rel=1e-12)


# --- choosing the device -----------------------------------------------------------------------


def test_choosing_the_check_device(monkeypatch):
    monkeypatch.delenv(dev.ENV_VAR, raising=False)
    resolve_dev = dev.resolve_check_device
    monkeypatch.setattr(dev, "cuda_unavailable", lambda: "no CuPy here")
    assert resolve_dev("cpu", "cuda:0") == "cpu"
    assert resolve_dev("auto", "cuda:0") == "cpu" and resolve_dev(None, "cpu") == "cpu"
    with pytest.raises(RuntimeError, match="no CuPy here"):
        resolve_dev("cuda", "cuda:0")
    monkeypatch.setattr(dev, "cuda_unavailable", lambda: None)
    assert resolve_dev("auto", "cuda:1") == "cuda:1" and resolve_dev("AUTO", "cpu") == "cpu"
    assert resolve_dev("cuda", "cuda:1") == "cuda:1" and resolve_dev("cuda", "cpu") == "cuda"
    assert resolve_dev("cuda:2", "cuda:1") == "cuda:2"
    monkeypatch.setenv(dev.ENV_VAR, "cpu")
    assert resolve_dev(None, "cuda:1") == "cpu" and resolve_dev("cuda", "cuda:1") == "cuda:1"
    for bad in ("gpu", "cpu:0", "auto:1", "cuda:x", "cuda:"):
        with pytest.raises(ValueError, match="check device"):
            resolve_dev(bad, "cuda:0")


def test_naming_a_check_device():
    assert dev.device_for("cpu") is None and dev.device_for(STANDIN) is STANDIN
    for bad in ("tpu", "cpu:1", "cuda:a"):
        with pytest.raises(ValueError, match="check device"):
            dev.device_for(bad)
    assert STANDIN.name == xp.__name__ and STANDIN.budget_bytes() == dev.DEVICE_BUDGET_BYTES


def test_cuda_unavailable_says_why_without_cupy():
    if "cupy" in sys.modules or _cupy_importable():
        pytest.skip("CuPy is installed here")
    dev.cuda_unavailable.cache_clear()
    assert "CuPy cannot be imported" in dev.cuda_unavailable()


def _cupy_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("cupy") is not None


def test_the_drift_check_runs_on_the_device_as_on_the_host(monkeypatch, counters):
    """The exact trajectory kept on the device: the same drift figures and drift
    violations as on the host, and the trajectory never comes back whole."""
    from harness.run import runner

    case = make_spec(B=5, H=2, HV=4, K=16, V=16, pool=7, steps=3, slots={"padding": "first"})
    run = _planted_runs(monkeypatch, case)
    here = run()
    monkeypatch.setattr(runner, "device_for_size", lambda device, elems: STANDIN)
    counters.reset()
    there = run()
    assert counters.uploads and counters.largest_download <= 4 * 16 * 16 * 8
    assert [str(v) for v in here.violations] == [str(v) for v in there.violations]
    assert any(v.check == "drift" for v in there.violations)
    assert len(here.drift) == len(there.drift) == 2 * 3
    for h, t in zip(here.drift, there.drift, strict=True):
        assert (h.who, h.step) == (t.who, t.step)
        for key in ("state_max_abs", "state_rel_rms", "out_max_abs", "out_rel_rms"):
            assert getattr(t, key) == pytest.approx(getattr(h, key), rel=1e-9, abs=1e-15), key


@pytest.mark.parametrize("device", [None, STANDIN], ids=["host", "standin"])
@pytest.mark.parametrize("chunk", [np.arange(3, 14), np.arange(0, 2), np.array([5, 1, 2, 9])])
def test_the_bench_s_blocks_repeat_the_source_rows(device, chunk):
    """The bench's timed blocks: batch row r holds source row r % n, whether the
    rows are a run (copied by doubling) or gathered one by one."""
    from harness.bench.cost import block_maker

    n = 4
    rng = np.random.default_rng(1)
    arrays = {k: rng.standard_normal((n, 2, 3, 5)).astype(np.float32) for k in ("pre", "state")}
    arrays["out"] = rng.standard_normal((n, 2, 5)).astype(np.float32)
    acts = (rng.standard_normal((n, 7)), rng.standard_normal((n, 2)), rng.standard_normal((n, 2)),
            np.zeros(2), np.zeros(2))  # fmt: skip
    make = block_maker(acts, arrays, n, device)
    new_array = cp.host_array if device is None else device.empty
    block = make(chunk, new_array)
    want = chunk % n
    np.testing.assert_array_equal(to_numpy(block.pre), arrays["pre"][want])
    for got, source in zip(block.acts[:3], acts[:3], strict=True):
        np.testing.assert_array_equal(to_numpy(got), source[want])
    for out, state in block.tested:
        np.testing.assert_array_equal(to_numpy(out), arrays["out"][want])
        np.testing.assert_array_equal(to_numpy(state), arrays["state"][want])


def test_only_checks_that_held_much_memory_give_it_back(monkeypatch, counters):
    """A small check's cached blocks stay for the next check; a big one's go
    back to the driver, for torch."""
    monkeypatch.setattr(dev, "DEVICE_MIN_ELEMS", 0)
    R, HV, K, V = 6, 4, 64, 48
    ctx, whole = _planted_step(R, HV, K, V)

    def emptied_by_a_check(above: int) -> int:
        monkeypatch.setattr(dev, "RELEASE_ABOVE_BYTES", above)
        counters.reset()
        before = standin.POOL.emptied
        cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole), device=STANDIN)
        assert counters.peak_bytes > 0
        return standin.POOL.emptied - before

    assert emptied_by_a_check(2**40) == 0
    assert emptied_by_a_check(0) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("device", [None, STANDIN], ids=["host", "standin"])
def test_rows_are_copied_as_a_gather_then_a_copy_would_copy_them(dtype, transposed, device):
    """``to_host_rows``: a float32 tensor's rows gathered straight into the
    destination, other dtypes through a gather; the same values either way."""
    from harness.core.host import to_host_rows

    t = torch.randn(7, 3, 4, 5).to(dtype)
    if transposed:
        t = t.transpose(-1, -2)
    index = torch.tensor([5, 0, 6, 6, 2])
    new_array = cp.host_array if device is None else device.empty
    got = to_numpy(to_host_rows(t, index, new_array))
    assert got.dtype == np.float32 and got.shape == (5, *t.shape[1:])
    np.testing.assert_array_equal(got, t[index].float().numpy())
