"""Outside kernels in ``gdn-harness bench``, and the harness-cost columns, without a GPU.

A stand-in for a null-block kernel such as vLLM's (``pad: nonpositive``,
``pad_output: unwritten``, layout vk only) runs through the whole command in
its ``--dry`` mode beside packed and baseline: its sets name no slot 0, its
check holds it to its own conventions, and its kv cases become skipped rows
with the reason. The target against vLLM and the side-by-side tables are
checked on known numbers; the GPU check column on NumPy standing in for
CuPy (``tests/gpu/standin.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from test_adapter_standins import standins  # noqa: F401 (the fixture)

from harness.bench import cost, inputsets, output, verify
from harness.bench.config import DEFAULT_BATCHES, Shape, parse_ints
from harness.bench.floor import step_bytes
from harness.bench.rows import CaseRow, MainRow
from harness.bench.table import refloor
from harness.bench.targets import peer_verdicts, target_cell
from harness.check import device as check_device
from harness.cli import main
from harness.core.conventions import Conventions
from harness.impls.oracle import oracle_decode

TESTS = Path(__file__).resolve().parent
CPU = torch.device("cpu")
TINY = Shape(1, 2, 16, 16)
NULL_BLOCK = Conventions(pad="nonpositive", pad_output="unwritten")


def _null_block_decode(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw):
    """A correct kernel whose slot 0 is the null block: a row with an index <= 0
    is padding, its output row is left alone and no slot is touched for it."""
    live = state_indices > 0
    fresh = torch.empty_like(out)
    idx = torch.where(live, state_indices, torch.full_like(state_indices, -1))
    oracle_decode(mixed_qkv, a, b, A_log, dt_bias, state, idx, fresh, **kw)
    out[live] = fresh[live]


def _vk_only(case) -> str | None:
    layout = case.layout.state_layout
    return None if layout == "vk" else f"stand-in keeps the state as vk only, not {layout}"


def null_slot_standin(*args, **kw) -> None:
    """The stand-in peer, with its declarations (resolved as ``test_bench_peers:...``)."""
    _null_block_decode(*args, **kw)


null_slot_standin.conventions = NULL_BLOCK.as_dict()  # type: ignore[attr-defined]
null_slot_standin.unsupported = _vk_only  # type: ignore[attr-defined]


def _raising_unsupported(case):
    raise KeyError("no such field")


def broken_unsupported(*args, **kw) -> None:
    """A plug-in whose ``unsupported`` hook raises."""
    oracle_decode(*args, **kw)


broken_unsupported.unsupported = _raising_unsupported  # type: ignore[attr-defined]


def bad_conventions(*args, **kw) -> None:
    """A plug-in whose declaration names no convention the harness knows."""
    oracle_decode(*args, **kw)


bad_conventions.conventions = {"pad": "sideways"}  # type: ignore[attr-defined]


# --- the input sets and the check, under the peer's conventions ------------------------------


def test_null_slot_sets_name_no_slot_0():
    """Under a null block the row that had slot 0 moves to a slot added at the end;
    every other row keeps its slot."""
    plain = inputsets.build_sets(TINY, 3, "vk", 2, "bf16", "fp32", CPU)
    null = inputsets.build_sets(TINY, 3, "vk", 2, "bf16", "fp32", CPU, null_slot=True)
    before = plain.inputs.state_indices.tolist()
    after = null.inputs.state_indices.tolist()
    assert 0 in before and 0 not in after and null.null_slot
    assert after == [6 if i == 0 else i for i in before]
    assert null.pool.shape[0] == plain.pool.shape[0] + 1 == 7
    assert null.indices(1).tolist() == plain.indices(1).tolist()


def test_a_null_block_kernel_needs_null_slot_sets():
    """On ordinary sets a live row holds slot 0, which such a kernel treats as
    padding: without its declaration it fails, and with it the bench refuses
    the sets instead of checking it on them."""
    plain = inputsets.build_sets(TINY, 3, "vk", 2, "bf16", "fp32", CPU)
    chk = verify.prepare_check(plain, 3)
    ok, detail = verify.run_check(_null_block_decode, plain, chk)
    assert not ok and "1 of 3 output rows not finite" in detail
    with pytest.raises(ValueError, match="null_slot=True"):
        verify.run_check(null_slot_standin, plain, chk, NULL_BLOCK)
    null = inputsets.build_sets(TINY, 3, "vk", 2, "bf16", "fp32", CPU, null_slot=True)
    chk = verify.prepare_check(null, 3)
    ok, detail = verify.run_check(null_slot_standin, null, chk, NULL_BLOCK)
    assert ok, detail


def test_the_null_block_must_keep_its_bits():
    null = inputsets.build_sets(TINY, 3, "vk", 2, "bf16", "fp32", CPU, null_slot=True)
    chk = verify.prepare_check(null, 3)

    def scribbles(*args, **kw):
        _null_block_decode(*args, **kw)
        args[5][0] += 1.0

    ok, detail = verify.run_check(scribbles, null, chk, NULL_BLOCK)
    assert (ok, detail) == (False, "slot 0 (the null block) was written")
    ok, _ = verify.run_check(scribbles, null, chk)  # slot 0 is nobody's here: not checked
    assert ok


def test_padding_output_rows_follow_pad_output():
    """A live row must be written; a padding row must be exact zeros under
    ``zero`` and keep its bits under ``unwritten`` (zeros are then a fault)."""
    before = torch.full((3, 2, 4), float("nan"), dtype=torch.bfloat16)
    padding = torch.tensor([False, True, False])
    out = before.clone()
    out[0] = out[2] = 1.0
    assert verify.output_rows(out, before, padding, "unwritten") == []
    assert verify.output_rows(out, before, padding, "zero") == [
        "1 of 1 padding output rows not exact zeros"
    ]
    out[1] = 0.0
    assert verify.output_rows(out, before, padding, "zero") == []
    (msg,) = verify.output_rows(out, before, padding, "unwritten")
    assert msg.startswith("1 of 1 padding output rows written")
    out[2] = float("nan")
    assert verify.output_rows(out, before, padding, "zero") == [
        "1 of 3 output rows not finite (unwritten?)"
    ]


# --- the command, end to end on CPU ----------------------------------------------------------


def test_peer_in_the_dry_run(tmp_path, monkeypatch, capsys):
    """A null-block, vk-only peer beside packed and baseline: checked and timed on
    vk, a skipped row with its reason on kv, its conventions in the report, a
    side-by-side table; a peer whose hook raises gets error rows, not a crash."""
    monkeypatch.syspath_prepend(str(TESTS))
    out = tmp_path / "bench"
    rc = main(["bench", "--device", "cpu", "--dry", "--batches", "3", "--out", str(out),
               "--no-recurrent", "--no-harness-cost",
               "--impl", "test_bench_peers:null_slot_standin",
               "--impl", "test_bench_peers:broken_unsupported"])  # fmt: skip
    report = json.loads((out / "bench.json").read_text())
    rows = {(r["layout"], r["impl"].rpartition(":")[2]): r for r in report["rows"]}
    peer = rows["vk", "null_slot_standin"]
    assert peer["check"] == "PASS" and peer["time_us"] > 0, peer["detail"]
    assert peer["conventions"] == "pad=nonpositive pad_output=unwritten"
    for impl in ("packed", "baseline"):
        assert rows["vk", impl]["check"] == "PASS" and "conventions" not in rows["vk", impl]
    skipped = rows["kv", "null_slot_standin"]
    assert (skipped["status"], skipped["check"]) == ("skipped", "-")
    assert skipped["detail"] == "stand-in keeps the state as vk only, not kv"
    assert "time_us" not in skipped
    broken = rows["vk", "broken_unsupported"]
    assert broken["status"] == "error"
    assert broken["detail"] == "unsupported() raised KeyError: 'no such field'"
    assert rc == 1 and report["failed_checks"] == 2  # the two error rows
    assert report["config"]["conventions"] == {"test_bench_peers:null_slot_standin":
                                               NULL_BLOCK.as_dict()}  # fmt: skip
    assert "slot 0 named by no row" in report["method"]["input_sets"]
    md = (out / "bench.md").read_text()
    assert "skipped: stand-in keeps the state as vk only, not kv |" in md
    assert "declares pad=nonpositive pad_output=unwritten; no row names slot 0" in md
    assert "## Peers: the same cases, side by side" in md
    assert "| packed/test_bench_peers:null_slot_standin |" in md
    text = capsys.readouterr().out
    peer_table = text[text.index("== peers: time per call (us)") :]
    kv_line = next(ln for ln in peer_table.splitlines() if ln.startswith("1/2/16/16  kv"))
    assert "SKIPPED" in kv_line and "ERROR" in kv_line


def test_malformed_conventions_stop_the_run_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(TESTS))
    out = tmp_path / "bench"
    rc = main(["bench", "--device", "cpu", "--dry", "--out", str(out),
               "--impl", "test_bench_peers:bad_conventions"])  # fmt: skip
    assert rc == 2 and not out.exists()
    assert "pad: must be one of" in capsys.readouterr().err


def test_no_null_slot_sets_without_a_null_block_peer(tmp_path):
    out = tmp_path / "bench"
    rc = main(["bench", "--device", "cpu", "--dry", "--batches", "1", "--layouts", "vk",
               "--out", str(out), "--no-recurrent", "--no-harness-cost"])  # fmt: skip
    report = json.loads((out / "bench.json").read_text())
    assert rc == 0 and report["config"]["conventions"] == {}
    assert "slot 0" not in report["method"]["input_sets"]
    assert "## Peers" not in (out / "bench.md").read_text()


@pytest.mark.usefixtures("standins")
def test_vllm_adapter_in_the_bench(tmp_path):
    """The built-in ``vllm`` adapter over the stand-in vLLM (slot 0 the null block):
    checked and timed on vk, skipped on kv with the adapter's reason, and the
    target against it evaluated on a case of its grid."""
    out = tmp_path / "bench"
    rc = main(["bench", "--device", "cpu", "--dry", "--shapes", "4/8", "--batches", "1",
               "--out", str(out), "--impl", "vllm",
               "--no-recurrent", "--no-harness-cost"])  # fmt: skip
    report = json.loads((out / "bench.json").read_text())
    assert report["failed_checks"] == 0 and rc in (0, 1)  # 1: a dry time misses a target
    rows = {(r["layout"], r["impl"]): r for r in report["rows"]}
    assert rows["vk", "vllm"]["check"] == "PASS" and rows["vk", "vllm"]["time_us"] > 0
    assert rows["vk", "vllm"]["conventions"].startswith("pad=nonpositive")
    assert rows["kv", "vllm"]["status"] == "skipped" and "vk" in rows["kv", "vllm"]["detail"]
    (t,) = [t for t in rows["vk", "packed"]["targets"] if t["name"] == "at least as fast as vllm"]
    vk = rows["vk", "packed"]["time_us"] / rows["vk", "vllm"]["time_us"]
    assert t["value"] == pytest.approx(vk) and t["ok"] == (vk <= 1.0)
    (verdict,) = report["peer_targets"]
    assert (verdict["peer"], verdict["compared"], verdict["grid"]) == ("vllm", 1, 22)
    assert len(verdict["not_run"]) == 21 and "4/8 vk B=1" not in verdict["not_run"]


# --- packed against vLLM: the target ------------------------------------------------------------


def _row(B, impl, time_us=None, layout="vk", shape=(16, 32), **fields):
    dims = Shape(*shape)
    sb = step_bytes(B, dims, 2, 4)
    return MainRow(**CaseRow.case(dims, layout, B), act_dtype="bf16", state_dtype="fp32",
                   input_sets=2, rotated_bytes=0, floor_bytes=sb.total, floor_breakdown=sb,
                   impl=impl, time_us=time_us, **fields)  # fmt: skip


def _peer_results(rows):
    refloor(rows, 3000.0)
    return {r.impl: [t for t in r.targets if t.name == "at least as fast as vllm"] for r in rows}


def test_packed_at_least_as_fast_as_vllm_per_case():
    met = _peer_results([_row(64, "packed", 10.0), _row(64, "vllm", 10.0)])
    (t,) = met["packed"]
    assert t.ok and t.value == 1.0 and met["vllm"] == []
    assert t.detail == "at least as fast as vllm: packed/vllm time 1.000 (10.00 vs 10.00 us)"
    (t,) = _peer_results([_row(64, "packed", 10.5), _row(64, "vllm", 10.0)])["packed"]
    assert not t.ok and t.value == pytest.approx(1.05)
    untimed = _row(64, "vllm", status="check-failed", detail="state: 3 elements over tolerance")
    (t,) = _peer_results([_row(64, "packed", 9.0), untimed])["packed"]
    assert not t.ok and t.value is None
    assert t.detail.endswith("vllm not timed (check-failed: state: 3 elements over tolerance)")
    (t,) = _peer_results([_row(64, "packed"), _row(64, "vllm", 9.0)])["packed"]
    assert (t.ok, t.detail) == (False, "at least as fast as vllm: not measured")


def test_vllm_target_holds_on_its_grid_only():
    """vk, 16/32 and 4/8, the default batches: not kv, not another B, not
    another shape, and not flashinfer (whose numbers are only reported)."""
    for packed, peer in [
        (_row(64, "packed", 10.0, layout="kv"), _row(64, "vllm", 5.0, layout="kv")),
        (_row(3, "packed", 10.0), _row(3, "vllm", 5.0)),
        (_row(64, "packed", 10.0, shape=(8, 32)), _row(64, "vllm", 5.0, shape=(8, 32))),
    ]:
        assert _peer_results([packed, peer])["packed"] == []
    results = _peer_results([_row(64, "packed", 10.0), _row(64, "flashinfer", 5.0)])
    assert results["packed"] == [] and target_cell(results["flashinfer"]) == "-"


def test_vllm_verdict_over_the_whole_grid():
    grid = parse_ints(DEFAULT_BATCHES)
    rows = [
        r
        for shape in ((16, 32), (4, 8))
        for B in grid
        for r in (_row(B, "packed", 9.0, shape=shape), _row(B, "vllm", 10.0, shape=shape))
    ]
    refloor(rows, 3000.0)
    (v,) = peer_verdicts(rows)
    assert (v.peer, v.met, v.compared, v.grid) == ("vllm", True, 22, 22)
    assert v.missed == v.not_run == []
    assert v.worst_ratio == pytest.approx(0.9)
    assert output.peer_verdict_line(v).startswith(
        "MET packed at least as fast as vllm at every B of the default grid (vk; 16/32 and 4/8): "
        "22 of 22 cases; slowest packed/vllm 0.900"
    )
    rows[-1].time_us = 8.0  # 4/8 B=1024: vllm now faster
    refloor(rows, 3000.0)
    (v,) = peer_verdicts(rows)
    assert v.met is False and v.worst_case == "4/8 vk B=1024"
    assert v.missed == ["4/8 vk B=1024: packed/vllm time 1.125 (9.00 vs 8.00 us)"]
    assert output.peer_verdict_line(v).endswith(
        ": at 1 of 22 cases compared; slowest packed/vllm 1.125 at 4/8 vk B=1024"
    )
    some = [r for r in rows if r.B <= 64 and r.shape == "16/32"]
    refloor(some, 3000.0)
    (v,) = peer_verdicts(some)
    assert v.met is None and v.compared == 7 and len(v.not_run) == 15
    line = output.peer_verdict_line(v)
    assert line.startswith("NOT EVALUATED packed at least as fast as vllm")
    assert line.endswith(
        ": 15 of the grid's 22 cases not run; none of the 7 run missed"
        "; slowest packed/vllm 0.900 at 16/32 vk B=1"
    )
    assert peer_verdicts([r for r in rows if r.impl == "packed"]) == []  # no vllm row


def test_peer_table_puts_peers_beside_packed():
    rows = [_row(8, "packed", 2.0), _row(8, "baseline", 4.0), _row(8, "vllm", 2.5),
            _row(8, "flashinfer", 1.6), _row(8, "flashinfer-bf16", status="skipped")]  # fmt: skip
    peers = output.peer_names(rows)
    assert peers == ["vllm", "flashinfer", "flashinfer-bf16"]
    assert output.peer_columns(peers)[3:] == [
        "packed_us", "vllm_us", "flashinfer_us", "flashinfer-bf16_us",
        "packed/vllm", "packed/flashinfer", "packed/flashinfer-bf16",
    ]  # fmt: skip
    (cells,) = output.peer_table_rows(rows, peers)
    assert cells == ["16/32", "vk", "8", "2.00", "2.50", "1.60", "SKIPPED", "0.800", "1.250", "-"]


# --- the harness's cost on each check device ---------------------------------------------------


@pytest.fixture
def standin_device(monkeypatch):
    """NumPy behind CuPy's wall as the GPU check device; every step goes to it."""
    monkeypatch.syspath_prepend(str(TESTS / "gpu"))
    import standin

    device = check_device.ArrayDevice(sys.modules[standin.NAME])
    monkeypatch.setattr(cost, "cuda_check_device", lambda run_device: (device, None))
    monkeypatch.setattr(check_device, "DEVICE_MIN_ELEMS", 0)
    return device


