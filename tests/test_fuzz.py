"""Tests of the fuzzer: the strategies, the profiles and ``gdn-harness fuzz``.

The fuzzer must find every planted bug of ``tests/planted/bugs.py`` within
the ``ci`` budget and save a minimal YAML case that reproduces it, and must
find nothing in the built-in implementations. The planted implementations are
pure torch, so their fuzz runs take seconds; the built-in Triton kernels run
under the interpreter (about 0.5 s an example), so they get few examples.
Each test is its own item so that ``pytest -n 2`` spreads them.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from harness import cli
from harness.cases import case_to_yaml as to_yaml
from harness.cases import estimate_case_bytes, load_file, max_live_rows, same_case
from harness.core.spec import CaseSpec
from harness.fuzz import command as fuzz_mod
from harness.fuzz import profiles
from harness.fuzz.strategies import TIER_LIMITS, case_specs, describe, programs
from harness.report import read_results
from harness.run.result import CaseResult, Violation

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(ROOT) not in sys.path:  # `tests.planted.bugs:NAME` specs need the repo root
    sys.path.insert(0, str(ROOT))

try:
    planted = importlib.import_module("tests.planted.bugs")
except ModuleNotFoundError as exc:  # pragma: no cover - only before the fixtures land
    if not (exc.name or "").startswith("tests"):
        raise
    planted = None
PLANTED: list[str] = list(getattr(planted, "PLANTED", []))

CI = profiles.get_settings(profiles.CI)


def _env() -> dict[str, str]:
    """Environment for subprocesses: the repo root and tests/ importable."""
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _fuzz(args: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(["fuzz", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _saved(save_dir: Path) -> Path:
    files = sorted(save_dir.glob("*.yaml"))
    assert len(files) == 1, files
    return files[0]


def _rerun(saved: Path, impl: str, tmp_path: Path, baseline: str = "none") -> tuple[int, dict]:
    """``gdn-harness run SAVED`` in-process: exit code and the case's report row."""
    report = tmp_path / "reports"
    args = ["--report-dir", str(report), "--run-name", "rerun", "--no-isolate"]
    rc = cli.main(["run", str(saved), "--impl", impl, "--baseline", baseline, *args])
    rows = read_results(report / "rerun")
    assert len(rows) == 1
    return rc, rows[0]


# --------------------------------------------------------------------------
# Strategies


@settings(CI, max_examples=80)
@given(spec=case_specs())
def test_drawn_cpu_cases_are_valid_small_and_round_trip(spec: CaseSpec) -> None:
    """Every drawn case is one the loader accepts, and it is cheap to run."""
    lim = TIER_LIMITS["cpu"]
    assert spec.file == "<fuzz>" and spec.tier == "cpu"
    assert spec.HV % spec.H == 0 and 1 <= spec.HV // spec.H <= lim.max_ratio
    assert max(spec.K, spec.V) <= lim.max_dim
    assert spec.B in range(1, lim.max_B + 1) and spec.HV in range(1, lim.max_HV + 1)
    assert programs(spec) <= lim.max_programs
    assert spec.pool >= max_live_rows(spec.B, spec.slots)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.yaml"
        path.write_text(to_yaml(spec), encoding="utf-8")
        (loaded,) = load_file(path)
    assert same_case(loaded, spec)
    assert describe(spec).startswith(f"B={spec.B} ")


@settings(CI, max_examples=40)
@given(spec=case_specs(tier="gpu"))
def test_drawn_gpu_cases_fit_the_gpu_tier(spec: CaseSpec) -> None:
    assert spec.tier == "gpu" and spec.HV % spec.H == 0
    assert estimate_case_bytes(spec) < 8 * 2**30


