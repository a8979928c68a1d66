"""Tests of ``gdn-harness bench`` (harness/bench/) that need no GPU.

The arithmetic that turns timings into claims (the byte floor, the input-set
rotation, the target verdicts) is checked on known numbers; the whole command
runs once end to end in its ``--dry`` mode (Triton interpreter, no CUDA
graphs), including a wrong plug-in that must be reported FAIL and never timed.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import sys
import xml.dom.minidom
from pathlib import Path

import pytest
import torch

from harness.bench import floor, inputsets, recurrent, verify
from harness.bench.bandwidth import best_copy
from harness.bench.config import Shape, parse_shapes
from harness.bench.floor import StepBytes, auto_input_sets, set_footprint, step_bytes
from harness.bench.rows import (
    SCHEMA,
    CaseRow,
    CopyBandwidth,
    MainRow,
    RecurrentRow,
    strict_json,
)
from harness.bench.table import refloor
from harness.bench.targets import (
    evaluate_recurrent,
    evaluate_targets,
    target_cell,
    target_summary,
)
from harness.bench.timing import l2_bytes
from harness.bench.verify import sample_rows
from harness.check.tolerance import resolve
from harness.cli import main
from harness.core.spec import Tolerance
from harness.impls.oracle import oracle_decode
from harness.inputs import build_inputs, slot_indices

TESTS = Path(__file__).resolve().parent


# --- the byte floor ------------------------------------------------------------------


def test_step_bytes_qwen3_next_tp1_b1():
    """B=1, H/HV 16/32, K=V=128, bf16 activations, fp32 state, by hand."""
    sb = step_bytes(1, Shape(16, 32), act_bytes=2, state_bytes=4)
    assert sb.state == 2 * 32 * 128 * 128 * 4 == 4_194_304  # read + write once
    assert sb.qkv == (2 * 16 * 128 + 32 * 128) * 2 == 16_384
    assert sb.gates == 2 * 32 * 2 == 128  # a and b
    assert sb.out == 32 * 128 * 2 == 8_192
    assert sb.params == 2 * 32 * 4 == 256  # A_log, dt_bias in fp32
    assert sb.indices == 4
    assert sb.total == 4_219_268


def test_step_bytes_scales_with_batch_except_params():
    one = step_bytes(1, Shape(4, 8), 2, 4)
    many = step_bytes(1024, Shape(4, 8), 2, 4)
    assert many.params == one.params
    assert many.total - many.params == 1024 * (one.total - one.params)
    # The state dominates: 2 * 1024 * 8 * 128 * 128 * 4 bytes.
    assert many.state == 1_073_741_824


def test_floor_time_and_percent_from_copy_bandwidth():
    """% of floor = (bytes / copy bandwidth) / measured time."""
    total = step_bytes(256, Shape(16, 32), 2, 4).total
    copy_GBps = 3000.0
    floor_us = total / (copy_GBps * 1e9) * 1e6
    assert floor_us == pytest.approx(total / 3e6)
    measured_us = floor_us / 0.97
    assert 100 * floor_us / measured_us == pytest.approx(97.0)


def _copy(GBps: float) -> CopyBandwidth:
    return CopyBandwidth(2**30, 2**31, 20, 2**31 / GBps / 1e6, GBps, "test")


def test_floor_takes_the_faster_of_the_two_copy_measurements():
    best = best_copy(_copy(2900.0), _copy(3000.0))
    assert best.GBps == 3000.0
    assert (best.start_GBps, best.end_GBps) == (2900.0, 3000.0)
    assert best_copy(_copy(3000.0), _copy(2900.0)).GBps == 3000.0


def test_refloor_recomputes_percent_and_verdicts():
    floor_bytes = 3000e9 * 97e-6  # 97 us at 3000 GB/s
    row = _row(256, floor_bytes=floor_bytes, time_us=100.0, speedup=2.0)
    refloor([row], 2900.0)  # slower copy: the kernel looks better
    assert row.pct_floor == pytest.approx(100.0 * 3000 / 2900 * 0.97)
    assert row.targets and all(t.ok for t in row.targets)
    refloor([row], 3000.0)
    assert row.pct_floor == pytest.approx(97.0)
    assert row.floor_us == pytest.approx(97.0)
    untimed = _row(256, floor_bytes=floor_bytes)
    refloor([untimed], 3000.0)
    assert untimed.pct_floor is None and "pct_floor" not in strict_json(untimed)


def test_set_footprint_counts_state_once():
    sb = step_bytes(8, Shape(16, 32), 2, 4)
    fp = set_footprint(8, Shape(16, 32), 2, 4)
    assert fp == sb.state // 2 + sb.qkv + sb.gates + sb.out + sb.indices


def test_auto_input_sets_exceed_l2_and_respect_limits():
    l2 = 50 * 2**20
    per_set = set_footprint(1, Shape(16, 32), 2, 4)  # ~2 MiB of state
    n = auto_input_sets(per_set, l2)
    assert n * per_set >= floor.L2_FACTOR * l2
    assert (n - 1) * per_set < floor.L2_FACTOR * l2  # no more than needed
    big = set_footprint(1024, Shape(16, 32), 2, 4)  # 2 GiB: already far beyond L2
    assert auto_input_sets(big, l2) == floor.MIN_SETS
    assert auto_input_sets(1, l2) == floor.MAX_SETS
    assert auto_input_sets(big, l2, mem_budget=big) == 1  # never more than fits


def test_probe_case_rotates_as_the_bench_does():
    shape = Shape(1, 2, 16, 16)
    sets = inputsets.probe_case(shape, 3, "kv", torch.device("cpu"))
    per_set = set_footprint(3, shape, 2, 4)
    assert sets.count == auto_input_sets(per_set, l2_bytes(torch.device("cpu")))
    assert sets.pool.dtype == torch.float32 and sets.pool.shape[1:] == (2, 16, 16)
    assert sets.args(0)[0].dtype == torch.bfloat16
    assert sorted(sets.indices(1).tolist()) == [3, 4, 5]


def test_sample_rows_cover_first_and_last():
    assert sample_rows(3, 16).tolist() == [0, 1, 2]
    rows = sample_rows(1024, 16)
    assert rows[0] == 0 and rows[-1] == 1023 and len(rows) == 16


def test_parse_shapes():
    assert parse_shapes("16/32,4/8") == [Shape(16, 32), Shape(4, 8)]
    assert parse_shapes("2/6/48/100") == [Shape(2, 6, 48, 100)]
    assert Shape(2, 6, 48, 100).label == "2/6/48/100"
    for bad in ("16", "16/30", "a/b", "0/8"):
        with pytest.raises(Exception, match="shape"):
            parse_shapes(bad)


# --- targets -----------------------------------------------------------------------


def _row(B, layout="vk", impl="packed", shape=(16, 32), act_dtype="bf16", **measured):
    dims = Shape(*shape)
    sb = step_bytes(B, dims, 2, 4)
    fields = dict(act_dtype=act_dtype, state_dtype="fp32", input_sets=2, rotated_bytes=0,
                  floor_bytes=sb.total, floor_breakdown=sb, impl=impl)  # fmt: skip
    return MainRow(**CaseRow.case(dims, layout, B), **{**fields, **measured})


def _rec(**measured):
    return RecurrentRow(**CaseRow.case(Shape(16, 32), "vk", 1), input_sets=2, **measured)


def _verdicts(row):
    return {t.name: t.ok for t in evaluate_targets(row)}


def test_targets_floor_vk_large_batch():
    v = _verdicts(_row(256, pct_floor=96.9, speedup=2.0, time_us=100.0))
    assert v == {"vk >= 97% of floor (B >= 256)": False, "faster than baseline": True}
    v = _verdicts(_row(1024, pct_floor=97.0, speedup=2.0, time_us=100.0))
    assert all(v.values())


def test_targets_floor_vk_b64_and_speedup():
    v = _verdicts(_row(64, pct_floor=92.9, speedup=1.29, time_us=10.0))
    assert v == {
        "vk >= 93% of floor (B = 64)": False,
        "faster than baseline": True,
        ">= 1.3x baseline (B <= 64)": False,
    }
    assert all(_verdicts(_row(64, pct_floor=93.0, speedup=1.3, time_us=10.0)).values())


def test_target_detail_never_prints_a_miss_equal_to_its_bound():
    (miss,) = [t for t in evaluate_targets(_row(32, speedup=1.2974, time_us=50.0)) if not t.ok]
    assert miss.detail == ">= 1.3x baseline (B <= 64): 1.297 vs 1.3"
    (floor,) = evaluate_targets(_row(256, pct_floor=96.996, speedup=2.0, time_us=9.0))[:1]
    assert floor.detail == "vk >= 97% of floor (B >= 256): 96.996 vs 97"
    v = [t.detail for t in evaluate_targets(_row(64, pct_floor=93.0, speedup=1.3, time_us=9.0))]
    assert "vk >= 93% of floor (B = 64): 93 vs 93" in v


def test_targets_kv_floor_is_90_and_no_b64_floor():
    v = _verdicts(_row(512, layout="kv", pct_floor=89.9, speedup=1.5, time_us=100.0))
    assert v["kv >= 90% of floor (B >= 256)"] is False
    v = _verdicts(_row(64, layout="kv", pct_floor=50.0, speedup=1.5, time_us=10.0))
    assert not any("floor" in name for name in v)


def test_targets_b1_latency_and_not_faster():
    v = _verdicts(_row(1, pct_floor=40.0, speedup=1.0, time_us=2.6))
    assert v == {
        "faster than baseline": False,  # equal is not faster
        ">= 1.3x baseline (B <= 64)": False,
        "B = 1 within 2.5 us": False,
    }
    assert all(_verdicts(_row(1, pct_floor=40.0, speedup=3.0, time_us=2.5)).values())


def test_targets_untimed_row_misses_everything():
    results = evaluate_targets(_row(256))  # check failed: no time, no speedup
    assert results and not any(r.ok for r in results)
    assert all("not measured" in r.detail for r in results)


def test_targets_apply_only_to_packed_on_stated_configs():
    assert evaluate_targets(_row(256, impl="baseline", pct_floor=10.0, speedup=1.0)) == []
    assert evaluate_targets(_row(256, shape=(16, 64), pct_floor=10.0, speedup=1.0)) == []
    fp16 = _row(256, pct_floor=10.0, speedup=1.0, act_dtype="fp16")
    assert evaluate_targets(fp16) == []


def test_recurrent_target_within_ten_percent():
    assert evaluate_recurrent(_rec(baseline_us=11.0, fla_us=10.0)).ok is True
    assert evaluate_recurrent(_rec(baseline_us=11.2, fla_us=10.0)).ok is False
    assert evaluate_recurrent(_rec(baseline_us=5.0, fla_us=10.0)).ok is True  # faster is fine
    assert evaluate_recurrent(_rec(baseline_us=5.0)) is None  # FLA not installed
    disagree = _rec(baseline_us=5.0, fla_us=10.0, agree=False)
    assert evaluate_recurrent(disagree).ok is False  # fast but computing something else


def test_target_cell_and_summary():
    miss = _row(256, pct_floor=90.0, speedup=0.9, time_us=100.0)
    ok = _row(512, pct_floor=99.0, speedup=1.1, time_us=100.0)
    cells = [target_cell(evaluate_targets(r)) for r in (miss, ok)]
    assert cells[0].startswith("MISS: ") and "97%" in cells[0] and "faster" in cells[0]
    assert cells[1] == "PASS"
    assert target_cell([]) == "-"
    for r in (miss, ok):
        r.targets = evaluate_targets(r)
    slow = _rec(baseline_us=2.0, fla_us=1.0)
    slow.target = evaluate_recurrent(slow)
    tally = target_summary([miss, ok], [_rec(), slow])
    assert (tally.evaluated, tally.passed, len(tally.missed)) == (5, 2, 3)
    assert any("recurrent" in m for m in tally.missed)


def test_load_fla_reports_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "fla.ops.gated_delta_rule", None)  # import fails
    monkeypatch.delitem(sys.modules, recurrent.FLA_ADAPTER, raising=False)  # imported anew
    fla, desc = recurrent.load_fla()
    assert fla is None and desc.startswith("fla not installed")


def test_strict_json():
    out = strict_json({"a": [float("nan"), 1.0], "b": {"c": float("inf")}})
    assert out == {"a": ["nan", 1.0], "b": {"c": "inf"}}
    json.dumps(out, allow_nan=False)


# --- built on the harness's parts --------------------------------------------------------

CPU = torch.device("cpu")
TINY = Shape(1, 2, 16, 16)


def test_input_sets_are_rows_of_one_harness_case():
    """The sets are what harness.inputs builds for one case of R*B rows; set i's
    slots are the harness's order for one set (seed + i), moved to its region."""
    sets = inputsets.build_sets(TINY, 3, "kv", 4, "bf16", "fp32", CPU, seed=5)
    again = build_inputs(inputsets.rotation_spec(sets.spec, 4))
    for name in ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state"):
        assert torch.equal(getattr(sets.inputs, name), getattr(again, name)), name
    for i in range(4):
        own = slot_indices(dataclasses.replace(sets.spec, seed=5 + i))
        assert sets.indices(i).tolist() == [3 * i + s for s in own]
        qkv, a, *_, state, idx, out = sets.args(i)
        assert torch.equal(qkv, sets.inputs.mixed_qkv[3 * i : 3 * i + 3]) and state is sets.pool
        assert a.stride() == sets.inputs.a.stride() and out.shape == (3, 2, 16)
        assert idx.dtype == torch.int32 and torch.equal(idx, sets.indices(i))
    assert sets.spec.B == 3 and sets.spec.pool == 3  # what `unsupported` hooks see


