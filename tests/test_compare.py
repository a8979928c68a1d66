"""Tests of the error statistics (harness/compare.py)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.check.compare import DriftStats, ErrorStats, Location, rel_rms, saturate_overflow
from harness.check.tolerance import overflow_threshold


def new_stats(**kw) -> ErrorStats:
    base = dict(quantity="state", pair="packed vs oracle", step=2, tolerance="TOL-TEXT")
    base.update(kw)
    return ErrorStats(**base)


def random_chunk(rng, R, HV=3, K=4, V=5, state=True):
    shape = (R, HV, K, V) if state else (R, HV, V)
    ref = rng.standard_normal(shape)
    # A continuous distribution of errors: ties have probability zero.
    x = ref + rng.standard_normal(shape) * np.exp(rng.uniform(-12, -2, shape))
    bound = np.exp(rng.uniform(-9, -5, shape))
    return x, ref, bound


SUMMARY_FIELDS = (
    "n",
    "over",
    "nan",
    "inf",
    "max_abs",
    "max_abs_at",
    "max_rel",
    "max_rel_at",
    "worst_ratio",
    "worst_at",
    "worst_value",
    "head_ratio",
)


def assert_same_stats(a: ErrorStats, b: ErrorStats) -> None:
    for f in SUMMARY_FIELDS:
        assert getattr(a, f) == getattr(b, f), f
    assert a.err_sq == pytest.approx(b.err_sq, rel=1e-12)
    assert a.ref_sq == pytest.approx(b.ref_sq, rel=1e-12)
    assert a.ok == b.ok


# --------------------------------------------------------------------------
# Chunked accumulation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("state", [True, False], ids=["state", "out"])
def test_chunks_equal_concatenation(state):
    rng = np.random.default_rng(0)
    R = 13
    x, ref, bound = random_chunk(rng, R, state=state)
    rows = np.arange(100, 100 + R)
    slots = rng.permutation(50)[:R]
    whole = new_stats()
    whole.add(x, ref, bound, rows, slots)
    assert 0 < whole.over < whole.n  # some violations, not all
    cuts = [0, 4, 5, 11, R]
    parts = new_stats()
    for lo, hi in itertools.pairwise(cuts):
        parts.add(x[lo:hi], ref[lo:hi], bound[lo:hi], rows[lo:hi], slots[lo:hi])
    assert_same_stats(parts, whole)
    # Each reported location names the element that really holds the maximum.
    err = np.abs(x - ref)
    at = np.unravel_index(int(np.argmax(err)), err.shape)
    loc = whole.max_abs_at
    assert loc.row == rows[at[0]] and loc.slot == slots[at[0]] and loc.head == at[1]
    assert loc.v == at[-1] and loc.k == (at[2] if state else None)
    assert whole.max_abs == err[at]
    ratio = err / bound
    wat = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    assert whole.worst_value == (x[wat], ref[wat])
    assert whole.over == int((ratio > 1).sum())
    assert whole.n == x.size


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    R=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 9), max_size=4),
    state=st.booleans(),
)
def test_chunks_equal_concatenation_property(seed, R, cuts, state):
    rng = np.random.default_rng(seed)
    x, ref, bound = random_chunk(rng, R, HV=2, K=3, V=2, state=state)
    rows = rng.permutation(40)[:R]
    slots = rng.permutation(40)[:R]
    whole = new_stats()
    whole.add(x, ref, bound, rows, slots)
    edges = sorted({0, R, *(c for c in cuts if c <= R)})
    parts = new_stats()
    for lo, hi in itertools.pairwise(edges):
        parts.add(x[lo:hi], ref[lo:hi], bound[lo:hi], rows[lo:hi], slots[lo:hi])
    assert_same_stats(parts, whole)


def test_ties_keep_the_first_location():
    x = np.zeros((2, 1, 3))
    ref = np.zeros((2, 1, 3))
    x[0, 0, 1] = 0.5
    x[1, 0, 2] = 0.5  # same error later on
    bound = np.ones_like(x)
    whole, parts = new_stats(), new_stats()
    rows, slots = np.array([7, 8]), np.array([3, 4])
    whole.add(x, ref, bound, rows, slots)
    parts.add(x[:1], ref[:1], bound[:1], rows[:1], slots[:1])
    parts.add(x[1:], ref[1:], bound[1:], rows[1:], slots[1:])
    assert whole.max_abs_at == Location(row=7, slot=3, head=0, k=None, v=1)
    assert_same_stats(parts, whole)


def test_later_chunk_with_larger_error_wins_and_smaller_does_not():
    s = new_stats()
    one = np.ones((1, 2, 2))
    s.add(one * 1.1, one, one, np.array([0]), np.array([10]))
    first = s.max_abs_at
    s.add(one * 1.05, one, one, np.array([1]), np.array([11]))
    assert s.max_abs_at == first and s.max_abs == pytest.approx(0.1)
    s.add(one * 1.5, one, one, np.array([2]), np.array([12]))
    assert s.max_abs == pytest.approx(0.5)
    assert (s.max_abs_at.row, s.max_abs_at.slot) == (2, 12)
    assert s.n == 12


def test_empty_chunk_is_a_no_op():
    s = new_stats()
    empty = np.zeros((0, 2, 3))
    s.add(empty, empty, empty, np.zeros(0, int), np.zeros(0, int))
    assert s.n == 0 and s.max_abs_at is None and s.ok


def test_head_ratio_is_max_over_chunks():
    s = new_stats()
    ref = np.zeros((1, 3, 2))
    bound = np.ones_like(ref)
    x1 = np.array([[[0.5, 0.0], [2.0, 0.0], [0.0, 0.1]]])
    x2 = np.array([[[0.0, 0.7], [0.0, 1.0], [0.0, 0.0]]])
    s.add(x1, ref, bound, np.array([0]), np.array([0]))
    s.add(x2, ref, bound, np.array([1]), np.array([1]))
    assert s.head_ratio == {0: 0.7, 1: 2.0, 2: 0.1}
    assert s.over == 1 and not s.ok
    assert s.worst_ratio == 2.0
    assert s.worst_at == Location(row=0, slot=0, head=1, k=None, v=0)
    assert s.worst_value == (2.0, 0.0)


# --------------------------------------------------------------------------
# NaN / Inf
# --------------------------------------------------------------------------


def test_nan_where_ref_finite_counts():
    ref = np.ones((2, 2, 3))
    x = ref.copy()
    x[1, 0, 2] = np.nan
    s = new_stats()
    s.add(x, ref, np.full_like(x, 1e-3), np.array([4, 5]), np.array([9, 1]))
    assert s.nan == 1 and s.inf == 0
    assert s.over == 1
    assert not s.ok
    assert s.max_abs == math.inf
    assert s.max_abs_at == Location(row=5, slot=1, head=0, k=None, v=2)
    assert s.worst_at == s.max_abs_at
    assert math.isfinite(s.err_sq)


def test_nan_where_ref_nan_does_not_count():
    ref = np.ones((2, 2, 3))
    ref[0, 1, 1] = np.nan
    x = ref.copy()
    s = new_stats()
    s.add(x, ref, np.full_like(x, 1e-3), np.array([0, 1]), np.array([0, 1]))
    assert s.nan == 0 and s.over == 0 and s.ok
    assert s.max_abs == 0.0
    assert math.isfinite(s.err_sq) and math.isfinite(s.ref_sq)


def test_nan_only_state_flags_even_unchecked_counts():
    ref = np.zeros((1, 1, 2, 2))
    x = np.full_like(ref, np.nan)
    s = new_stats(checked=False)
    s.add(x, ref, np.ones_like(x), np.array([0]), np.array([0]))
    assert s.nan == 4 and s.over == 4
    assert s.ok  # unchecked: reported only


def test_inf_where_ref_finite_counts():
    ref = np.ones((1, 2, 2, 2))
    x = ref.copy()
    x[0, 1, 0, 1] = -np.inf
    x[0, 0, 1, 1] = np.inf
    s = new_stats()
    s.add(x, ref, np.ones_like(x), np.array([3]), np.array([6]))
    assert s.inf == 2 and s.nan == 0 and s.over == 2 and not s.ok
    assert s.max_abs == math.inf
    assert s.max_abs_at == Location(row=3, slot=6, head=0, k=1, v=1)


FP16_EDGE = 65520.0  # the smallest magnitude that rounds to Inf in fp16


@pytest.mark.parametrize("ref, bound", [(69029.4, 32.0), (65510.0, 32.0), (-70000.0, 1.0)])
def test_inf_that_rounds_an_overflowing_reference_is_no_error(ref, bound):
    refs = np.array([[[ref, 1.0]]])
    x = np.array([[[math.copysign(math.inf, ref), 1.0]]])
    s = new_stats(quantity="out")
    s.add(x, refs, np.full_like(x, bound), np.array([0]), np.array([0]), overflow=FP16_EDGE)
    assert s.ok and s.inf == 0 and s.over == 0 and s.rounded_inf == 1
    assert s.max_abs == max(0.0, FP16_EDGE - abs(ref)) <= bound
    assert "1 Inf where the oracle overflows" in s.summary()


@pytest.mark.parametrize(
    "x, ref",
    [
        (math.inf, 60000.0),  # short of the overflow range by more than the bound
        (-math.inf, 69029.4),  # the wrong sign
        (math.inf, math.nan),  # no reference to round
    ],
)
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_other_infinities_still_count(x, ref):
    s = new_stats(quantity="out")
    xs, refs = np.array([[[x]]]), np.array([[[ref]]])
    s.add(xs, refs, np.full_like(xs, 32.0), np.array([0]), np.array([0]), overflow=FP16_EDGE)
    assert not s.ok and s.rounded_inf == 0


def test_infinities_count_when_no_overflow_threshold_is_given():
    s = new_stats(quantity="out")
    s.add(np.array([[[math.inf]]]), np.array([[[7e4]]]), np.ones((1, 1, 1)), [0], [0])
    assert s.inf == 1 and not s.ok


def test_saturate_overflow_leaves_finite_values_and_the_input_alone():
    x = np.array([1.0, math.inf, -math.inf, 5.0])
    ref = np.array([1.5, 7e4, -6.55e4, 5.0])
    y, n = saturate_overflow(x, ref, np.full(4, 32.0), FP16_EDGE)
    assert n == 2 and y.tolist() == [1.0, 7e4, -FP16_EDGE, 5.0]
    assert math.isinf(x[1])  # a copy, not the caller's array


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
def test_overflow_threshold_is_where_rounding_reaches_inf(dtype):
    edge = overflow_threshold(dtype)
    if dtype == "bf16":  # the bf16 edge is an fp32 number, and fp32 -> bf16 rounds once
        torch = pytest.importorskip("torch")
        below = float(np.nextafter(np.float32(edge), np.float32(0)))

        def to(v):
            return float(torch.tensor(v, dtype=torch.float32).to(torch.bfloat16))
    else:
        below = float(np.nextafter(edge, 0.0))
        to = {"fp16": np.float16, "fp32": np.float32}[dtype]
    with np.errstate(over="ignore"):
        assert math.isinf(to(edge)) and math.isfinite(to(below))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_finite_where_ref_inf_is_over():
    ref = np.ones((1, 1, 3))
    ref[0, 0, 0] = np.inf
    x = np.ones_like(ref)
    s = new_stats()
    s.add(x, ref, np.ones_like(x), np.array([0]), np.array([0]))
    assert s.inf == 0 and s.over == 1 and not s.ok


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_matching_infinities_do_not_hide_the_worst_element():
    ref = np.array([[[np.inf, 1.0, 1.0]]])
    x = np.array([[[np.inf, 1.0, 3.0]]])
    s = new_stats()
    s.add(x, ref, np.full_like(x, 0.5), np.array([0]), np.array([0]))
    assert s.inf == 0 and s.over == 1
    assert s.max_abs == 2.0
    assert s.max_abs_at == Location(row=0, slot=0, head=0, k=None, v=2)
    assert s.worst_ratio == 4.0


# --------------------------------------------------------------------------
# Locations and text
# --------------------------------------------------------------------------


def test_location_out_array():
    x = np.zeros((3, 4, 5))
    x[2, 3, 1] = 0.25
    s = new_stats(quantity="out")
    s.add(x, np.zeros_like(x), np.full_like(x, 0.1), np.array([10, 11, 12]), np.array([7, -1, 0]))
    want = Location(row=12, slot=0, head=3, k=None, v=1)
    assert s.max_abs_at == want and s.worst_at == want
    assert str(want) == "row 12 slot 0 head 3 v=1"


def test_location_state_array():
    x = np.zeros((3, 4, 6, 5))
    x[1, 2, 5, 3] = -0.25
    s = new_stats()
    s.add(x, np.zeros_like(x), np.full_like(x, 0.1), np.array([10, 11, 12]), np.array([7, 4, 0]))
    want = Location(row=11, slot=4, head=2, k=5, v=3)
    assert s.max_abs_at == want and s.worst_at == want
    assert str(want) == "row 11 slot 4 head 2 k=5 v=3"


def test_max_rel_location_differs_from_max_abs():
    ref = np.array([[[100.0, 1e-3]]])
    x = np.array([[[101.0, 2e-3]]])  # abs error 1 at v=0, rel error 1 at v=1
    s = new_stats(quantity="out")
    s.add(x, ref, np.ones_like(x), np.array([0]), np.array([5]))
    assert s.max_abs_at.v == 0 and s.max_rel_at.v == 1
    assert s.max_rel == pytest.approx(1.0)
    assert s.max_abs == pytest.approx(1.0)


def test_summary_mentions_location_counts_and_tolerance():
    x = np.zeros((2, 2, 3, 4))
    x[1, 1, 2, 3] = 0.5
    x[0, 0, 0, 0] = np.nan
    s = new_stats()
    s.add(x, np.zeros_like(x), np.full_like(x, 0.01), np.array([3, 8]), np.array([1, 6]))
    text = s.summary()
    assert "state packed vs oracle step 2" in text
    assert f"2/{x.size} over tolerance" in text
    assert "1 NaN, 0 Inf" in text
    assert "row 3 slot 1 head 0 k=0 v=0" in text  # the NaN is the max abs error
    assert "TOL-TEXT" in text
    clean = new_stats()
    y = np.zeros((2, 2, 3, 4))
    y[1, 1, 2, 3] = 0.5
    clean.add(y, np.zeros_like(y), np.full_like(y, 0.01), np.array([3, 8]), np.array([1, 6]))
    text = clean.summary()
    assert "row 8 slot 6 head 1 k=2 v=3" in text
    assert "NaN" not in text
    assert "got 0.5, want 0" in text


def test_to_dict_json_serialisable_with_inf():
    x = np.ones((1, 2, 3))
    x[0, 1, 2] = np.inf
    s = new_stats()
    s.add(x, np.ones_like(x), np.ones_like(x), np.array([2]), np.array([4]))
    d = s.to_dict()
    text = json.dumps(d)
    back = json.loads(text)
    assert back["max_abs"] == "inf"
    assert back["max_abs_at"] == "row 2 slot 4 head 1 v=2"
    assert back["head_ratio"] == {"0": 0.0, "1": "inf"}
    assert back["ok"] is False and back["inf"] == 1
    assert back["tolerance"] == "TOL-TEXT"


def test_to_dict_strict_json_with_inf():
    x = np.ones((1, 2, 3))
    x[0, 1, 2] = np.inf
    s = new_stats()
    s.add(x, np.ones_like(x), np.ones_like(x), np.array([2]), np.array([4]))
    json.dumps(s.to_dict(), allow_nan=False)


def test_to_dict_strict_json_when_finite():
    x = np.ones((1, 2, 3)) * 1.5
    s = new_stats()
    s.add(x, np.ones_like(x), np.ones_like(x), np.array([2]), np.array([4]))
    back = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert back["max_abs"] == 0.5 and back["worst_value"] == [1.5, 1.0]
    assert back["ok"] is True


def test_drift_to_dict_json():
    d = DriftStats("packed", 3, math.inf, 0.1, math.nan, 0.2).to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back == {
        "who": "packed",
        "step": 3,
        "state_max_abs": "inf",
        "state_rel_rms": 0.1,
        "out_max_abs": "nan",
        "out_rel_rms": 0.2,
    }


# --------------------------------------------------------------------------
# RMS ratios
# --------------------------------------------------------------------------


def test_rel_rms():
    ref = np.array([3.0, 4.0])
    assert rel_rms(ref, ref) == 0.0
    assert rel_rms(ref * 1.1, ref) == pytest.approx(0.1, rel=1e-14)
    assert rel_rms(np.array([3.0, 4.0, 0.0]), np.array([0.0, 0.0, 0.0])) == 5.0
    rng = np.random.default_rng(1)
    r = rng.standard_normal((4, 5))
    x = r + rng.standard_normal((4, 5)) * 1e-3
    want = np.linalg.norm(x - r) / np.linalg.norm(r)
    assert rel_rms(x, r) == pytest.approx(want, rel=1e-12)


def test_rms_ratio_over_chunks():
    rng = np.random.default_rng(2)
    x, ref, bound = random_chunk(rng, 6)
    s = new_stats()
    s.add(x[:2], ref[:2], bound[:2], np.arange(2), np.arange(2))
    s.add(x[2:], ref[2:], bound[2:], np.arange(2, 6), np.arange(2, 6))
    assert s.rms_ratio == pytest.approx(rel_rms(x, ref), rel=1e-12)
    assert new_stats().rms_ratio == 0.0


def test_merge_of_chunk_stats_equals_one_add():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 3, 4, 5))
    ref = x + rng.standard_normal(x.shape) * 0.3
    x[2, 1, 0, 0] = np.nan
    bound = np.full_like(x, 0.5)
    rows, slots = np.arange(7) + 10, np.arange(7)[::-1] * 3
    whole = new_stats()
    whole.add(x, ref, bound, rows, slots)
    merged = new_stats()
    for lo, hi in ((0, 2), (2, 3), (3, 7)):
        part = new_stats()
        part.add(x[lo:hi], ref[lo:hi], bound[lo:hi], rows[lo:hi], slots[lo:hi])
        merged.merge(part)
    for attr in (*SUMMARY_FIELDS, "cells"):
        assert repr(getattr(merged, attr)) == repr(getattr(whole, attr)), attr
    assert merged.err_sq == pytest.approx(whole.err_sq, rel=1e-12)
    assert merged.ref_sq == pytest.approx(whole.ref_sq, rel=1e-12)
