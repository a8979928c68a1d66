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


# --- end to end: the runner honours each implementation's conventions ----------

from factories import spec  # noqa: E402

from harness.impls.registry import load_implementation  # noqa: E402
from harness.run.runner import run_case  # noqa: E402

PLANTED = "tests.planted.conventions"
# slot 0 live in the case as written, padding rows, two steps
SLOT0 = spec(B=6, pool=8, steps=2, slots={"padding": "alternate", "slot0_live": True})


def _run(name: str, case=SLOT0, baseline: str | None = "baseline", **options):
    impl = load_implementation(f"{PLANTED}:{name}").with_options(**options)
    base = load_implementation(baseline) if baseline else None
    return run_case(case, impl, base, "cpu", check_device="cpu")


def _checks(result) -> set[str]:
    return {v.check for v in result.violations}


@pytest.mark.parametrize("name", ["null_slot", "unwritten"])
def test_correct_implementations_pass_against_the_negative_baseline(name):
    result = _run(name)
    assert result.status == "passed", [str(v) for v in result.violations]
    assert result.conventions["pad"] == "nonpositive"


def test_a_null_slot_kernel_that_writes_slot0_is_caught():
    result = _run("null_slot_writes_slot0")
    assert result.status == "failed"
    assert {"untouched-slots", "padding"} <= _checks(result)
    assert any(
        "slots 0" in v.message or "[0" in v.message
        for v in result.violations
        if v.check == "untouched-slots"
    )


def test_a_null_slot_kernel_that_reads_slot0_into_padding_output_is_caught():
    result = _run("null_slot_reads_slot0")
    assert result.status == "failed"
    assert "padding" in _checks(result) and "untouched-slots" not in _checks(result)


def test_an_unwritten_kernel_that_scribbles_on_padding_rows_is_caught():
    result = _run("unwritten_scribbles")
    assert result.status == "failed"
    messages = [v.message for v in result.violations if v.check == "padding"]
    assert messages and "written (declared pad_output: unwritten)" in messages[0]


def test_without_the_declaration_the_null_slot_kernel_fails():
    """The same correct kernel, told it pads with -1: slot 0 is then a live
    slot it skips, which the harness must see."""
    result = _run("null_slot", pad="negative")
    assert result.status == "failed"


def test_the_command_line_option_declares_for_a_plain_callable():
    plain = "tests.planted.bugs:correct"
    declared = load_implementation(plain).with_options("nonpositive", None)
    result = run_case(SLOT0, declared, None, "cpu", check_device="cpu")
    assert result.status == "failed"  # a -1 kernel given 0 for padding writes slot 0
    assert "untouched-slots" in _checks(result)


def test_no_live_row_gets_the_null_slot_and_the_pool_grows_only_when_needed():
    from harness.inputs import for_null_slot, slot_indices

    planned = for_null_slot(SLOT0)
    live = [i for i in slot_indices(planned) if i >= 0]
    assert 0 not in live and planned.pool == SLOT0.pool + 1
    assert len(live) == len([i for i in slot_indices(SLOT0) if i >= 0])
    plain = spec(B=4, pool=8, slots={"order": "reverse"})
    assert for_null_slot(plain).pool == plain.pool


def test_rerun_commands_and_results_carry_the_conventions():
    result = _run("null_slot", baseline=None, pad_output="zero")
    assert "--pad nonpositive" in result.rerun_command()
    assert result.to_dict()["conventions"] == {"pad": "nonpositive", "pad_output": "zero"}
    default = run_case(SLOT0, load_implementation("oracle"), None, "cpu", check_device="cpu")
    assert "conventions" not in default.to_dict() and "--pad" not in default.rerun_command()


def test_the_fuzzer_draws_under_the_conventions(tmp_path):
    """Correct null-slot kernel: no false alarm over drawn cases; the slot-0
    writer: found, shrunk, saved, and its rerun command carries --pad."""
    import io

    from harness.fuzz import command as fuzz_mod

    def opts(name: str, **kw):
        return fuzz_mod.FuzzOptions(
            impl=f"{PLANTED}:{name}", baseline=None, seed=3, save_dir=tmp_path, **kw
        )

    clean = fuzz_mod.fuzz(opts("null_slot", max_examples=12), stream=io.StringIO())
    assert not clean.failed and clean.examples >= 12
    plain = "tests.planted.bugs:correct"
    found = fuzz_mod.fuzz(
        fuzz_mod.FuzzOptions(
            impl=plain, baseline=None, seed=3, save_dir=tmp_path, pad="nonpositive"
        ),
        stream=io.StringIO(),
    )
    assert found.failed and found.saved is not None
    assert "--pad nonpositive" in found.saved.read_text(encoding="utf-8")


def test_a_case_pins_its_conventions():
    """cases/regressions/null_slot_padding.yaml: skipped, with the reason, by
    an implementation that pads with -1; run by null-slot implementations."""
    from harness.cases import load_file

    specs = load_file("cases/regressions/null_slot_padding.yaml")
    assert specs and all(dict(s.conventions) == {"pad": "nonpositive"} for s in specs)
    packed = run_case(specs[0], load_implementation("packed"), None, "cpu")
    assert packed.status == "skipped" and "pins pad=nonpositive" in packed.reason
    good = run_case(specs[0], load_implementation(f"{PLANTED}:null_slot"), None, "cpu")
    assert good.status == "passed", [str(v) for v in good.violations]
    bad = run_case(specs[1], load_implementation(f"{PLANTED}:null_slot_writes_slot0"), None, "cpu")
    assert bad.status == "failed" and "untouched-slots" in _checks(bad)


def test_pinned_conventions_round_trip_through_the_writer(tmp_path):
    from harness.cases import case_to_yaml, load_file

    case = spec(conventions=(("pad", "nonpositive"),))
    path = tmp_path / "c.yaml"
    path.write_text(case_to_yaml(case))
    assert "conventions" in path.read_text()
    assert load_file(path)[0].conventions == (("pad", "nonpositive"),)