def test_check_goes_through_the_harness_check(monkeypatch):
    """run_check: the harness's tolerance and error statistics on the sampled rows,
    every output row must be written, and every call starts from the same state."""
    sets = inputsets.build_sets(TINY, 5, "vk", 2, "bf16", "fp32", CPU)
    chk = verify.prepare_check(sets, 3)
    assert chk.rows.tolist() == [0, 2, 4]
    assert chk.ctx.tol_state == resolve(Tolerance(), "fp32", 16)
    assert chk.ctx.tol_out == resolve(Tolerance(), "bf16", 16)

    def off_state(*args, **kw):  # row 2's slot 0.1% off: far beyond the fp32 bound
        oracle_decode(*args, **kw)
        args[5][args[6][2]] *= 1.001

    def unwritten(*args, **kw):
        oracle_decode(*args, **kw)
        args[7][1] = float("nan")

    def raises(*args, **kw):
        raise ValueError("no")

    ok, detail = verify.run_check(off_state, sets, chk)
    assert not ok and detail.startswith("state: ") and "elements over tolerance" in detail
    ok, detail = verify.run_check(unwritten, sets, chk)
    assert (ok, detail) == (False, "1 of 5 output rows not finite (unwritten?)")
    assert verify.run_check(raises, sets, chk) == (False, "raised ValueError: no")
    ok, detail = verify.run_check(oracle_decode, sets, chk)  # from the restored state
    assert ok and detail.startswith("3 sampled rows vs float64 oracle"), detail


