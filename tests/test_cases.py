"""Tests of harness.cases: YAML case files to CaseSpecs, errors, selection, writing."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from harness import cases as cm
from harness.cases import CaseFileError, case_to_yaml, load_file, load_paths, select
from harness.core.dtypes import ACT_DTYPES, DTYPES, INDEX_DTYPES, PARAM_DTYPES, STATE_DTYPES
from harness.core.layouts import LAYOUTS
from harness.core.spec import (
    PADDINGS,
    SLOT_ORDERS,
    CaseSpec,
    ExpectError,
    LayoutSpec,
    SlotSpec,
    Tolerance,
    ValueSpec,
)
from harness.core.tiers import TIERS

DATA = Path(__file__).parent / "data" / "case_files"  # not "cases": the plugin would run them
ALL = DATA / "all_features.yaml"
SMALL = "B: 2\n    H: 1\n    HV: 2\n    K: 8\n    V: 8"  # lines 3-7 of a one-case file


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    """Write YAML (dedented, leading newline dropped) so line 1 is the text's first line."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error(tmp_path: Path, text: str, **kw) -> CaseFileError:
    path = write(tmp_path, text)
    with pytest.raises(CaseFileError) as info:
        load_file(path, **kw)
    assert info.value.file == cm.display_path(path)
    return info.value


def one_case(body: str) -> str:
    """A one-case file: name on line 2, sizes on lines 3-7, ``body`` from line 8."""
    return f"cases:\n  - name: c\n    {SMALL}\n" + textwrap.indent(textwrap.dedent(body), "    ")


def blank(spec: CaseSpec) -> CaseSpec:
    return replace(spec, file="", line=0, field_lines=())


# ----------------------------------------------------------------- schema file


def test_schema_is_valid_draft_2020_12_and_matches_spec_enums():
    schema = cm.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    fields = schema["$defs"]["caseFields"]["properties"]
    assert tuple(fields["act_dtype"]["enum"]) == ACT_DTYPES
    assert tuple(fields["state_dtype"]["enum"]) == STATE_DTYPES
    assert tuple(fields["param_dtype"]["enum"]) == PARAM_DTYPES
    assert tuple(fields["index_dtype"]["enum"]) == INDEX_DTYPES
    assert tuple(fields["tier"]["enum"]) == TIERS
    assert tuple(fields["layout"]["properties"]["state_layout"]["enum"]) == LAYOUTS
    assert tuple(fields["slots"]["properties"]["padding"]["enum"]) == PADDINGS
    assert tuple(fields["slots"]["properties"]["order"]["enum"]) == SLOT_ORDERS


def test_schema_covers_every_spec_field_with_descriptions():
    fields = cm.load_schema()["$defs"]["caseFields"]["properties"]
    for cls, key in ((LayoutSpec, "layout"), (SlotSpec, "slots"), (ValueSpec, "values")):
        assert set(cls.__dataclass_fields__) == set(fields[key]["properties"])
    tol = cm.load_schema()["$defs"]["tolerance"]["properties"]
    assert set(Tolerance.__dataclass_fields__) == set(tol)
    top = set(CaseSpec.__dataclass_fields__) - {"file", "line", "field_lines"}
    renamed = {"tol_out", "tol_state"}
    assert top - renamed <= set(fields) and {"tolerance", "matrix"} <= set(fields)

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if sub is not False:
                    assert "description" in sub, f"{where}.{name} has no description"
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")

    walk(cm.load_schema(), "schema")


# ----------------------------------------------------------------- valid files


