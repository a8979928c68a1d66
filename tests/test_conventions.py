"""Padding conventions (harness.core.conventions): declared, validated, applied to slots."""

from __future__ import annotations

import pytest

from harness.core import conventions as cv


def test_defaults_are_the_negative_sentinel_and_zero_rows():
    assert cv.Conventions("negative", "zero") == cv.DEFAULT
    assert cv.DEFAULT.is_padding(-1) and not cv.DEFAULT.is_padding(0)
    assert cv.DEFAULT.as_options() == []


def test_null_slot_makes_zero_padding():
    c = cv.Conventions(pad="nonpositive", pad_output="unwritten")
    assert c.null_slot and c.is_padding(0) and c.is_padding(-3) and not c.is_padding(1)
    assert c.as_options() == ["--pad", "nonpositive", "--pad-output", "unwritten"]
    assert c.describe() == "pad=nonpositive pad_output=unwritten"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pad": "zero"}, "pad: must be one of"),
        ({"pad_output": "skip"}, "pad_output: must be one of"),
        ({"padding": "negative"}, "unknown key"),
        (["pad"], "must be a mapping"),
    ],
)
def test_bad_declarations_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        cv.from_mapping(values, where="fn.conventions")


def test_a_callable_declares_its_conventions():
    def fn(*args, **kwargs):
        pass

    assert cv.of_callable(fn) is cv.DEFAULT
    fn.conventions = {"pad": "nonpositive"}
    assert cv.of_callable(fn) == cv.Conventions(pad="nonpositive")
    got = cv.with_options(cv.of_callable(fn), None, "unwritten")
    assert got == cv.Conventions("nonpositive", "unwritten")


def test_plan_moves_a_live_slot_zero_to_a_new_last_slot():
    indices, pool = cv.plan_slots([0, -1, 3, 1], pool=4, null_slot=True)
    assert (indices, pool) == ([4, -1, 3, 1], 5)
    assert sorted(i for i in indices if i >= 0) == [1, 3, 4]  # as many live slots


def test_plan_keeps_the_pool_when_slot_zero_is_not_live():
    assert cv.plan_slots([2, -1, 1], pool=3, null_slot=True) == ([2, -1, 1], 3)
    assert cv.plan_slots([2, -1, 1], pool=3, null_slot=True, grow=True) == ([2, -1, 1], 4)
    assert cv.plan_slots([0, -1], pool=3, null_slot=False) == ([0, -1], 3)


def test_rendered_padding_uses_both_spellings():
    c = cv.Conventions(pad="nonpositive")
    assert cv.render_indices([-1, 2, -1, -1, 5], c) == [0, 2, -1, 0, 5]
    assert cv.render_indices([-1, 2], cv.DEFAULT) == [-1, 2]
    with pytest.raises(ValueError, match="null block"):
        cv.render_indices([0, 1], c)