def test_check_cost_side_by_side(standin_device, monkeypatch):
    def no_runner(device, dry):
        raise RuntimeError("not today")

    monkeypatch.setattr(cost, "runner_overhead", no_runner)
    hc = cost.harness_cost(CPU, dry=True, oracle_rows=None, seed=0)
    cpu, gpu = hc.checks
    assert (cpu.check_device, gpu.check_device) == ("cpu", standin_device.name)
    assert cpu.first_call_seconds is None and cpu.workers == 1 and cpu.reps == 1
    assert gpu.first_call_seconds > 0 and gpu.reps == cost.DEVICE_REPS and gpu.workers is None
    assert gpu.rows_timed == cpu.rows_timed == 4 and not gpu.extrapolated
    assert hc.check_notes == {} and hc.runner_error == "RuntimeError: not today"
    columns, cells = output.check_cost_table(hc)
    assert columns == ["check of one step", "cpu", standin_device.name]
    assert [c[0] for c in cells] == ["seconds per step", "ns per state element", "rows timed",
                                     "first call, s (compiles)", "how"]  # fmt: skip
    assert cells[3][1] == "-" and cells[4][2].startswith("median of 3 calls after the first")
    lines = output.harness_cost_lines(hc)
    assert any("checks the step" in ln and "as fast as cpu" in ln for ln in lines)
    assert "runner error: RuntimeError: not today" in lines