def test_load_all_features():
    specs = load_file(ALL)
    assert [s.name for s in specs] == [
        "tail_dims", "explicit_slots", "bad_out_dtype",
        "grid[bf16-vk]", "grid[bf16-kv]", "grid[fp16-vk]", "grid[fp16-kv]",
    ]  # fmt: skip
    tail = specs[0]
    assert tail.file == "tests/data/case_files/all_features.yaml" or tail.file.endswith(
        "tests/data/case_files/all_features.yaml"
    )
    assert tail.id == f"{tail.file}::tail_dims"
    assert (tail.B, tail.H, tail.HV, tail.K, tail.V, tail.pool) == (3, 2, 4, 48, 100, 5)
    assert (tail.act_dtype, tail.state_dtype, tail.param_dtype, tail.index_dtype) == (
        "bf16", "fp32", "act", "int64",
    )  # fmt: skip
    # defaults merge deeply under the case's own layout and values
    assert tail.layout == LayoutSpec(
        qkv_row_pad=64, qkv_col_offset=8, ab_packed=True, ab_row_pad=0,
        state_layout="vk", state_slot_pad=16,
    )  # fmt: skip
    assert tail.slots == SlotSpec(
        padding="alternate", pad_fraction=0.5, pad_seed=3, order="permutation", slot0_live=True
    )
    assert tail.values == ValueSpec(
        tiny_qk=True, tiny_qk_norm=1e-4, gate_mean=30.0, gate_std=2.0,
        a_log_lo=-8.0, a_log_hi=3.0, beta_std=8.0,
    )  # fmt: skip
    assert isinstance(tail.values.a_log_lo, float)  # 1e-4 and -8 read as floats
    assert tail.use_qk_l2norm is False and tail.scale == 0.1 and tail.effective_scale == 0.1
    assert (tail.steps, tail.seed, tail.tier) == (4, 7, "cpu")
    assert tail.tol_out == Tolerance(ulps=2.0)
    assert tail.tol_state == Tolerance(fp32_ulps=512.0, drift_factor=4.0)
    assert tail.expect is None and tail.overrides == ()

    slots = specs[1]
    assert slots.slots.indices == (3, -1, 0) and slots.pool == 4 and slots.tier == "gpu"
    assert slots.scale is None and slots.effective_scale == 16**-0.5

    err = specs[2]
    assert err.expect == ExpectError(match="out.*dtype")
    assert err.overrides == (("out_dtype", "fp32"),)
    assert err.pool == err.B  # pool defaults to B


def test_field_lines_point_at_the_yaml():
    tail, slots, _, grid = load_file(ALL)[:4]
    assert tail.line == 10
    assert tail.line_of("B") == 11
    assert tail.line_of("layout.state_layout") == 20
    assert tail.line_of("layout.qkv_row_pad") == 6  # from defaults
    assert tail.line_of("act_dtype") == 4  # from defaults
    assert tail.line_of("values.gate_std") == 8
    assert tail.line_of("tolerance.state.drift_factor") == 27
    assert tail.line_of("no.such.field") == tail.line
    assert slots.line_of("slots.indices[1]") == 36
    # a matrix variant's fields point at the matrix entries
    assert grid.line == 46
    assert grid.line_of("act_dtype") == 53
    assert grid.line_of("layout.state_layout") == 54


def test_matrix_values_override_and_expand_in_order():
    grid = load_file(ALL)[3:]
    assert [(s.act_dtype, s.layout.state_layout) for s in grid] == [
        ("bf16", "vk"), ("bf16", "kv"), ("fp16", "vk"), ("fp16", "kv"),
    ]  # fmt: skip
    assert all(s.layout.qkv_row_pad == 64 for s in grid)  # the rest of layout is kept


def test_matrix_ids_disambiguate_values_shared_across_keys(tmp_path):
    path = write(
        tmp_path,
        one_case("""
            matrix:
              act_dtype: [bf16, fp16]
              state_dtype: [fp32, bf16]
              tolerance.out.ulps: [1, 2]
              tolerance.state.ulps: [3]
              slots: [{padding: none}, {indices: [1, 0]}]
        """),
    )
    names = [s.name for s in load_file(path)]
    assert names[0] == "c[act_dtype=bf16-state_dtype=fp32-1-3-slots0]"
    assert names[-1] == "c[act_dtype=fp16-state_dtype=bf16-2-3-slots1]"
    assert len(set(names)) == len(names) == 16
    assert all(" " not in n and "::" not in n for n in names)
    assert load_file(path)[-1].slots.indices == (1, 0)


