"""Hostile case files: each is refused with a CaseFileError, quickly and cheaply.

Alias bombs, huge files, control characters, deep nesting, absurd values and
overrides, unbounded work: the loader must answer each with an error naming
the file, the case, the field and the line (``gdn-harness validate`` exit 2),
never with a traceback, a hang or gigabytes of memory.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from harness import cases as cm
from harness import cli
from harness.cases import CaseFileError, load_file
from harness.cases import limits as lim

SMALL = "B: 2\n    H: 1\n    HV: 2\n    K: 8\n    V: 8"  # lines 3-7 of a one-case file
FAST_S = 2.0  # refusing a hostile file is a check, not a computation
PEAK_BYTES = 64 << 20


def write(tmp_path: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = textwrap.dedent(text).lstrip("\n").encode("utf-8")
    path.write_bytes(text)
    return path


def one_case(body: str) -> str:
    """A one-case file: name on line 2, sizes on lines 3-7, ``body`` from line 8."""
    return f"cases:\n  - name: c\n    {SMALL}\n" + textwrap.indent(textwrap.dedent(body), "    ")


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) when the block runs longer than ``seconds``."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refused(path: Path, traced: bool = True, **kw) -> tuple[CaseFileError, float, int]:
    """Load ``path``: it must raise CaseFileError; returns it, seconds and peak bytes
    (the peak from a second load under tracemalloc, which slows Python down; 0
    without ``traced``)."""
    with deadline(20):
        start = time.perf_counter()
        with pytest.raises(CaseFileError) as info:
            load_file(path, **kw)
        elapsed = time.perf_counter() - start
        if not traced:
            return info.value, elapsed, 0
        tracemalloc.start()
        try:
            with pytest.raises(CaseFileError):
                load_file(path, **kw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert info.value.file == cm.display_path(path)
    return info.value, elapsed, peak


def validate_exit(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["validate", str(path)])
    return rc, err.getvalue()


# ----------------------------------------------------------------- 1. size


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic: ``width ** levels`` strings from a few hundred bytes."""
    lines = ['l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + f"\ncases:\n  - name: c\n    {SMALL}\n    seed: *l{levels}\n"


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    path = write(tmp_path, billion_laughs())
    assert path.stat().st_size < 600
    err, elapsed, peak = refused(path)
    assert "alias" in err.message and f"{lim.MAX_VALUES}" in err.message, str(err)
    assert err.line is not None and err.field is not None, str(err)
    assert elapsed < FAST_S and peak < PEAK_BYTES, (elapsed, peak)
    rc, text = validate_exit(path)
    assert rc == 2 and text.startswith(f"error: {cm.display_path(path)}:"), text


def test_merge_key_bomb_is_refused(tmp_path):
    """Merge keys copy mappings: doubling one per level is a bomb too."""
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, 40):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], x{i}: 1}}")
    text = "\n".join(lines) + f"\ncases:\n  - name: c\n    {SMALL}\n"
    err, elapsed, peak = refused(write(tmp_path, text))
    assert "alias" in err.message, str(err)
    assert elapsed < FAST_S and peak < PEAK_BYTES, (elapsed, peak)


def test_defaults_copied_into_many_cases_count_against_the_value_budget(tmp_path):
    n = lim.MAX_VALUES // 500 + 1
    text = f"defaults:\n  slots: {{indices: [{', '.join(['-1'] * 500)}]}}\ncases:\n"
    text += "".join(f"  - {{name: c{i}, B: 500, H: 1, HV: 1, K: 1, V: 1}}\n" for i in range(n))
    err, elapsed, _ = refused(write(tmp_path, text))
    index = int(re.fullmatch(r"cases\[(\d+)\]", err.field)[1])
    assert err.case == f"c{index}" and err.line == index + 4 and index < n, str(err)
    assert "the file past the 100000 values a case file may hold" in err.message
    assert elapsed < FAST_S, str(err)


