"""The pytest plugin (harness/plugin.py) as a user meets it through ``pytest cases/``.

Each test lays out a small project with pytester: a ``cases/`` folder that
holds the case schema, tiny case files, and implementations as files (the
oracle, one that writes zeros). Collection and the options run in process;
xdist and the exit codes of whole sessions in a subprocess.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from harness.core.exitcodes import EXIT_NO_TESTS

pytest_plugins = ["pytester"]

SCHEMA = Path(__file__).resolve().parents[1] / "harness" / "cases" / "schema.json"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine with no GPU")

CPU = """
defaults: {K: 4, V: 4, H: 1, HV: 2}
cases:
  - name: tiny
    B: 3
    matrix:
      layout.state_layout: [vk, kv]
  - name: other
    B: 2
    slots: {padding: alternate}
"""
GPU = """
cases:
  - {name: big, B: 2, H: 1, HV: 2, K: 4, V: 4, tier: gpu}
"""
BROKEN = """
cases:
  - name: broken
    B: [1, 2
"""
ZERO = """
def decode(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw):
    out.zero_()
"""
ORACLE = "--impl", "oracle", "--baseline", "none"
CPU_IDS = ["cases/cpu.yaml::tiny[vk]", "cases/cpu.yaml::tiny[kv]", "cases/cpu.yaml::other"]


def _plugin_args(pytestconfig: pytest.Config) -> list[str]:
    """Load the plugin by module when it is not installed as an entry point."""
    return [] if pytestconfig.pluginmanager.has_plugin("gdn_harness") else ["-p", "harness.plugin"]


@pytest.fixture
def project(pytester: pytest.Pytester, pytestconfig: pytest.Config) -> pytest.Pytester:
    cases = pytester.mkdir("cases")
    shutil.copy(SCHEMA, cases / "schema.json")
    (cases / "cpu.yaml").write_text(textwrap.dedent(CPU).lstrip())
    (cases / "gpu").mkdir()
    (cases / "gpu" / "models.yaml").write_text(textwrap.dedent(GPU).lstrip())
    (pytester.path / "zero.py").write_text(textwrap.dedent(ZERO).lstrip())
    pytester._gdn_args = _plugin_args(pytestconfig)  # type: ignore[attr-defined]
    return pytester


def run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest("-p", "no:cacheprovider", *p._gdn_args, *args)  # type: ignore[attr-defined]


def run_subprocess(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest_subprocess("-p", "no:cacheprovider", *p._gdn_args, *args)  # type: ignore[attr-defined]


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line and not line.startswith(" ")]


# --------------------------------------------------------------------------
# Collection


def test_ids_are_file_case_variant_in_file_order(project):
    result = run(project, "cases", "--collect-only", "-q")
    assert collected(result) == [*CPU_IDS, "cases/gpu/models.yaml::big"]


def test_tier_option_selects_at_collection(project):
    result = run(project, "cases", "--collect-only", "-q", "--tier", "gpu")
    assert collected(result) == ["cases/gpu/models.yaml::big"]
    result = run(project, "cases", "--collect-only", "-q", "--tier", "all")
    assert len(collected(result)) == 4


def test_a_bad_file_errors_while_the_others_run(project):
    (project.path / "cases" / "broken.yaml").write_text(textwrap.dedent(BROKEN).lstrip())
    result = run(project, "cases", "--tier", "cpu", *ORACLE)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of broken.yaml: invalid case file*",
            "cases/broken.yaml:3: invalid YAML: *",  # where the bracket opens
            "ERROR cases/broken.yaml::invalid-case-file*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_only_gdn_harness_case_files_are_collected(project):
    """Another project's cases/ folder is not ours; *.gdn.yaml and named files are."""
    other = project.mkdir("other")
    (other / "cases").mkdir()
    (other / "cases" / "servers.yaml").write_text("servers:\n  - host: a\n")
    (other / "cases" / "lookalike.yaml").write_text(textwrap.dedent(CPU).lstrip())
    (other / "mine.gdn.yaml").write_text(textwrap.dedent(GPU).lstrip())
    result = run(project, "other", "--collect-only", "-q")
    assert collected(result) == ["other/mine.gdn.yaml::big"]
    result = run(project, "other/cases/lookalike.yaml", "--collect-only", "-q")
    assert len(collected(result)) == 3  # named on the command line


def test_a_case_file_run_alongside_python_tests(project):
    project.makepyfile(test_plain="def test_one():\n    pass\n")
    result = run(project, "cases", "test_plain.py", "--tier", "cpu", *ORACLE)
    result.assert_outcomes(passed=4)


# --------------------------------------------------------------------------
# Running: failures, options, skips


def test_a_failure_shows_the_yaml_line_and_the_rerun_command(project):
    result = run(project, "cases/cpu.yaml", "-k", "other", "--impl", "zero.py:decode")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FAILED cases/cpu.yaml::other (line 7;*",
            "*[[]values] zero.py:decode*",
            "*rerun: gdn-harness run cases/cpu.yaml::other --impl zero.py:decode*",
        ]
    )