def test_matrix_ids_fall_back_to_keys_when_values_collide(tmp_path):
    path = write(tmp_path, one_case("matrix:\n  seed: [1, 2]\n  steps: [3, 4]\n"))
    assert [s.name for s in load_file(path)] == ["c[1-3]", "c[1-4]", "c[2-3]", "c[2-4]"]
    path = write(tmp_path, one_case("matrix:\n  seed: [1, 2]\n  steps: [1, 4]\n"))
    names = [s.name for s in load_file(path)]
    assert names == [
        "c[seed=1-steps=1]",
        "c[seed=1-steps=4]",
        "c[seed=2-steps=1]",
        "c[seed=2-steps=4]",
    ]


def test_matrix_map_values_merge_and_yaml_merge_keys_work(tmp_path):
    path = write(
        tmp_path,
        """
        defaults: &base {B: 2, H: 1, HV: 2, K: 8, V: 8}
        cases:
          - <<: *base
            name: merged
            B: 3
            layout: {qkv_row_pad: 4}
            matrix:
              layout: [{state_layout: kv}]
        """,
    )
    (spec,) = load_file(path)
    assert spec.name == "merged[layout0]" and spec.B == 3
    assert spec.layout == LayoutSpec(qkv_row_pad=4, state_layout="kv")


def test_negative_indices_are_padding_and_pool_defaults_to_b(tmp_path):
    path = write(tmp_path, one_case("slots: {indices: [-1, 1]}\n"))
    (spec,) = load_file(path)
    assert spec.pool == 2 and spec.slots.indices == (-1, 1)


# ----------------------------------------------------------------- paths


def test_load_paths_sorted_recursive_and_deduplicated():
    specs = load_paths([DATA / "tree", DATA / "tree" / "b.yaml"])
    assert [s.id.split("tests/data/case_files/")[-1] for s in specs] == [
        "tree/a.yaml::a_top", "tree/b.yaml::b_one", "tree/sub/a.yml::a_one",
    ]  # fmt: skip
    assert [p.name for p in cm.iter_case_files([DATA / "tree"])] == ["a.yaml", "b.yaml", "a.yml"]


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(CaseFileError, match="no such file"):
        list(cm.iter_case_files([tmp_path / "nope"]))
    with pytest.raises(CaseFileError, match="cannot read"):
        load_file(tmp_path / "nope.yaml")


def test_display_path_relative_to_cwd(tmp_path, monkeypatch):
    path = write(tmp_path, one_case(""), "sub.yaml")
    monkeypatch.chdir(tmp_path)
    assert cm.display_path(path) == "sub.yaml"
    assert cm.display_path("./x/../sub.yaml") == "sub.yaml"
    assert load_file(path)[0].id == "sub.yaml::c"
    assert cm.display_path("/elsewhere/y.yaml") == "/elsewhere/y.yaml"


# ----------------------------------------------------------------- selection


def test_select_by_tier_and_keyword():
    specs = load_file(ALL) + load_paths([DATA / "tree"])
    names = lambda sel: [s.name for s in sel]  # noqa: E731
    assert names(select(specs, tiers={"gpu"})) == ["explicit_slots"]
    assert names(select(specs, tiers={"nightly", "gpu"})) == ["explicit_slots", "a_one"]
    assert len(select(specs)) == len(specs)
    assert names(select(specs, keyword="grid and KV")) == ["grid[bf16-kv]", "grid[fp16-kv]"]
    assert names(select(specs, keyword="grid and not (bf16 or kv)")) == ["grid[fp16-vk]"]
    assert names(select(specs, keyword="tail or a_one", tiers={"cpu"})) == ["tail_dims"]
    assert names(select(specs, keyword="sub/a.yml")) == ["a_one"]
    assert names(select(specs, keyword="grid[fp16-kv]")) == ["grid[fp16-kv]"]
    assert names(select(specs, keyword="not not explicit")) == ["explicit_slots"]
    assert len(select(specs, keyword="  ")) == len(specs)