def test_alias_chain_deeper_than_the_nesting_limit_is_refused(tmp_path):
    lines = ["a0: &a0 1"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 200)]
    text = "\n".join(lines) + f"\ncases:\n  - name: c\n    {SMALL}\n"
    err, elapsed, _ = refused(write(tmp_path, text))
    assert "nested deeper than" in err.message and elapsed < FAST_S, str(err)


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    big = one_case("") + "# " + "x" * lim.MAX_FILE_BYTES + "\n"
    err, elapsed, peak = refused(write(tmp_path, big))
    assert err.line is None and "MiB limit of a case file" in err.message, str(err)
    assert elapsed < FAST_S and peak < 4 * lim.MAX_FILE_BYTES


def test_matrix_variants_count_against_the_value_budget(tmp_path):
    """4096 variants of a case holding a long list would hold a billion values."""
    B = lim.MAX_VALUES // 1000 + 10
    indices = ", ".join(str(i) for i in range(B))
    text = f"cases:\n  - name: c\n    B: {B}\n    H: 1\n    HV: 1\n    K: 1\n    V: 1\n"
    seeds = ", ".join(str(i) for i in range(1000))
    text += f"    slots: {{indices: [{indices}]}}\n    matrix:\n      seed: [{seeds}]\n"
    err, elapsed, _ = refused(write(tmp_path, text))
    assert (err.case, err.field, err.line) == ("c", "matrix", 9), str(err)
    assert f"1000 variants of about {B + 11} values" in err.message, str(err)
    assert f"past the {lim.MAX_VALUES} values" in err.message and elapsed < FAST_S


def test_the_library_is_well_inside_the_bounds():
    for file in cm.iter_case_files([Path(__file__).resolve().parents[1] / "cases"]):
        assert file.stat().st_size < lim.MAX_FILE_BYTES // 8
        load_file(file)


# ----------------------------------------------------------------- 2. characters, nesting


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"])
def test_control_characters_are_case_file_errors(tmp_path, char):
    path = write(tmp_path, one_case(f"seed: 1\ntier: cpu{char}\n").encode())
    err, _, _ = refused(path)
    assert (err.case, err.field, err.line) == ("c", "tier", 9), str(err)
    assert f"U+{ord(char):04X}" in err.message and "column 14" in err.message, str(err)
    assert "\\x" not in str(err) and char not in str(err)
    rc, text = validate_exit(path)
    assert rc == 2 and "Traceback" not in text and text.startswith("error: "), text


def test_control_character_in_a_comment_names_the_line(tmp_path):
    path = write(tmp_path, b"# a \x00 comment\n" + one_case("").encode())
    err, _, _ = refused(path)
    assert (err.case, err.field, err.line) == (None, None, 1), str(err)


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}"), ("- ", "")])
def test_deep_nesting_is_a_case_file_error(tmp_path, opener, closer):
    depth = 5000 if opener != "- " else 500  # block nesting grows as depth**2 bytes
    if opener == "- ":
        value = "\n".join("  " * i + "- " for i in range(depth)) + "1"
        text = one_case("") + "    seed:\n" + textwrap.indent(value, "      ") + "\n"
    else:
        text = one_case("seed: " + opener * depth + "1" + closer * depth + "\n")
    path = write(tmp_path, text)
    err, elapsed, _ = refused(path)
    assert "nested deeper than" in err.message and err.line is not None, str(err)
    assert elapsed < FAST_S
    rc, out = validate_exit(path)
    assert rc == 2 and "Traceback" not in out, out


# ----------------------------------------------------------------- 3. overrides

EXPECT = "expect: {error: x}\n"


