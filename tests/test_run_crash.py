"""A dying, exiting or hanging implementation costs its own case, not the run.

``run_cases`` in its default mode runs the cases in a worker process that is
replaced when it dies; these tests plant misbehaving implementations
(tests/fixtures_crash.py) that are correct except on the case with B = 3.
"""

from functools import cache

import pytest
from factories import spec

from harness.run import CRASHED, PASSED, RunMode, run_cases

CASES = [
    spec(name="first", B=2),
    spec(name="doomed", B=3),  # fixtures_crash.DOOMED_BATCH
    spec(name="third", B=2, seed=1),
]
FIXTURES = "tests.fixtures_crash"


@cache
def _run(impl: str, timeout: float | None = None) -> tuple[list, list]:
    """The results of CASES and the cases announced as they started (each
    worker start costs seconds: tests share a run)."""
    started = []
    results = run_cases(
        CASES, f"{FIXTURES}:{impl}", None, "cpu", timeout=timeout, on_start=started.append
    )
    return list(results), [s.name for s in started]


@pytest.mark.parametrize(
    ("impl", "reason"),
    [
        ("die_at_b3", "worker process died (exit code 77)"),
        ("segfault_at_b3", "killed by SIGSEGV"),
        ("exit_at_b3", "SystemExit: 3"),
    ],
)
def test_a_dying_implementation_costs_only_its_case(impl, reason):
    results, started = _run(impl)
    assert started == ["first", "doomed", "third"]  # each named before it ran
    assert [r.case.name for r in results] == ["first", "doomed", "third"]
    assert [r.status for r in results] == [PASSED, CRASHED, PASSED]
    assert reason in results[1].reason
    assert results[1].failed and results[1].violations[0].check == "crash"


def test_a_segfault_names_where_it_happened():
    doomed = _run("segfault_at_b3")[0][1]
    assert "fixtures_crash.py" in doomed.violations[0].message
    assert "segfault_at_b3" in doomed.violations[0].message


def test_a_timeout_works_in_the_default_mode_and_the_run_goes_on():
    results, _ = _run("hang_at_b3", timeout=3)
    assert [r.status for r in results] == [PASSED, CRASHED, PASSED]
    assert results[1].reason == "timed out after 3 s"
    assert all(r.rerun_command().endswith(" --timeout 3") for r in results)
    message = results[1].violations[0].message
    assert "hang_at_b3" in message  # the hung worker's stack, asked for before the kill


def test_a_timeout_in_this_process_is_refused_before_any_case_runs():
    with pytest.raises(ValueError, match="timeout needs a worker process"):
        run_cases(CASES, f"{FIXTURES}:hang", None, "cpu", isolate=False, timeout=3)
    with pytest.raises(ValueError, match="jobs need worker processes"):
        run_cases(CASES, "oracle", None, "cpu", isolate=False, jobs=2)


def test_an_implementation_the_worker_cannot_load_is_a_crash_that_says_so():
    (result,) = list(run_cases(CASES[:1], f"{FIXTURES}:no_such_function", None, "cpu"))
    assert result.status == CRASHED
    assert "could not load the implementations" in result.reason


@pytest.mark.parametrize(
    ("mode", "flags"),
    [
        (RunMode(), ""),
        (RunMode(isolate=False), ""),
        (RunMode(isolate=True, timeout=60), " --isolate --timeout 60"),
        (RunMode(isolate=True), " --isolate --timeout 600"),
        (RunMode(timeout=5.5), " --timeout 5.5"),
        (RunMode(graph=True), " --cuda-graph"),
        (RunMode(sanitize=True), " --sanitize"),
    ],
)
def test_rerun_commands_carry_how_the_case_ran(monkeypatch, mode, flags):
    monkeypatch.delenv("GDN_CASE_TIMEOUT", raising=False)
    from harness.run import CaseResult

    result = CaseResult(CASES[0], "packed", "baseline", rerun_flags=mode.rerun_flags())
    plain = "gdn-harness run t.yaml::first --impl packed --baseline baseline"
    assert result.rerun_command() == plain + flags


def test_the_default_worker_gives_the_results_of_this_process():
    """Bit for bit, statistics' sums included: a well-behaved run is the same
    whether its cases run here or in the default worker."""
    cases = [
        spec(name="wide", B=5, H=2, HV=4, K=128, V=128, pool=8, steps=2),  # BLAS-sized
        CASES[0],
    ]
    here = [d.to_dict() for d in run_cases(cases, "oracle", "oracle", "cpu", isolate=False)]
    there = [d.to_dict() for d in run_cases(cases, "oracle", "oracle", "cpu")]
    for row in here + there:
        row.pop("duration_s")
    assert here == there