@pytest.mark.parametrize("expr", ["a and", "(a", "a)", "or a", "a b", "not", "()"])
def test_select_rejects_bad_expressions(expr):
    with pytest.raises(ValueError, match="-k expression"):
        select([], keyword=expr)


def test_select_rejects_unknown_tier():
    with pytest.raises(ValueError, match="unknown tier"):
        select([], tiers={"gpu", "tpu"})


# ----------------------------------------------------------------- errors


def test_error_str_format():
    e = CaseFileError("cases/x.yaml", "tail_dims", "layout.state_layout", 12, "bad")
    assert str(e) == "cases/x.yaml:12: case 'tail_dims', field 'layout.state_layout': bad"
    assert str(CaseFileError("f.yaml", None, None, None, "m")) == "f.yaml: m"
    assert (
        str(CaseFileError("f.yaml", None, "defaults.B", 3, "m"))
        == "f.yaml:3: field 'defaults.B': m"
    )
    import pickle

    back = pickle.loads(pickle.dumps(e))
    assert (back.file, back.case, back.field, back.line, back.message) == (
        e.file, e.case, e.field, e.line, e.message,
    )  # fmt: skip


def check(e: CaseFileError, case, field, line, message_part):
    assert (e.case, e.field, e.line) == (case, field, line), str(e)
    assert message_part in e.message, str(e)
    assert str(e).startswith(f"{e.file}:{line}: ")


def test_error_yaml_syntax(tmp_path):
    e = error(tmp_path, "cases:\n  - name: c\n    B: [1, 2\n    H: 1\n")
    check(e, None, None, 3, "invalid YAML")  # where the bracket opens


def test_error_yaml_duplicate_key(tmp_path):
    e = error(tmp_path, one_case("B: 3\n"))
    check(e, "c", "B", 8, "duplicate key (first on line 3)")


def test_error_yaml_non_string_key(tmp_path):
    e = error(tmp_path, one_case("overrides:\n  1: fp32\n"))
    check(e, "c", "overrides.1", 9, "keys must be strings (got 1)")


def test_error_case_not_a_mapping(tmp_path):
    e = error(tmp_path, "cases:\n  - name: c\n    " + SMALL + "\n  - 5\n")
    check(e, None, "cases[1]", 8, "must be a mapping (got 5)")


def test_error_top_level_not_a_mapping(tmp_path):
    check(error(tmp_path, "- name: c\n"), None, None, 1, "must be a mapping")
    check(error(tmp_path, "# nothing\n"), None, None, 1, "got empty")


def test_error_missing_cases(tmp_path):
    check(error(tmp_path, "defaults: {B: 1}\n"), None, "cases", 1, "missing required field")
    check(error(tmp_path, "cases: []\n"), None, "cases", 1, "at least 1")
    check(error(tmp_path, "cases: {a: 1}\n"), None, "cases", 1, "must be a list")


def test_error_unknown_top_level_field(tmp_path):
    e = error(tmp_path, "defaults: {}\ncase:\n  - {}\n")
    check(e, None, "case", 2, "did you mean 'cases'?")
    e = error(tmp_path, "anchors: &a {B: 1}\ncases:\n  - {name: c, <<: *a}\n")
    check(e, None, "anchors", 1, "unknown field")


def test_error_wrong_type(tmp_path):
    e = error(tmp_path, one_case("steps: four\n"))
    check(e, "c", "steps", 8, "must be an integer (got 'four')")
    e = error(tmp_path, one_case("use_qk_l2norm: 1\n"))
    check(e, "c", "use_qk_l2norm", 8, "must be true or false")
    e = error(tmp_path, one_case("scale: abc\n"))
    check(e, "c", "scale", 8, "must be a number or null")
    e = error(tmp_path, one_case("layout: 5\n"))
    check(e, "c", "layout", 8, "must be a mapping")


def test_error_unknown_field(tmp_path):
    e = error(tmp_path, one_case("seed: 1\nstat_dtype: bf16\n"))
    check(e, "c", "stat_dtype", 9, "unknown field (did you mean 'state_dtype'?)")
    e = error(tmp_path, one_case("layout:\n  state_layout: kv\n  row_pad: 1\n"))
    check(e, "c", "layout.row_pad", 10, "unknown field")