def test_rows_are_written_as_before():
    """Typed rows in bench.json: fields in the old order, unmeasured ones left out,
    a recurrent row's target written as null."""
    row = _row(4, floor_bytes=1000)
    refloor([row], 1.0)
    row.copy_us = 2.0
    assert list(strict_json(row)) == [
        "shape", "H", "HV", "K", "V", "layout", "B", "act_dtype", "state_dtype", "input_sets",
        "rotated_bytes", "floor_bytes", "floor_breakdown", "impl", "status", "check", "detail",
        "floor_us", "targets", "copy_us",
    ]  # fmt: skip
    written = strict_json(row)
    assert list(written["floor_breakdown"]) == [f.name for f in dataclasses.fields(StepBytes)]
    missed = {"name": "faster than baseline", "ok": False}
    assert written["targets"][0] == {**missed, "detail": "faster than baseline: not measured"}
    rec = strict_json(_rec(baseline_us=1.5))
    assert rec["target"] is None and "fla_us" not in rec and rec["baseline_us"] == 1.5


def test_split_sets_are_what_the_baseline_recurs_on():
    """The recurrent comparison's inputs are the baseline's own stage 1 and 2 outputs:
    its recurrent kernel on them is bit for bit baseline_decode on the set."""
    from kernels import baseline_decode
    from kernels.baseline import baseline_recurrent

    one = inputsets.build_sets(TINY, 3, "vk", 2, "bf16", "fp32", CPU, slot_order="identity")
    two = inputsets.build_sets(TINY, 3, "vk", 2, "bf16", "fp32", CPU, slot_order="identity")
    s = recurrent.split_sets(one)[1]
    idx = torch.arange(3, dtype=torch.int32)
    baseline_recurrent(s.q, s.k, s.v, s.g, s.beta, s.state, idx, s.out, scale=0.25)
    baseline_decode(*two.args(1), **two.kwargs())
    assert torch.equal(one.out(1), two.out(1)) and torch.equal(one.pool, two.pool)
    assert s.state.data_ptr() == one.pool[3].data_ptr()  # set 1's dense block, in place


