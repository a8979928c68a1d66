"""An implementation that changes torch's process-wide state fails its own
case, and the state is put back before anything else runs.

The planted implementations (tests/fixtures_torch_state.py) compute correctly
and then change one setting each.
"""

import pytest
import torch
from factories import spec

from harness.impls.registry import load_implementation
from harness.inputs.build import build_inputs
from harness.run.result import FAILED, PASSED
from harness.run.runner import run_case
from harness.run.torchstate import capture, changes, restore

FIXTURES = "tests.fixtures_torch_state"
CASE = spec(name="c", steps=2)


@pytest.fixture(autouse=True)
def _torch_state_is_put_back():
    """Whatever a test here does, the next test starts from the same state."""
    before = capture()
    yield
    restore(before)


def _run(impl: str, case=CASE):
    return run_case(case, load_implementation(impl), None, "cpu")


@pytest.mark.parametrize(
    ("impl", "words"),
    [
        ("default_dtype_f64", "default dtype from torch.float32 to torch.float64"),
        ("grad_off", "grad mode (enabled) from True to False"),
        ("one_thread", "number of threads"),
        ("draws_random", "global CPU random generator"),
        ("reseeds", "global CPU random generator"),
        ("deterministic_on", "deterministic-algorithms flag"),
        ("default_device_meta", "default device from cpu to meta"),
    ],
)
def test_a_change_to_torch_state_is_a_violation_of_the_case_that_made_it(impl, words):
    before = capture()
    result = _run(f"{FIXTURES}:{impl}")
    assert result.status == FAILED
    found = [v for v in result.violations if v.check == "torch-state"]
    assert found and all(words in v.message for v in found), result.violations
    assert {v.who for v in found} == {f"{FIXTURES}:{impl}"}
    assert {v.check for v in result.violations} == {"torch-state"}  # the values are right
    assert changes(before, capture()) == []  # and the state is back


def test_a_change_is_undone_when_the_call_raises():
    result = _run(f"{FIXTURES}:raises_after_f64")
    assert torch.get_default_dtype() == torch.float32
    assert {v.check for v in result.violations} == {"crash", "torch-state"}


def test_the_next_case_runs_as_if_nothing_had_happened():
    oracle = load_implementation("oracle")
    alone = run_case(CASE, oracle, None, "cpu").to_dict()
    _run(f"{FIXTURES}:default_dtype_f64")
    after = run_case(CASE, oracle, None, "cpu").to_dict()
    assert after["status"] == PASSED
    for row in (alone, after):
        row.pop("duration_s")
    assert after == alone


def test_inputs_are_drawn_the_same_under_another_default_dtype():
    """Every value is drawn with an explicit dtype: the default does not reach them."""
    case = spec(name="c", values={"tiny_qk": True}, steps=2)
    want = build_inputs(case, "cpu")
    torch.set_default_dtype(torch.float64)
    got = build_inputs(case, "cpu")
    for name in ("mixed_qkv", "a", "b", "A_log", "dt_bias", "state"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    got.load_step(case, 1)
    want.load_step(case, 1)
    assert torch.equal(got.mixed_qkv, want.mixed_qkv)


def test_a_well_behaved_implementation_changes_nothing():
    for impl in ("oracle", "packed", "baseline"):
        result = _run(impl, spec(name="c", slots={"padding": "alternate"}))
        assert result.status == PASSED, (impl, result.violations)