def test_error_missing_required_field(tmp_path):
    e = error(tmp_path, "cases:\n  - name: c\n    B: 1\n    H: 1\n    HV: 1\n    V: 8\n")
    check(e, "c", "K", 2, "missing required field")
    e = error(tmp_path, "cases:\n  - B: 1\n    H: 1\n    HV: 1\n    K: 8\n    V: 8\n")
    check(e, None, "name", 2, "missing required field")


def test_error_bad_enum(tmp_path):
    e = error(tmp_path, one_case("layout: {state_layout: xy}\n"))
    check(e, "c", "layout.state_layout", 8, "must be one of vk, kv (got 'xy')")
    assert str(e).endswith(
        ":8: case 'c', field 'layout.state_layout': must be one of vk, kv (got 'xy')"
    )
    e = error(tmp_path, one_case("slots:\n  order: sorted\n"))
    check(e, "c", "slots.order", 9, "identity, reverse, permutation, spread")


def test_error_bad_name(tmp_path):
    e = error(tmp_path, "cases:\n  - name: has space\n    " + SMALL + "\n")
    check(e, "has space", "name", 2, "must match")


def test_error_duplicate_names(tmp_path):
    text = "cases:\n  - name: c\n    " + SMALL + "\n  - name: c\n    " + SMALL + "\n"
    check(error(tmp_path, text), "c", "name", 8, "duplicate case name (first on line 2)")


@pytest.mark.parametrize("field", ["B", "H", "HV", "K", "V", "pool"])
def test_error_size_not_positive(tmp_path, field):
    text = re.sub(
        rf"\b{field}: \d+", f"{field}: 0", f"cases:\n  - name: c\n    {SMALL}\n    pool: 4\n"
    )
    line = {"B": 3, "H": 4, "HV": 5, "K": 6, "V": 7, "pool": 8}[field]
    check(error(tmp_path, text), "c", field, line, "must be >= 1 (got 0)")


def test_error_hv_not_multiple_of_h(tmp_path):
    e = error(tmp_path, one_case("").replace("H: 1", "H: 3"))
    check(e, "c", "HV", 5, "must be a multiple of H=3 (got 2)")


def test_error_pool_too_small(tmp_path):
    e = error(tmp_path, one_case("pool: 1\n"))
    check(e, "c", "pool", 8, "cannot hold up to 2 live rows")
    # enough once padding frees a row; the default pool=B is checked too
    load_file(write(tmp_path, one_case("pool: 1\nslots: {padding: alternate}\n")))


def test_error_indices_wrong_length(tmp_path):
    e = error(tmp_path, one_case("slots:\n  indices: [0, 1, -1]\n"))
    check(e, "c", "slots.indices", 9, "must have B=2 entries (got 3)")


def test_error_indices_out_of_range(tmp_path):
    e = error(tmp_path, one_case("slots:\n  indices:\n    - 0\n    - 2\n"))
    check(e, "c", "slots.indices[1]", 11, "slot 2 is out of range for pool=2")
    e = error(tmp_path, one_case("slots: {indices: [0, 1.5]}\n"))
    check(e, "c", "slots.indices[1]", 8, "must be an integer")


def test_error_indices_duplicate_live_slot(tmp_path):
    e = error(tmp_path, one_case("slots:\n  indices:\n    - 1\n    - 1\n"))
    check(e, "c", "slots.indices[1]", 11, "slot 1 is already used by row 0")
    load_file(write(tmp_path, one_case("slots: {indices: [-1, -1]}\n")))  # padding may repeat


def test_error_steps_below_one(tmp_path):
    check(error(tmp_path, one_case("steps: 0\n")), "c", "steps", 8, "must be >= 1")


def test_error_pad_fraction_out_of_range(tmp_path):
    e = error(tmp_path, one_case("slots:\n  padding: random\n  pad_fraction: 1.5\n"))
    check(e, "c", "slots.pad_fraction", 10, "must be <= 1 (got 1.5)")