@pytest.mark.parametrize("v_first", [True, False], ids=["state_v_first", "transposed"])
def test_fla_recurrent_maps_the_vk_layout(v_first, monkeypatch):
    """The adapter's recurrent(): a vk state gives the transpose of the kv result,
    through FLA's V-first keyword or by transposing around the call."""
    fla, desc = recurrent.load_fla()
    if fla is None:
        pytest.skip(desc)
    if not v_first:
        monkeypatch.setitem(fla.FEATURES, "v_first_kwarg", None)
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 1, 1, 16, generator=g) for _ in range(2))
    v = torch.randn(2, 1, 2, 8, generator=g)
    gate, beta = -torch.rand(2, 1, 2, generator=g), torch.rand(2, 1, 2, generator=g)
    kv = torch.randn(2, 2, 16, 8, generator=g)
    kw = {"scale": 0.25, "use_qk_l2norm_in_kernel": True}
    o_kv, h_kv = fla.recurrent(q, k, v, gate, beta, kv, state_layout="kv", **kw)
    o_vk, h_vk = fla.recurrent(q, k, v, gate, beta, kv.transpose(-1, -2).contiguous(),
                               state_layout="vk", **kw)  # fmt: skip
    assert torch.allclose(o_vk, o_kv, atol=1e-6) and h_vk.shape == (2, 2, 8, 16)
    assert torch.allclose(h_vk.transpose(-1, -2), h_kv, atol=1e-6)