@pytest.mark.parametrize(
    "override, message, field",
    [
        ("a_device: foo", "must match ^(meta|cpu|cuda(:[0-9]+)?)$ (got 'foo')", None),
        ("out_shape: abc", "must be a list (got 'abc')", None),
        ("out_shape: [2, -1, 8]", "must be >= 0 (got -1)", "overrides.out_shape[1]"),
        ("out_shape: [1, 1, 1, 1, 1, 1, 1, 1, 1]", "must have at most 8 item(s)", None),
        ("a_rows: -1", "must be >= 0 (got -1)", None),
        ("index_dtype: complex128", "must be one of fp32, bf16, fp16, fp64, int32", None),
        ("out_dtype: fp8", "must be one of fp32, bf16, fp16, fp64, int32", None),
        ("out_alias: a", "must be one of state, mixed_qkv (got 'a')", None),
        ("state_ndim: 100000", "must be <= 8 (got 100000)", None),
        ("qkv_last_stride: 0", "must be >= 1 (got 0)", None),
        ("A_log_stride: 1.5", "must be an integer (got 1.5)", None),
        ("qkv_width_delta: -1000", "makes mixed_qkv narrower than 0 columns", None),
        ("state_layout: 3", "must be a string (got 3)", None),
    ],
)
def test_override_values_are_validated(tmp_path, override, message, field):
    field = field or f"overrides.{override.split(':')[0]}"
    err, _, _ = refused(write(tmp_path, one_case(f"{EXPECT}overrides:\n  {override}\n")))
    assert (err.case, err.field, err.line) == ("c", field, 10), str(err)
    assert message in err.message, str(err)


def test_overrides_count_in_the_memory_estimate(tmp_path):
    """An out_shape of 6.2 GB on the cpu tier (limit 2 GiB) is refused, blamed on it."""
    path = write(tmp_path, one_case(f"{EXPECT}overrides:\n  out_shape: [3, 1024, 1048576]\n"))
    err, elapsed, peak = refused(path)
    assert (err.case, err.field, err.line) == ("c", "overrides.out_shape", 10), str(err)
    assert "inputs and overrides need about 6.00 GiB, over the 2.00 GiB limit" in err.message
    assert elapsed < FAST_S and peak < PEAK_BYTES
    for key, value in (("a_rows", 10**9), ("qkv_last_stride", 10**8), ("A_log_stride", 10**10)):
        err, _, _ = refused(write(tmp_path, one_case(f"{EXPECT}overrides: {{{key}: {value}}}\n")))
        assert err.field == f"overrides.{key}" and "GiB limit" in err.message, str(err)


def test_overrides_without_expect_are_refused(tmp_path):
    err, _, _ = refused(write(tmp_path, one_case("overrides: {out_dtype: fp32}\n")))
    assert (err.case, err.field, err.line) == ("c", "overrides", 8), str(err)
    assert "need 'expect'" in err.message


def test_every_override_of_the_library_is_valid_and_estimated():
    from harness.cases.semantics import override_bytes

    root = Path(__file__).resolve().parents[1] / "cases"
    specs = [s for s in cm.load_paths([root]) if s.overrides]
    assert {k for s in specs for k, _ in s.overrides} >= {"out_shape", "a_rows", "a_device"}
    for spec in specs:
        sizes = override_bytes(spec)
        assert set(sizes) == {k for k, _ in spec.overrides}
        assert cm.estimate_case_bytes(spec) >= 2 * cm.estimate_case_bytes(
            type(spec)(**{**vars(spec), "overrides": (), "expect": None})
        )


# ----------------------------------------------------------------- 4. work


def test_steps_are_bounded_by_the_tier_work_limit(tmp_path):
    """steps: 1e12 made `run` hang; now it is refused and the steps are blamed."""
    err, elapsed, _ = refused(write(tmp_path, one_case("steps: 1000000000000\n")))
    assert (err.case, err.field, err.line) == ("c", "steps", 8), str(err)
    assert "1000000000000 steps x 256 state elements" in err.message
    assert "limit of tier 'cpu'" in err.message and elapsed < FAST_S
    # the same work is fine where the tier affords it, or with a raised limit
    steps = lim.DEFAULT_WORK_LIMITS["cpu"] // 256
    load_file(write(tmp_path, one_case(f"steps: {steps}\n")))
    refused(write(tmp_path, one_case(f"steps: {steps + 1}\n")))
    load_file(write(tmp_path, one_case(f"steps: {steps + 1}\ntier: gpu\n")))
    load_file(write(tmp_path, one_case(f"steps: {10 * steps}\n")), work_limits={"cpu": 1 << 40})