def test_k_selects_case_ids_like_the_command_line(project):
    result = run(project, "cases", "-k", "tiny and kv", "--collect-only", "-q")
    assert collected(result) == ["cases/cpu.yaml::tiny[kv]"]


def test_report_dir_and_run_name(project):
    reports = project.path / "reports"
    args = ("--report-dir", str(reports), "--run-name", "mine", "--tier", "cpu")
    result = run(project, "cases", *ORACLE, *args)
    result.assert_outcomes(passed=3)
    summary = json.loads((reports / "mine" / "summary.json").read_text())
    assert summary["counts"]["passed"] == 3
    lines = (reports / "mine" / "results.jsonl").read_text().splitlines()
    assert {json.loads(line)["impl"] for line in lines} == {"oracle"}


def test_a_bad_impl_name_fails_the_items_with_the_message(project):
    result = run(project, "cases/cpu.yaml", "-k", "other", "--impl", "nofile.py:decode")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no such file 'nofile.py'*"])


def test_options_are_in_the_help(project):
    result = run(project, "--help")
    result.stdout.fnmatch_lines(
        [
            "gdn-harness case files:",
            "*--impl=IMPL*impl name of the implementation under test*",
            "*--baseline=IMPL*",
            "*--tier=TIER*",
            "*--gdn-shard=K/N*",
            "*--report-dir=DIR*",
            "*--run-name=NAME*",
        ]
    )


@no_cuda
def test_gpu_cases_skip_on_a_machine_with_no_gpu(project):
    result = run(project, "cases", "-rs", *ORACLE)
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*tier gpu needs a CUDA device*"])
    assert result.ret == pytest.ExitCode.OK


@no_cuda
def test_a_session_that_only_skipped_exits_5(project):
    result = run_subprocess(project, "cases/gpu", *ORACLE)
    result.assert_outcomes(skipped=1)
    assert result.ret == EXIT_NO_TESTS
    result.stdout.fnmatch_lines(["*gdn-harness: nothing was tested: all 1 selected cases*"])


# --------------------------------------------------------------------------
# Shards and xdist


def test_shards_partition_the_collection(project):
    whole = collected(run(project, "cases", "--collect-only", "-q"))
    parts = [
        collected(run(project, "cases", "--collect-only", "-q", "--gdn-shard", f"{k}/3"))
        for k in (1, 2, 3)
    ]
    assert sorted(i for p in parts for i in p) == sorted(whole)
    assert parts[0] == [whole[0], whole[3]]


def test_a_bad_shard_is_a_usage_error(project):
    result = run(project, "cases", "--gdn-shard", "4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*K/N*"])


def test_two_collections_agree_and_xdist_runs_them(project):
    first = collected(run_subprocess(project, "cases", "--collect-only", "-q"))
    second = collected(run_subprocess(project, "cases", "--collect-only", "-q"))
    assert first == second and len(first) == 4
    result = run_subprocess(project, "cases", "-n", "2", "--tier", "cpu", *ORACLE)
    result.assert_outcomes(passed=3)
