"""The runner's own edge cases: replay patterns, non-finite oracles, exit codes."""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from factories import spec

from harness.check.compare import ErrorStats
from harness.core.spec import CaseSpec, SlotSpec
from harness.impls.registry import load_implementation
from harness.run.memcheck import run_sanitized
from harness.run.result import CaseResult
from harness.run.runner import GRAPH_PATTERNS, _CaseRun, run_case

ROOT = Path(__file__).resolve().parent.parent


def small_pool_case() -> CaseSpec:
    return CaseSpec(
        file="<test>",
        name="small_pool",
        line=1,
        B=4,
        H=1,
        HV=1,
        K=4,
        V=4,
        pool=2,
        slots=SlotSpec(padding="alternate"),
    )


def test_graph_replay_patterns_fit_a_pool_smaller_than_the_batch():
    spec = small_pool_case()
    oracle = load_implementation("oracle")
    run = _CaseRun(spec, oracle, None, ("cpu", "cpu"), CaseResult(spec, "oracle", None), graph=True)
    for step in range(1, 2 * len(GRAPH_PATTERNS) + 1):
        run._replay_pattern(step)
        live = run.indices[run.indices >= 0]
        assert live.size <= spec.pool
        assert len(set(live.tolist())) == live.size
        assert np.all(live < spec.pool)
        assert run.parts[0].inputs.state_indices.tolist() == run.indices.tolist()


@pytest.mark.parametrize("bad_ref", [np.nan, np.inf])
def test_a_finite_value_where_the_oracle_is_not_finite_is_over(bad_ref):
    s = ErrorStats("out", "x vs oracle", 0, "tol")
    x = np.array([[[0.5, 1.0]]])
    ref = np.array([[[bad_ref, 1.0]]])
    s.add(x, ref, np.full_like(x, 0.1), np.array([0]), np.array([0]))
    assert s.over == 1 and not s.ok


def test_matching_non_finite_values_are_not_over():
    s = ErrorStats("out", "x vs oracle", 0, "tol")
    x = np.array([[[np.inf, np.nan, 1.0]]])
    s.add(x, x.copy(), np.full_like(x, 0.1), np.array([0]), np.array([0]))
    assert s.over == 0 and s.ok


def test_sys_exit_in_an_implementation_is_its_cases_crash_not_an_exit():
    from harness.run.runner import run_case

    impl = load_implementation("tests.fixtures_crash:exit_call")
    result = run_case(small_pool_case(), impl, None, "cpu")
    assert result.status == "crashed"
    assert result.reason == "SystemExit: 3"
    assert [v.check for v in result.violations] == ["crash"]


def test_sanitize_without_the_tool_is_a_crash_not_a_pass(monkeypatch):
    monkeypatch.setattr("harness.run.memcheck.sanitizer_path", lambda: None)
    result = run_sanitized(small_pool_case(), "packed", timeout_s=10)
    assert result.status == "crashed" and result.failed