def test_cpu_column_alone_with_a_note(monkeypatch):
    monkeypatch.setattr(cost, "cuda_check_device", lambda d: (None, "CuPy cannot be imported"))
    monkeypatch.setattr(cost, "runner_overhead", lambda device, dry: None)
    hc = cost.harness_cost(CPU, dry=True, oracle_rows=2, seed=0)
    (cpu,) = hc.checks
    assert cpu.rows_timed == 2 and cpu.extrapolated
    assert cpu.seconds_full_batch == pytest.approx(2 * cpu.seconds)
    assert hc.check_notes == {"cuda": "not measured: CuPy cannot be imported"}
    columns, cells = output.check_cost_table(hc)
    assert columns == ["check of one step", "cpu"] and cells[2][1] == "2 of 4, scaled"
    assert "check on cuda: not measured: CuPy cannot be imported" in output.harness_cost_lines(hc)


def test_small_step_is_not_timed_as_a_gpu_check(monkeypatch):
    """check_blocks keeps a step below DEVICE_MIN_ELEMS on the host: timing it
    would be a CPU number under the GPU's name."""
    monkeypatch.syspath_prepend(str(TESTS / "gpu"))
    import standin

    device = check_device.ArrayDevice(sys.modules[standin.NAME])
    with pytest.raises(ValueError, match="below DEVICE_MIN_ELEMS"):
        cost.check_cost(cost.DRY_ORACLE_SHAPE, device=device)


def test_unresolvable_cuda_device_says_why(monkeypatch):
    monkeypatch.setattr(check_device, "cuda_unavailable", lambda: "CuPy finds no CUDA device")
    assert cost.cuda_check_device(CPU) == (None, "check device 'cuda': CuPy finds no CUDA device")
