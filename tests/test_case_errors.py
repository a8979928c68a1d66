"""Every error at once: ``collect_file`` / ``collect_paths`` list all bad cases of
all files (for a command that prints them all, as ruff does), and load the rest."""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

from hypothesis import given, settings
from malformed import MalformedFile, malformed_case_files

from harness import cases as cm
from harness.cases import CaseFileError, collect_file, collect_paths, load_file
from harness.fuzz import profiles

SMALL = "B: 2\n    H: 1\n    HV: 2\n    K: 8\n    V: 8"


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def case(name: str, extra: str = "") -> str:
    return f"  - name: {name}\n    {SMALL}\n" + "".join(f"    {ln}\n" for ln in extra.splitlines())


def where(errors: list[CaseFileError]) -> list[tuple]:
    return [(e.case, e.field, e.line) for e in errors]


def test_every_bad_case_of_a_file_is_listed_and_the_rest_load(tmp_path):
    text = "cases:\n" + case("good") + case("bad_type", "steps: four")
    text += case("bad_rule", "pool: 1") + case("good_too") + case("bad_matrix", "matrix: {}")
    got = collect_file(write(tmp_path, text))
    assert where(got.errors) == [
        ("bad_type", "steps", 14),
        ("bad_rule", "pool", 21),
        ("bad_matrix", "matrix", 34),
    ]
    assert [s.name for s in got.specs] == ["good", "good_too"]
    assert got.bad_files == [cm.display_path(tmp_path / "c.yaml")]


def test_one_error_per_bad_case_and_each_bad_field_of_the_document(tmp_path):
    """Schema errors found in the whole document are all listed (two fields of one
    case); a case's matrix variants share their fields, so the first bad one speaks."""
    text = "cases:\n" + case("two", "steps: four\nseed: -1")
    text += case("grid", "matrix:\n  H: [3, 5]")  # both variants break HV % H
    got = collect_file(write(tmp_path, text))
    assert where(got.errors) == [("two", "steps", 8), ("two", "seed", 9), ("grid[3]", "HV", 13)]
    assert got.specs == []


def test_duplicate_names_are_errors_and_the_first_case_still_loads(tmp_path):
    got = collect_file(write(tmp_path, "cases:\n" + case("c") + case("c") + case("d")))
    assert where(got.errors) == [("c", "name", 8)]
    assert [s.name for s in got.specs] == ["c", "d"]


def test_top_level_and_defaults_errors_stop_the_file(tmp_path):
    """Every case merges the defaults: their errors are listed once, not per case."""
    text = "defaults:\n  act_dtype: bf17\n  colour: red\ncases:\n" + case("a") + case("b")
    got = collect_file(write(tmp_path, text))
    assert where(got.errors) == [(None, "defaults.act_dtype", 2), (None, "defaults.colour", 3)]
    assert got.specs == []
    got = collect_file(write(tmp_path, "cases:\n  - name: a\n    B: [1\n"))
    assert len(got.errors) == 1 and "invalid YAML" in got.errors[0].message


def test_collect_paths_lists_every_file_and_missing_path(tmp_path):
    for i in range(5):
        write(
            tmp_path,
            "cases:\n" + case(f"a{i}", "steps: 0") + case(f"b{i}", "tier: tpu"),
            f"{i}.yaml",
        )
    write(tmp_path, "cases:\n" + case("fine"), "ok.yaml")
    got = collect_paths([tmp_path, tmp_path / "nope.yaml"])
    assert len(got.errors) == 11 and len(got.bad_files) == 6
    assert got.errors[-1].message == "no such file or directory"
    assert [s.name for s in got.specs] == ["fine"]
    assert [e.case for e in got.errors[:2]] == ["a0", "b0"]


def test_load_file_raises_the_first_collected_error(tmp_path):
    text = "cases:\n" + case("x", "pool: 1") + case("y", "tier: tpu")
    path = write(tmp_path, text)
    first = collect_file(path).errors[0]
    try:
        load_file(path)
    except CaseFileError as err:
        assert str(err) == str(first) and (err.case, err.line) == ("x", 8)
    else:
        raise AssertionError("accepted")


@settings(profiles.get_settings(profiles.CI), max_examples=80)
@given(mf=malformed_case_files())
def test_a_malformed_file_collects_the_error_load_file_raises(mf: MalformedFile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = mf.write(tmp)
        got = collect_file(path)
        assert got.errors, (mf.kind, mf.description)
        try:
            load_file(path)
        except CaseFileError as err:
            assert str(err) == str(got.errors[0])


def test_the_error_load_file_raises_carries_every_error_of_the_file(tmp_path):
    """So that a caller catching it (the command line) can list them all."""
    import pickle

    text = "cases:\n" + case("x", "pool: 1") + case("y", "tier: tpu") + case("z")
    try:
        load_file(write(tmp_path, text))
    except CaseFileError as err:
        assert where(err.errors) == [("x", "pool", 8), ("y", "tier", 15)]
        assert err.errors[0] is err
        back = pickle.loads(pickle.dumps(err))
        assert str(back) == str(err) and [str(e) for e in back.errors] == list(map(str, err.errors))
    else:
        raise AssertionError("accepted")
    assert CaseFileError("f", None, None, None, "m").errors == ()