FEATURES = {
    "K not a power of two": lambda s: s.K & (s.K - 1) != 0 and s.K > 8,
    "V != K": lambda s: s.K != s.V,
    "head ratio 8": lambda s: s.HV == 8 * s.H,
    "GQA with H > 1": lambda s: s.H > 1 and s.HV > s.H,
    "odd batch over 4": lambda s: s.B in (5, 7),
    "padded qkv rows": lambda s: s.layout.qkv_row_pad > 0 and s.B > 1,
    "packed a/b": lambda s: s.layout.ab_packed and s.B > 1,
    "kv layout with slot padding": lambda s: (
        s.layout.state_layout == "kv" and s.layout.state_slot_pad > 0
    ),
    "explicit indices with padding": lambda s: (
        s.slots.indices is not None
        and -1 in s.slots.indices
        and any(i >= 0 for i in s.slots.indices)
    ),
    "random padding": lambda s: s.slots.padding == "random" and s.slots.indices is None,
    "fp32 activations, bf16 state": lambda s: s.act_dtype == "fp32" and s.state_dtype == "bf16",
    "int64 indices, act params": lambda s: s.index_dtype == "int64" and s.param_dtype == "act",
    "three steps": lambda s: s.steps == 3,
    "tiny q/k": lambda s: s.values.tiny_qk,
    "softplus threshold": lambda s: 19 <= s.values.gate_mean <= 21,
    "exp overflow": lambda s: s.values.gate_mean > 88,
    "no l2 norm": lambda s: not s.use_qk_l2norm,
    "explicit scale": lambda s: s.scale is not None,
}


def test_case_space_is_covered() -> None:
    """Each corner that some bug class needs is drawn (no kernel runs: cheap)."""
    seen: set[str] = set()

    @settings(CI, max_examples=300)
    @given(spec=case_specs())
    def collect(spec: CaseSpec) -> None:
        seen.update(name for name, has in FEATURES.items() if has(spec))

    collect()
    assert set(FEATURES) - seen == set()


# --------------------------------------------------------------------------
# Profiles


def test_ci_profile_is_derandomized_and_bounded() -> None:
    assert CI.derandomize and CI.database is None and CI.deadline is None
    assert 0 < CI.max_examples <= 1000


def test_nightly_profile_keeps_its_database_under_reports() -> None:
    nightly = profiles.get_settings(profiles.NIGHTLY)
    assert not nightly.derandomize and nightly.max_examples >= 10_000
    assert isinstance(nightly.database, DirectoryBasedExampleDatabase)
    assert Path(nightly.database.path).as_posix().endswith("reports/hypothesis-db")


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Hypothesis profile"):
        profiles.get_settings("weekly")


# --------------------------------------------------------------------------
# The fuzz command


@pytest.mark.parametrize(
    "args, message",
    [
        (["--impl", "no_such_impl"], "unknown implementation"),
        (["--impl", "oracle", "--max-examples", "0"], "--max-examples"),
        (["--impl", "oracle", "--budget", "-1"], "--budget"),
        (["--impl", "oracle", "--tier", "gpu", "--device", "cpu"], "needs a CUDA device"),
    ],
)
def test_fuzz_usage_errors_exit_2(args: list[str], message: str, capsys, tmp_path) -> None:
    rc, _, err = _fuzz([*args, "--save-dir", str(tmp_path)], capsys)
    assert rc == 2 and message in err
    assert not list(tmp_path.iterdir())


def test_fuzz_oracle_finds_nothing_and_shows_progress(capsys, tmp_path) -> None:
    args = ["--impl", "oracle", "--baseline", "none", "--profile", "ci"]
    rc, out, err = _fuzz([*args, "--max-examples", "40", "--save-dir", str(tmp_path)], capsys)
    assert rc == 0, out + err
    assert "no failure in 40 examples" in out
    assert re.search(r"#1 .* search B=\d+ H=\d+ .* -> passed", err)
    assert not list(tmp_path.iterdir())


def test_fuzz_budget_stops_generating(capsys, tmp_path) -> None:
    args = ["--impl", "oracle", "--baseline", "none", "--seed", "3", "-q"]
    rc, out, err = _fuzz([*args, "--max-examples", "100000", "--budget", "1"], capsys)
    if rc == 1:
        pytest.skip("a failure was found before the budget ran out (see other tests)")
    assert rc == 0 and "stopped by budget" in out
    assert "#1 " not in err  # --quiet