@pytest.mark.parametrize("keyword", ["foo and (", "no_case_has_this_name"])
def test_bad_or_empty_selection_is_a_usage_error(tmp_path, keyword):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "c.yaml").write_text("cases:\n  - {name: one, B: 1, H: 1, HV: 1, K: 4, V: 4}\n")
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "run",
        str(cases),
        "-k",
        keyword,
        "--impl",
        "oracle",
        "--baseline",
        "none",
        "--report-dir",
        str(tmp_path / "r"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ")


def test_list_into_a_closed_pipe_ends_quietly():
    cmd = [sys.executable, "-m", "harness", "list", "--tier", "all", "cases"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"cases/")
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in proc.stderr.read()


SUMS = ("err_sq", "ref_sq", "rms_ratio")  # summed in another order over other blocks


def _stats_dicts(result) -> list[dict]:
    return [{k: v for k, v in s.to_dict().items() if k not in SUMS} for s in result.stats]


def _sums(result) -> list[float]:
    return [getattr(s, k) for s in result.stats for k in SUMS]


def test_worker_processes_check_a_case_as_this_process_does(monkeypatch):
    """A failing two-step case gives the same stats, violations and locations
    whether its steps are checked here or by the check workers, in pieces of
    one head or of whole rows."""
    from harness.check import pool as check_pool
    from harness.check import step as step_check
    from harness.run.runner import run_case

    if str(ROOT) not in sys.path:
        monkeypatch.syspath_prepend(str(ROOT))
    spec = CaseSpec(
        file="<test>",
        name="pool_path",
        line=1,
        B=6,
        H=2,
        HV=4,
        K=32,
        V=24,
        pool=9,
        steps=2,
        slots=SlotSpec(padding="alternate", order="permutation"),
    )
    impl = load_implementation("tests.planted.bugs:beta_bf16")
    base = load_implementation("oracle")
    with monkeypatch.context() as m:  # here: pieces of one head (head offsets); there: whole rows
        m.setattr(step_check, "PIECE_BYTES", 32 * 24 * 8)
        here = run_case(spec, impl, base, "cpu")
    monkeypatch.setattr(check_pool, "POOL_MIN_ELEMS", 0)
    monkeypatch.setattr(check_pool, "default_workers", lambda: 2)
    monkeypatch.setattr(check_pool, "BLOCK_BYTES", 4 * 32 * 24 * 4 * 3)  # a row a block
    check_pool.close_shared_pool()
    try:
        there = run_case(spec, impl, base, "cpu")
        pool = check_pool.shared_pool()
        assert pool._exec is not None and len(pool._exec._processes) == 2
    finally:
        check_pool.close_shared_pool()
    assert here.status == there.status == "failed"
    assert [str(v) for v in here.violations] == [str(v) for v in there.violations]
    assert _stats_dicts(here) == _stats_dicts(there)
    assert _sums(here) == pytest.approx(_sums(there), rel=1e-12)


@pytest.mark.parametrize(
    "impl, shared", [("oracle", True), ("tests.planted.bugs:beta_bf16", False)]
)
def test_later_steps_share_one_oracle_run_only_from_identical_states(monkeypatch, impl, shared):
    from harness.run.runner import run_case

    if str(ROOT) not in sys.path:
        monkeypatch.syspath_prepend(str(ROOT))
    spec = CaseSpec(file="<t>", name="steps", line=1, B=3, H=1, HV=2, K=16, V=8, pool=3, steps=3)
    result = run_case(spec, load_implementation(impl), load_implementation("oracle"), "cpu")
    per_step = [sum(s.step == step for s in result.stats) for step in range(3)]
    # one group: (out, state) for each participant and for the pair; two groups: no pair
    assert per_step == [6, 6, 6] if shared else [6, 4, 4]


def test_fp16_outputs_that_overflow_like_the_exact_value_pass():
    from harness.cases import load_file
    from harness.run.runner import run_case

    (spec,) = load_file(ROOT / "cases/regressions/fp16_output_overflow.yaml")
    result = run_case(spec, load_implementation("packed"), load_implementation("baseline"), "cpu")
    assert result.status == "passed", [str(v) for v in result.violations]
    rounded = [s for s in result.stats if s.rounded_inf]
    assert {s.pair for s in rounded} == {"packed vs oracle", "baseline vs oracle"}
    assert all(s.quantity == "out" and s.step == 2 and s.ok for s in rounded)
    assert all(math.isfinite(d.out_max_abs) for d in result.drift)


def test_an_inf_where_the_exact_value_is_in_range_is_a_violation():
    """The same case with the kernel's outputs pushed to Inf one step early."""
    from harness.cases import load_file
    from harness.run.runner import run_case

    (spec,) = load_file(ROOT / "cases/regressions/fp16_output_overflow.yaml")
    packed = load_implementation("packed")
    calls = []

    def inf_at_step_1(*args, **kwargs):
        packed.fn(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # step 0 runs twice: the determinism check
            args[-1].fill_(float("inf"))  # the output buffer

    impl = dataclasses.replace(packed, fn=inf_at_step_1, spec="inf_early")
    result = run_case(spec, impl, load_implementation("baseline"), "cpu")
    assert result.status == "failed"
    assert any(v.step == 1 and "Inf" in v.message for v in result.violations)


def test_drift_measures_an_overflowed_output_as_a_distance():
    """An Inf the step check accepted (the kernel's own trajectory crossed 65520
    while the exact one stayed just below) is a finite drift for the budget to judge."""
    from harness.check.tolerance import resolve
    from harness.core.spec import Tolerance
    from harness.run.runner import _saturated

    tol = resolve(Tolerance(), "fp16", 27)
    ref = np.array([65480.0, 3.0, -70000.0])
    got = _saturated(np.array([np.inf, 3.0, -np.inf]), ref, tol)
    assert got.tolist() == [65520.0, 3.0, -70000.0]
    wrong_sign = _saturated(np.array([-np.inf]), np.array([65480.0]), tol)
    assert np.isneginf(wrong_sign).all()


def _drift_case(**kw):
    values = {"a_log_lo": -8.0, "a_log_hi": -8.0, "gate_mean": 0.0}  # decay near 1: state carries
    dims = {"B": 3, "H": 1, "HV": 2, "K": 16, "V": 16, "pool": 4, "act_dtype": "fp32"}
    return spec(**dims, steps=kw.pop("steps", 3), values=values, **kw)


def test_one_step_s_legitimate_rounding_is_not_drift():
    """Outputs 20 epsilons off at every step: within the per-element bound, five
    times what 4 x (an exact baseline + one epsilon) allowed before, and never
    carried. No value and no drift violation."""
    impl = load_implementation("fixtures_impls:decode_out_rounded_20ulp")
    result = run_case(_drift_case(), impl, load_implementation("oracle"), "cpu")
    assert result.status == "passed", [str(v) for v in result.violations]
    assert result.drift and max(d.out_max_abs for d in result.drift if d.who == impl.spec) > 0


def test_a_bias_that_builds_up_is_caught_as_drift_while_each_step_passes():
    impl = load_implementation("fixtures_impls:decode_state_biased")
    result = run_case(_drift_case(steps=12), impl, load_implementation("oracle"), "cpu")
    checks = {v.check for v in result.violations}
    assert checks == {"drift"}, [str(v) for v in result.violations]
    first = result.violations[0]
    assert first.step >= 1 and "its own error this step" in first.message