def test_one_step_too_big_for_the_tier_blames_the_case(tmp_path):
    text = "cases:\n  - name: wide\n    B: 1\n    H: 1\n    HV: 2\n    K: 16384\n    V: 16384\n"
    err, _, _ = refused(write(tmp_path, text + "    state_dtype: bf16\n"))
    assert (err.case, err.field, err.line) == ("wide", None, 2), str(err)
    assert "1 steps x 536870912 state elements" in err.message


def test_the_library_fits_its_work_limits_with_room():
    root = Path(__file__).resolve().parents[1] / "cases"
    for spec in cm.load_paths([root]):
        assert cm.case_work(spec) * 100 < lim.DEFAULT_WORK_LIMITS[spec.tier], spec.id


# ----------------------------------------------------------------- 5. empty matrix, magnitudes


def test_an_empty_matrix_is_refused(tmp_path):
    """``matrix: {}`` made a case ``c1[]``."""
    err, _, _ = refused(write(tmp_path, one_case("matrix: {}\n")))
    assert (err.case, err.field, err.line) == ("c", "matrix", 8), str(err)
    assert "must have at least 1 key(s)" in err.message


@pytest.mark.parametrize(
    "body, field, message",
    [
        ("values: {gate_mean: 1e308}", "values.gate_mean", "past the largest bf16 (3.39e+38)"),
        ("values: {gate_mean: -1e308}", "values.gate_mean", "the inputs would be inf"),
        ("act_dtype: fp16\nvalues: {gate_mean: 70000}", "values.gate_mean", "largest fp16"),
        ("values: {gate_std: 1e38}", "values.gate_std", "a ~ N(gate_mean, gate_std)"),
        ("values: {qkv_std: 1e300}", "values.qkv_std", "q, k, v ~ N(0, qkv_std)"),
        ("values: {state_std: 1e38}", "values.state_std", "past the largest fp32"),
        ("values: {beta_std: 1e39}", "values.beta_std", "b ~ N(0, beta_std)"),
        ("values: {dt_bias_std: 1e39}", "values.dt_bias_std", "dt_bias"),
        ("values: {tiny_qk: true, tiny_qk_norm: 3e38}", "values.tiny_qk_norm", "q and k"),
        ("values: {a_log_lo: 80, a_log_hi: 100}", "values.a_log_hi", "exp(A_log) overflows"),
        ("scale: 1e39", "scale", "past the largest fp32"),
    ],
)
def test_values_that_make_inputs_inf_are_refused(tmp_path, body, field, message):
    err, _, _ = refused(write(tmp_path, one_case(body + "\n")))
    assert (err.case, err.field) == ("c", field) and err.line >= 8, str(err)
    assert message in err.message, str(err)


def test_values_near_the_edges_are_accepted(tmp_path):
    """fp32 activations hold what fp16 ones cannot; gates past exp overflow stay valid."""
    load_file(write(tmp_path, one_case("act_dtype: fp32\nvalues: {gate_mean: 70000}\n")))
    load_file(write(tmp_path, one_case("values: {gate_mean: 1e30, a_log_hi: 88}\n")))


def test_a_gate_mean_of_1e308_really_made_the_inputs_inf():
    """What the refused case would have run on (built without the loader)."""
    torch = pytest.importorskip("torch")
    from factories import spec

    from harness.inputs.build import build_inputs

    inputs = build_inputs(spec(values={"gate_mean": 1e308}))
    assert torch.isinf(inputs.a.float()).all()


def test_a_state_that_can_overflow_the_oracle_is_refused(tmp_path):
    """Without the L2 norm the state can grow by |k|^2 a step: 200 steps pass 1e300."""
    body = "use_qk_l2norm: false\nvalues: {qkv_std: 10}\nsteps: 200\n"
    err, _, _ = refused(write(tmp_path, one_case(body)))
    assert (err.case, err.field, err.line) == ("c", "steps", 10), str(err)
    assert "past the float64 oracle's range" in err.message
    load_file(write(tmp_path, one_case(body.replace("false", "true"))))  # normalised: linear
    load_file(write(tmp_path, one_case(body.replace("200", "20"))))


# ----------------------------------------------------------------- 6. the smaller ones