def test_error_negative_offsets_and_pads(tmp_path):
    e = error(tmp_path, one_case("layout:\n  qkv_col_offset: -8\n"))
    check(e, "c", "layout.qkv_col_offset", 9, "must be >= 0 (got -8)")
    e = error(tmp_path, one_case("layout: {state_slot_pad: -1}\n"))
    check(e, "c", "layout.state_slot_pad", 8, "must be >= 0")


def test_error_a_log_range_and_non_finite(tmp_path):
    e = error(tmp_path, one_case("values:\n  a_log_lo: 2\n  a_log_hi: 1\n"))
    check(e, "c", "values.a_log_hi", 10, "must be >= a_log_lo=2.0")
    e = error(tmp_path, one_case("scale: .nan\n"))
    check(e, "c", "scale", 8, "must be finite")


def test_error_bad_expect(tmp_path):
    e = error(tmp_path, one_case("expect:\n  error: 'out[('\n"))
    check(e, "c", "expect.error", 9, "not a valid regular expression")
    e = error(tmp_path, one_case("expect: {exception: TypeError}\n"))
    check(e, "c", "expect.error", 8, "missing required field")
    e = error(tmp_path, one_case("overrides:\n  out_dtype: {x: 1}\n"))
    check(e, "c", "overrides.out_dtype", 9, "must be one of fp32, bf16, fp16")
    e = error(tmp_path, one_case("overrides:\n  out_dtpe: fp32\n"))
    check(e, "c", "overrides.out_dtpe", 9, "unknown key (did you mean 'out_dtype'?)")


def test_override_keys_match_the_input_builder():
    """The schema checks the value of every override the input builder knows."""
    inputs = pytest.importorskip("harness.inputs")
    overrides = cm.load_schema()["$defs"]["caseFields"]["properties"]["overrides"]
    assert set(overrides["propertyNames"]["enum"]) == set(inputs.OVERRIDE_KEYS)
    assert set(overrides["properties"]) == set(inputs.OVERRIDE_KEYS)
    for key in ("out_dtype", "index_dtype"):
        assert overrides["properties"][key]["enum"] == list(DTYPES)
    from harness.cases.semantics import override_bytes

    every = tuple((k, _valid_override(k)) for k in sorted(inputs.OVERRIDE_KEYS))
    assert set(override_bytes(replace(load_file(ALL)[2], overrides=every))) == set(
        inputs.OVERRIDE_KEYS
    )


def _valid_override(key: str) -> object:
    return {"out_shape": (2, 1, 8), "out_alias": "state", "a_device": "meta"}.get(
        key, "fp32" if key.endswith("dtype") else "xy" if key == "state_layout" else 2
    )


def test_override_lists_become_tuples(tmp_path):
    text = one_case("overrides: {out_shape: [2, 2, 9]}\nexpect: {error: shape}\n")
    (spec,) = load_file(write(tmp_path, text))
    assert spec.overrides == (("out_shape", (2, 2, 9)),)
    hash(spec)
    back = load_file(write(tmp_path, case_to_yaml(spec), "rt.yaml"))[0]
    assert back.overrides == spec.overrides


def test_error_memory_limit(tmp_path):
    big = "cases:\n  - name: big\n    B: 1\n    H: 1\n    HV: 64\n    K: 1024\n    V: 1024\n"
    e = error(tmp_path, big + "    pool: 16\n")
    check(e, "big", None, 2, "over the 2.00 GiB limit of tier 'cpu'")
    # the same case is fine on a GPU tier, or with a raised limit
    load_file(write(tmp_path, big + "    pool: 16\n    tier: gpu\n"))
    load_file(write(tmp_path, big + "    pool: 16\n"), memory_limits={"cpu": 8 * cm.GIB})
    e = error(tmp_path, big + "    pool: 100000\n    tier: nightly\n")
    check(e, "big", None, 2, "limit of tier 'nightly'")


