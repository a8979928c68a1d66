"""Writing cases back as YAML (``harness.cases.writer``): every valid case round-trips,
written short (only what differs from the defaults) or in full."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness import cases as cm
from harness.cases import case_to_yaml, load_file
from harness.cases.magnitudes import magnitude_problem
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

ALL = Path(__file__).parent / "data" / "case_files" / "all_features.yaml"


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def blank(spec: CaseSpec) -> CaseSpec:
    return replace(spec, file="", line=0, field_lines=())


def test_case_to_yaml_round_trip(tmp_path):
    for spec in load_file(ALL):
        text = case_to_yaml(spec, comment="found by the fuzzer\nseed 7")
        assert text.startswith("# found by the fuzzer\n# seed 7\ncases:\n")
        back = load_file(write(tmp_path, text, "rt.yaml"))
        assert len(back) == 1
        expected = spec if "[" not in spec.name else replace(spec, name=back[0].name)
        assert blank(back[0]) == blank(expected)
        assert cm.same_case(back[0], expected)


def test_case_to_yaml_round_trips_awkward_values(tmp_path):
    spec = CaseSpec(
        file="x", name="odd", line=1, B=4, H=2, HV=6, K=24, V=40, pool=9,
        act_dtype="fp32", state_dtype="bf16", index_dtype="int64",
        slots=SlotSpec(indices=(8, -1, 0, -5)),
        values=ValueSpec(tiny_qk_norm=1e-30, gate_mean=1e20, a_log_lo=-0.1),
        scale=1 / 3, steps=3, seed=2**40,
        tol_state=Tolerance(ulps=0.5),
        expect=ExpectError(match="1e-4", exception="TypeError"),
        overrides=(
            ("a_device", "cuda:1"), ("a_rows", 2), ("out_alias", "mixed_qkv"),
            ("out_dtype", "uint8"), ("out_shape", (1, 0, 3)), ("state_layout", "2020-01-01"),
        ),
    )  # fmt: skip
    back = load_file(write(tmp_path, case_to_yaml(spec), "rt.yaml"))[0]
    assert blank(back) == blank(spec)
    assert back.overrides == spec.overrides


# awkward floats (subnormals, -0.0, many digits) in the ranges a valid case may use
_finite = st.floats(-1e3, 1e3)
_nonneg = st.floats(0, 10)


@st.composite
def case_specs(draw) -> CaseSpec:
    """Valid CaseSpecs with awkward values, for the case_to_yaml round trip."""
    H = draw(st.integers(1, 4))
    B = draw(st.integers(1, 6))
    pool = draw(st.integers(B, 12))
    lo, hi = sorted(draw(st.tuples(st.floats(-80, 80), st.floats(-80, 80))))
    indices = draw(st.none() | st.permutations(range(pool)).map(lambda p: tuple(p[:B])))
    regex = draw(st.text(max_size=12).filter(lambda t: _compiles(t)))
    # overrides exist only in error cases; state_layout takes any string (YAML-awkward ones)
    overrides = tuple(sorted(draw(st.fixed_dictionaries({}, optional={
        "out_dtype": st.sampled_from(sorted(DTYPES)), "state_layout": st.text(max_size=64),
        "a_rows": st.integers(0, 64), "out_shape": st.lists(st.integers(0, 9), max_size=8),
    })).items()))  # fmt: skip
    overrides = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in overrides)
    case = CaseSpec(
        file="x", name=draw(st.from_regex(cm.NAME_RE, fullmatch=True)), line=1,
        B=B, H=H, HV=H * draw(st.integers(1, 3)), K=draw(st.integers(1, 64)),
        V=draw(st.integers(1, 64)), pool=pool,
        act_dtype=draw(st.sampled_from(ACT_DTYPES)),
        state_dtype=draw(st.sampled_from(STATE_DTYPES)),
        param_dtype=draw(st.sampled_from(PARAM_DTYPES)),
        index_dtype=draw(st.sampled_from(INDEX_DTYPES)),
        layout=LayoutSpec(
            qkv_row_pad=draw(st.integers(0, 99)), qkv_col_offset=draw(st.integers(0, 99)),
            ab_packed=draw(st.booleans()), ab_row_pad=draw(st.integers(0, 9)),
            state_layout=draw(st.sampled_from(LAYOUTS)), state_slot_pad=draw(st.integers(0, 9)),
        ),
        slots=SlotSpec(
            indices=indices, padding=draw(st.sampled_from(PADDINGS)),
            pad_fraction=draw(st.floats(0, 1)), pad_seed=draw(st.integers(0, 2**40)),
            order=draw(st.sampled_from(SLOT_ORDERS)), slot0_live=draw(st.booleans()),
        ),
        values=ValueSpec(
            qkv_std=draw(_nonneg), tiny_qk=draw(st.booleans()),
            tiny_qk_norm=draw(st.floats(min_value=0, max_value=1e3, exclude_min=True)),
            gate_mean=draw(_finite), gate_std=draw(_nonneg), beta_std=draw(_nonneg),
            a_log_lo=lo, a_log_hi=hi, dt_bias_std=draw(_nonneg), state_std=draw(_nonneg),
        ),
        use_qk_l2norm=draw(st.booleans()), scale=draw(st.none() | _finite),
        steps=draw(st.integers(1, 100)), seed=draw(st.integers(0, 2**63 - 1)),
        tier=draw(st.sampled_from(TIERS)),
        tol_out=Tolerance(ulps=draw(st.none() | _nonneg)),
        tol_state=Tolerance(fp32_ulps=draw(st.none() | _nonneg),
                            drift_factor=draw(st.none() | _nonneg)),
        expect=ExpectError(match=regex) if overrides else draw(
            st.none() | st.just(ExpectError(match=regex))
        ),
        overrides=overrides,
    )  # fmt: skip
    assume(magnitude_problem(case) is None)  # no draw of it may be inf, nor the oracle
    return case


def _compiles(text: str) -> bool:
    try:
        re.compile(text)
    except re.error:
        return False
    return True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=case_specs())
def test_case_to_yaml_round_trips_any_valid_spec(tmp_path_factory, spec):
    """Written short (only what differs from the defaults) or in full, it loads back."""
    for full in (False, True):
        path = tmp_path_factory.mktemp("rt") / "rt.yaml"
        path.write_text(case_to_yaml(spec, comment="hypothesis", full=full), encoding="utf-8")
        (back,) = load_file(path)
        assert blank(back) == blank(spec)


def test_case_to_yaml_writes_only_what_differs_unless_full(tmp_path):
    spec = CaseSpec(
        file="x", name="short", line=1, B=3, H=1, HV=2, K=8, V=8, pool=3,
        layout=LayoutSpec(state_layout="kv"), values=ValueSpec(gate_mean=20.5), steps=2,
    )  # fmt: skip
    text = case_to_yaml(spec)
    assert text == (
        "cases:\n- name: short\n  B: 3\n  H: 1\n  HV: 2\n  K: 8\n  V: 8\n"
        "  layout:\n    state_layout: kv\n  values:\n    gate_mean: 20.5\n  steps: 2\n"
    )
    full = case_to_yaml(spec, full=True)
    assert "pool: 3" in full and "qkv_std: 1.0" in full and "seed: 0" in full
    for body in (text, full):
        (back,) = load_file(write(tmp_path, body, "rt.yaml"))
        assert cm.same_case(back, spec)


def test_case_to_yaml_variant_name_becomes_valid(tmp_path):
    grid = load_file(ALL)[4]
    back = load_file(write(tmp_path, case_to_yaml(grid), "rt.yaml"))[0]
    assert back.name == "grid_bf16-kv"