@pytest.mark.parametrize("field, line", [("B", 3), ("pool", 8)])
def test_a_size_of_2_63_is_blamed_on_that_size(tmp_path, field, line):
    """B or pool at 2**63 was blamed on index_dtype."""
    text = one_case(f"pool: {2**63 if field == 'pool' else 4}\n")
    if field == "B":
        text = text.replace("B: 2", f"B: {2**63}")
    err, _, _ = refused(write(tmp_path, text))
    assert (err.case, err.field, err.line) == ("c", field, line), str(err)
    assert "must be <= 9223372036854775807" in err.message


def test_a_huge_batch_is_refused_as_too_big_not_on_the_index_dtype(tmp_path):
    err, _, _ = refused(write(tmp_path, one_case("").replace("B: 2", f"B: {2**62}")))
    assert (err.case, err.field, err.line) == ("c", None, 2), str(err)
    assert "GiB limit of tier 'cpu'" in err.message


@pytest.mark.parametrize("where", ["name", "key", "value"])
def test_huge_values_are_clipped_in_messages(tmp_path, where):
    huge = "x" * 200_000
    text = {
        "name": f"cases:\n  - name: '{huge} y'\n    {SMALL}\n",
        "key": one_case(f"? {huge}\n: 1\n"),  # an explicit key: a plain one stops at 1024
        "value": one_case(f"act_dtype: {huge}\n"),
    }[where]
    err, elapsed, _ = refused(write(tmp_path, text), traced=False)
    assert len(str(err)) < 1500 and "characters)" in str(err), str(err)[:2000]
    assert err.line is not None and elapsed < FAST_S


def test_a_raw_newline_in_a_name_stays_on_one_line(tmp_path):
    err, _, _ = refused(write(tmp_path, f'cases:\n  - name: "bad\\nname"\n    {SMALL}\n'))
    assert err.case == "bad\nname" and err.field == "name", str(err)
    assert "\n" not in str(err) and "case 'bad\\nname'" in str(err)


@pytest.mark.parametrize(
    "bad, opened",
    [
        ('name: "unclosed', 8),
        ("name: 'unclosed", 8),
        ("B: [1, 2", 8),
        ("slots: {padding: none", 8),
    ],
)
def test_an_unclosed_quote_or_bracket_is_blamed_where_it_opens(tmp_path, bad, opened):
    """PyYAML notices at the end of the file; its context mark says where it opened."""
    text = one_case(bad + "\n" + "steps: 1\n" * 5)
    err, _, _ = refused(write(tmp_path, text))
    assert err.line == opened and "starts on this line" in err.message, str(err)
    gave_up = int(re.search(r"on line (\d+)$", err.message)[1])  # and where YAML gave up
    assert gave_up > opened


@pytest.mark.parametrize(
    "body, field, line",
    [
        ("slots: !!set {padding, order}", "slots", 8),
        ("values: !custom {gate_mean: 1.0}", "values", 8),
        ("slots:\n  indices: !!omap [{a: 1}, {b: 2}]", "slots.indices", 9),
        ("matrix: !!omap\n  - seed: [1, 2]", "matrix", 8),
    ],
)
def test_tags_on_lists_and_maps_are_refused(tmp_path, body, field, line):
    """PyYAML's tags on collections were dropped silently (or built a set)."""
    err, _, _ = refused(write(tmp_path, one_case(body + "\n")))
    assert (err.case, err.field, err.line) == ("c", field, line), str(err)
    assert "is not allowed" in err.message and "tag" in err.message


@pytest.mark.parametrize(
    "value, message",
    [
        ("1" * 5000, "Exceeds the limit"),
        ("!!int 0x", "cannot read '0x' as int"),
        ("!!timestamp 2001-13-45", "cannot read '2001-13-45' as timestamp"),
    ],
)
def test_values_yaml_cannot_build_are_case_file_errors(tmp_path, value, message):
    """These ended in a ValueError traceback from PyYAML's constructor."""
    path = write(tmp_path, one_case(f"seed: {value}\n"))
    err, _, _ = refused(path)
    assert (err.case, err.field, err.line) == ("c", "seed", 8) and message in err.message
    rc, text = validate_exit(path)
    assert rc == 2 and "Traceback" not in text, text