@pytest.mark.parametrize("baseline", ["none", "baseline"])
def test_fuzz_packed_finds_nothing(baseline: str, capsys, tmp_path) -> None:
    """The built-in kernel against the oracle (and the baseline): a few examples,
    since each runs the Triton interpreter."""
    n = "6" if baseline == "none" else "4"
    args = ["--impl", "packed", "--baseline", baseline, "--profile", "ci", "--max-examples", n]
    rc, out, err = _fuzz([*args, "--save-dir", str(tmp_path), "-q"], capsys)
    assert rc == 0, out + err


def test_fuzz_planted_correct_finds_nothing(capsys, tmp_path) -> None:
    """The bug-free planted implementation passes the whole ci budget: the
    strategies draw no case that the tolerances wrongly fail."""
    if planted is None:
        pytest.skip("tests/planted/bugs.py is not there")
    args = ["--impl", "tests.planted.bugs:correct", "--baseline", "none", "--profile", "ci"]
    rc, out, err = _fuzz([*args, "--save-dir", str(tmp_path), "-q"], capsys)
    assert rc == 0, out + err


def _check_saved_file(saved: Path, impl: str) -> str:
    """The saved file's name, header and case; returns its text."""
    text = saved.read_text(encoding="utf-8")
    assert re.fullmatch(
        rf"fuzz-{re.escape(fuzz_mod.impl_file_part(impl))}-[0-9a-f]{{10}}\.yaml", saved.name
    )
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    joined = "\n".join(header)
    assert "gdn-harness fuzz" in joined and "Failed:" in joined and "Seed:" in joined
    assert f"--impl {impl}" in joined and "Rerun: gdn-harness run" in joined
    assert all(len(ln) <= 88 or " " not in ln[2:].strip() for ln in header), header
    (spec,) = load_file(saved)
    assert spec.tier == "cpu" and spec.name.startswith("fuzz_")
    # only what differs from the defaults: the body is the minimal text of the case
    body = text[len("".join(f"{ln}\n" for ln in header)) :]
    assert body == to_yaml(spec), text
    return text