def test_error_index_dtype_too_small_for_pool(tmp_path):
    text = "cases:\n  - name: c\n    B: 1\n    H: 1\n    HV: 1\n    K: 1\n    V: 1\n"
    e = error(tmp_path, text + "    pool: 3000000000\n    tier: gpu\n")
    check(e, "c", "index_dtype", 2, "cannot index a pool of 3000000000 slots")


def test_error_in_defaults(tmp_path):
    e = error(tmp_path, "defaults:\n  act_dtype: bf17\ncases:\n  - name: c\n    " + SMALL + "\n")
    check(e, None, "defaults.act_dtype", 2, "must be one of bf16, fp16, fp32")
    e = error(tmp_path, "defaults:\n  name: x\ncases:\n  - name: c\n    " + SMALL + "\n")
    check(e, None, "defaults.name", 2, "cannot be set in defaults")


def test_error_from_defaults_points_at_defaults(tmp_path):
    text = "defaults:\n  HV: 3\ncases:\n  - name: c\n    B: 1\n    H: 2\n    K: 8\n    V: 8\n"
    check(error(tmp_path, text), "c", "HV", 2, "must be a multiple of H=2")


def test_error_in_matrix_value(tmp_path):
    e = error(tmp_path, one_case("matrix:\n  act_dtype:\n    - bf16\n    - bf17\n"))
    check(e, "c[bf17]", "act_dtype", 11, "must be one of bf16, fp16, fp32 (got 'bf17')")
    e = error(tmp_path, one_case("matrix:\n  H: [1, 3]\n"))
    check(e, "c[3]", "HV", 5, "must be a multiple of H=3")


def test_error_in_matrix_keys(tmp_path):
    e = error(tmp_path, one_case("matrix:\n  layout.stat_layout: [kv]\n"))
    check(e, "c[kv]", "layout.stat_layout", 9, "did you mean 'state_layout'?")
    e = error(tmp_path, one_case("matrix:\n  name: [a, b]\n"))
    check(e, "c", "matrix.name", 9, "cannot vary 'name'")
    e = error(tmp_path, one_case("matrix:\n  B.x: [1]\n"))
    check(e, "c", "matrix.B.x", 9, "'B' is not a mapping")
    e = error(tmp_path, one_case("matrix:\n  'bad key': [1]\n"))
    check(e, "c", "matrix.bad key", 9, "invalid key")
    e = error(tmp_path, one_case("matrix:\n  seed: []\n"))
    check(e, "c", "matrix.seed", 9, "at least 1")


def test_error_matrix_too_big(tmp_path):
    keys = "".join(f"  values.{k}: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" for k in
                   ("qkv_std", "gate_mean", "gate_std", "beta_std"))  # fmt: skip
    e = error(tmp_path, one_case("matrix:\n" + keys))
    check(e, "c", "matrix", 8, "expands to 9 x 9 x 9 x 9 variants, more than 4096")


def test_error_matrix_repeated_value(tmp_path):
    e = error(tmp_path, one_case("matrix:\n  seed:\n    - 1\n    - 2\n    - 1\n"))
    check(e, "c", "matrix.seed[2]", 12, "repeats the value 1")


def test_first_error_in_file_order_wins(tmp_path):
    text = one_case("tier: tpu\n") + "  - name: d\n    B: 0\n"
    check(error(tmp_path, text), "c", "tier", 8, "must be one of cpu, gpu, nightly")


def test_loading_never_allocates(tmp_path, monkeypatch):
    import torch

    def boom(*a, **k):
        raise AssertionError("allocation during load")

    for name in ("empty", "zeros", "randn", "empty_strided"):
        monkeypatch.setattr(torch, name, boom)
    huge = "cases:\n  - name: h\n    B: 1024\n    H: 16\n    HV: 64\n    K: 128\n    V: 128\n"
    with pytest.raises(CaseFileError, match="GiB limit"):
        load_file(write(tmp_path, huge + "    pool: 100000000\n    tier: nightly\n"))


def test_schema_file_is_json():
    json.loads(cm.SCHEMA_PATH.read_text())