def test_benchmark_scripts_import_public_names_only():
    """benchmarks/ uses the kernel's and the bench's public names, never a private one."""
    for path in sorted((TESTS.parent / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module.startswith(("harness", "kernels")):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_persistent_variant_is_the_packed_step():
    """benchmarks/packed_variants.py launches the kernel's public tile on a persistent
    grid: bit for bit the packed step (under the interpreter on CPU)."""
    from benchmarks import packed_variants
    from kernels import packed_decode

    one = inputsets.build_sets(TINY, 3, "kv", 2, "bf16", "fp32", CPU)
    two = inputsets.build_sets(TINY, 3, "kv", 2, "bf16", "fp32", CPU)
    packed_variants.p8_s2(*one.args(1), **one.kwargs())
    packed_decode(*two.args(1), **two.kwargs())
    assert torch.equal(one.out(1), two.out(1)) and torch.equal(one.pool, two.pool)


# --- the command, end to end on CPU ---------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_bench_without_dry_needs_cuda(capsys):
    assert main(["bench", "--device", "cpu"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_dry_run_end_to_end(tmp_path, monkeypatch, capsys):
    """--dry runs every section and writes json/md/svg; a wrong plug-in fails its
    check, is not timed, and makes the exit code 1."""
    monkeypatch.syspath_prepend(str(TESTS))
    out = tmp_path / "bench"
    rc = main(["bench", "--device", "cpu", "--dry", "--batches", "1,3", "--out", str(out),
               "--impl", "fixtures_impls:decode_zero"])  # fmt: skip
    assert rc == 1
    report = json.loads((out / "bench.json").read_text())
    assert report["schema"] == SCHEMA and report["dry"] is True
    assert "partial" not in report  # the run finished
    assert report["device"]["kind"] == "cpu" and report["versions"]["torch"]
    copy = report["copy_bandwidth"]
    assert copy["GBps"] == max(copy["start_GBps"], copy["end_GBps"]) > 0
    rows = report["rows"]
    assert len(rows) == 2 * 2 * 3  # layouts x batches x (packed, baseline, decode_zero)
    for r in rows:
        floor = step_bytes(r["B"], Shape(r["H"], r["HV"], r["K"], r["V"]), 2, 4)
        assert r["floor_bytes"] == floor.total
        if r["impl"] in ("packed", "baseline"):
            assert r["check"] == "PASS", r["detail"]
            assert r["time_us"] > 0 and r["pct_floor"] > 0 and r["GBps"] > 0
            assert r["pct_copy"] == pytest.approx(100 * r["copy_us"] / r["time_us"])
            assert r["input_sets"] == 2
        else:
            assert r["check"] == "FAIL" and r["status"] == "check-failed"
            assert "time_us" not in r and "speedup" not in r and "pct_copy" not in r
            assert "over tolerance" in r["detail"]
        assert r["copy_us"] > 0
    base = [r for r in rows if r["impl"] == "baseline"]
    assert all(r["speedup"] == 1.0 for r in base)
    assert report["failed_checks"] == 4
    rec = report["recurrent"]
    assert len(rec["rows"]) == 4 and all(r["baseline_us"] > 0 for r in rec["rows"])
    assert rec["fla"].startswith(("fla not installed", "fla-core"))
    if rec["fla"].startswith("fla-core"):  # FLA runs under the interpreter too
        assert all(r["agree"] and r["fla_us"] > 0 for r in rec["rows"]), rec["rows"]
    cost = report["harness_cost"]
    cpu = cost["checks"][0]
    assert cpu["check_device"] == "cpu" and cpu["seconds"] > 0 and cpu["rows_timed"] == 4
    assert "first_call_seconds" not in cpu and cpu["workers"] == 1
    assert len(cost["checks"]) == 2 or cost["check_notes"]["cuda"].startswith("not measured: ")
    assert cost["runner"]["status"] == "passed" and cost["runner"]["wall_ms"] > 0
    xml.dom.minidom.parse(str(out / "bench.svg"))
    md = (out / "bench.md").read_text()
    assert "DRY RUN" in md and "| packed |" in md
    tail = capsys.readouterr().out.strip().splitlines()
    assert tail[-1].startswith("checks failed: 4")
    assert any("decode_zero" in line and "FAIL" in line for line in tail)


def test_recurrent_only_writes_reports(tmp_path):
    out = tmp_path / "rec"
    rc = main(["bench", "--device", "cpu", "--dry", "--recurrent-only", "--layouts", "kv",
               "--batches", "2", "--out", str(out)])  # fmt: skip
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    assert "rows" not in report and "harness_cost" not in report
    assert [r["layout"] for r in report["recurrent"]["rows"]] == ["kv"]
    assert math.isfinite(report["recurrent"]["rows"][0]["baseline_us"])
    assert (out / "bench.md").exists() and (out / "bench.svg").exists()


@pytest.mark.parametrize("order", ["permuted", "identity"])
def test_slot_orders_give_each_set_its_own_region(order):
    sets = inputsets.build_sets(
        Shape(1, 2, 16, 16), 5, "vk", 3, "bf16", "fp32", torch.device("cpu"), slot_order=order
    )
    indices = [sets.indices(i).tolist() for i in range(sets.count)]
    for i, idx in enumerate(indices):
        assert sorted(idx) == list(range(5 * i, 5 * i + 5))
        if order == "identity":
            assert idx == list(range(5 * i, 5 * i + 5))
    assert (order == "identity") == all(p == sorted(p) for p in indices)