def test_fuzz_fixture_bug_is_saved_and_reproduces_in_a_subprocess(capsys, tmp_path) -> None:
    """End to end with the real console script: found, shrunk, saved, rerun."""
    impl = "fixtures_impls:decode_zero"  # writes zeros: wrong unless every row pads
    save = tmp_path / "saved"
    args = ["--impl", impl, "--baseline", "none", "--seed", "11", "--save-dir", str(save)]
    rc, out, err = _fuzz(args, capsys)
    assert rc == 1, out + err
    saved = _saved(save)
    _check_saved_file(saved, impl)
    assert f"minimal case saved to {saved}" in out
    assert "shrinking" in err and " shrink " in err
    (spec,) = load_file(saved)
    assert (spec.B, spec.H, spec.HV, spec.K, spec.V) == (1, 1, 1, 1, 1)  # shrunk
    run = ["run", str(saved), "--impl", impl, "--baseline", "none"]
    proc = subprocess.run(  # `python -m harness` is `gdn-harness`, found without PATH
        [sys.executable, "-m", "harness", *run, "--report-dir", str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    # A correct implementation passes the saved case.
    assert _rerun(saved, "oracle", tmp_path)[0] == 0


def test_saved_case_is_short_and_its_failure_text_whole(tmp_path) -> None:
    """A 1-row failure wrote 40 lines with every default, and its failure
    comments were cut mid-word at 220 characters."""
    opts = fuzz_mod.FuzzOptions(
        impl="fixtures_impls:decode_zero", baseline=None, seed=2, save_dir=tmp_path
    )
    report = fuzz_mod.fuzz(opts, stream=io.StringIO())
    text = report.saved.read_text(encoding="utf-8")
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert len(body) <= 10, text  # cases:, name, the five sizes, and what differs
    assert "qkv_std" not in text and "state_layout" not in text and "seed: 0" not in text
    words = " ".join(ln[1:] for ln in text.splitlines() if ln.startswith("#")).split()
    for v in report.result.violations[: fuzz_mod.HEADER_VIOLATIONS]:
        message = " ".join(v.message.split())
        assert message in " ".join(words), (message, text)


def test_failure_lines_are_whole_and_wrapped_at_words() -> None:
    spec = CaseSpec(file="f", name="c", line=1, B=1, H=1, HV=1, K=1, V=1, pool=1)
    message = " ".join(f"word{i}-with-some-length" for i in range(60))  # ~1,500 characters
    result = CaseResult(
        spec, "impl", None, "failed", violations=[Violation("values", "impl", 0, message)]
    )
    (line,) = fuzz_mod._first_lines(result)
    assert line.endswith(message)
    header = [ln for ln in to_yaml(spec, f"Failed:\n  {line}").splitlines() if ln[0] == "#"]
    assert all(len(ln) <= 88 for ln in header), header
    assert " ".join(ln[1:] for ln in header).split() == ["Failed:", *line.split()]
    assert all(ln.startswith("#   ") for ln in header[1:])  # indented as it started
    assert not any(w.startswith("-") or w.endswith("-") for ln in header for w in ln.split())


def test_fuzz_saves_under_the_projects_regressions_folder(capsys, tmp_path, monkeypatch) -> None:
    """Without --save-dir, the case goes to cases/regressions of the project found
    from the current directory up, not under the current directory."""
    project = tmp_path / "proj"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "gdn-harness"\n')
    monkeypatch.chdir(project / "sub" / "deeper")
    args = ["--impl", "fixtures_impls:decode_zero", "--baseline", "none", "--seed", "11", "-q"]
    rc, out, err = _fuzz(args, capsys)
    assert rc == 1, out + err
    saved = _saved(project / "cases" / "regressions")
    assert f"minimal case saved to {saved}" in out
    assert not list((project / "sub").rglob("*.yaml"))


def test_fuzz_with_a_seed_is_reproducible(capsys, tmp_path) -> None:
    impl = "fixtures_impls:decode_zero"
    names = []
    for run in ("a", "b"):
        args = ["--impl", impl, "--baseline", "none", "--seed", "5", "-q"]
        rc, _, _ = _fuzz([*args, "--save-dir", str(tmp_path / run)], capsys)
        assert rc == 1
        names.append(_saved(tmp_path / run).name)
    assert names[0] == names[1]


def test_api_reports_the_minimal_case(tmp_path) -> None:
    opts = fuzz_mod.FuzzOptions(
        impl="fixtures_impls:decode_zero", baseline=None, seed=2, save_dir=tmp_path
    )
    stream = io.StringIO()
    report = fuzz_mod.fuzz(opts, stream=stream)
    assert report.failed and report.reproduced and report.saved is not None
    assert report.minimal is not None and report.minimal.file == "<fuzz>"
    assert report.generated >= 1 and report.examples >= report.generated
    assert report.result is not None and report.result.case.file.endswith(report.saved.name)
    assert "fuzz: failure:" in stream.getvalue()


@pytest.mark.parametrize("name", PLANTED or ["<none>"])
def test_fuzz_finds_planted_bug(name: str, capsys, tmp_path) -> None:
    """Each planted bug is found within the ci budget, and the saved YAML
    reproduces it under `gdn-harness run`, with the check that must catch it."""
    if planted is None:
        pytest.skip("tests/planted/bugs.py (the planted-bug fixtures) does not exist yet")
    impl = f"tests.planted.bugs:{name}"
    save = tmp_path / "saved"
    args = ["--impl", impl, "--baseline", "none", "--profile", "ci", "-q"]
    rc, out, _ = _fuzz([*args, "--save-dir", str(save)], capsys)
    assert rc == 1, f"{name} not found within the ci budget:\n{out}"
    saved = _saved(save)
    _check_saved_file(saved, impl)
    flaky = planted.BUGS[name].check in fuzz_mod.FLAKY_CHECKS
    for attempt in range(fuzz_mod.FLAKY_RUNS if flaky else 1):
        rc, row = _rerun(saved, impl, tmp_path / str(attempt))
        if rc == 1:
            break
    assert rc == 1, f"the saved case does not reproduce {name}:\n{saved.read_text()}"
    checks = {v["check"] for v in row["violations"]}
    assert planted.BUGS[name].check in checks, (checks, row["violations"])
