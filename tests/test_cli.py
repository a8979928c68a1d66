"""The command line as a new user meets it: help, every error at once, exit 5
for a run that tested nothing, shards, file-path implementations, the
optional subcommands."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness import cli
from harness.core import options
from harness.core.exitcodes import EXIT_NO_TESTS, EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine with no GPU")

CASES = """
defaults: {tier: cpu, K: 4, V: 4, H: 1, HV: 2}
cases:
  - name: tiny
    B: 3
    pool: 4
    matrix:
      layout.state_layout: [vk, kv]
      act_dtype: [bf16, fp32]
  - name: second
    B: 2
    slots: {padding: alternate}
"""
BAD_ONE = """
cases:
  - name: a
    B: 0
    H: 1
    HV: 2
    K: 4
    V: 4
"""
BAD_TWO = """
cases:
  - {name: c, B: 2, H: 1, HV: 2, K: 4, V: 4, tier: cpux}
"""
GPU_ONLY = """
cases:
  - {name: big, B: 2, H: 1, HV: 2, K: 4, V: 4, tier: gpu}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "good": write(tmp_path / "lib" / "good.yaml", CASES),
        "bad1": write(tmp_path / "lib" / "bad" / "one.yaml", BAD_ONE),
        "bad2": write(tmp_path / "lib" / "bad" / "two.yaml", BAD_TWO),
        "gpu": write(tmp_path / "gpu" / "only.yaml", GPU_ONLY),
    }


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    report = ["--report-dir", str(tmp_path / "reports"), "--run-name", "r"]
    return ["run", *extra, "--impl", "oracle", "--baseline", "none", *report]


# --------------------------------------------------------------------------
# Help


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["validate", "cases"], ["list"]])
def test_help_validate_and_list_never_import_torch(args):
    code = (
        "import sys\nfrom harness.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'triton', 'hypothesis') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_and_option_is_described():
    top = cli.build_parser()
    assert "`" not in top.description and "`" not in top.epilog
    listed = {a.dest: a.help for a in top._subparsers._group_actions[0]._choices_actions}
    assert set(listed) >= {"run", "validate", "list", "impls", "fuzz", "bench"}
    assert all(listed.values())
    for name in ("run", "validate", "list", "impls", "fuzz", "bench"):
        parser = _subparsers(cli.build_parser([name]))[name]
        assert parser.description and "`" not in parser.description, name
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}"


def test_one_vocabulary_of_metavars():
    subs = {n: _subparsers(cli.build_parser([n]))[n] for n in ("run", "list", "fuzz", "bench")}
    for name, parser in subs.items():
        for action in parser._actions:
            if "--impl" in action.option_strings or "--baseline" in action.option_strings:
                assert action.metavar == "IMPL", (name, action.option_strings)
            if "--tier" in action.option_strings and name in ("run", "list"):
                assert action.metavar == "TIER"
    run = subs["run"]
    shared = {
        o: a.metavar for a in run._actions for o in a.option_strings if a.dest in options.SHARED
    }
    assert shared == {
        "--impl": "IMPL",
        "--baseline": "IMPL",
        "-k": "EXPR",
        "--tier": "TIER",
        "--shard": "K/N",
        "--pad": None,  # choices show as {negative,nonpositive}
        "--pad-output": None,
        "--check-device": "DEVICE",
        "--report-dir": "DIR",
        "--run-name": "NAME",
    }


def test_a_missing_optional_subcommand_is_left_out(monkeypatch, capsys):
    plugged = {**cli.PLUGGED, "later": ("harness.report.not_written_yet", "comes later")}
    monkeypatch.setattr(cli, "PLUGGED", plugged)
    assert "later" not in _subparsers(cli.build_parser())
    assert cli.main(["validate", str(ROOT / "cases" / "cpu" / "dims.yaml")]) == EXIT_OK
    assert "cases OK" in capsys.readouterr().out


def test_a_subcommand_whose_extra_is_missing_says_which(tmp_path):
    code = (
        "import sys\nsys.modules['hypothesis'] = None\n"
        "from harness.cli import main\nsys.exit(main(['fuzz', '--help']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_USAGE
    assert "needs hypothesis" in proc.stderr and "gdn-harness[fuzz]" in proc.stderr


# --------------------------------------------------------------------------
# Every error at once


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


def test_validate_lists_every_error_of_every_file(files, tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    rc = cli.main(["validate", str(tmp_path / "lib"), str(missing)])
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE
    lines = _error_lines(err)
    assert len(lines) == 3, err
    assert "one.yaml:3: case 'a', field 'B'" in lines[0]
    assert "two.yaml:2: case 'c', field 'tier'" in lines[1]
    assert "nowhere.yaml: no such file" in lines[2]
    assert "3 errors in 3 of 4 case files" in err


def test_validate_of_good_files_counts_cases(files, capsys):
    assert cli.main(["validate", str(files["good"])]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "5 cases OK in 1 file"


@pytest.mark.parametrize("command", ["run", "list"])
def test_run_and_list_refuse_invalid_files_listing_every_error(command, files, tmp_path, capsys):
    args = run_args(tmp_path) if command == "run" else ["list"]
    rc = cli.main([*args, str(tmp_path / "lib")])
    out, err = capsys.readouterr()
    assert rc == EXIT_USAGE
    assert len(_error_lines(err)) == 2 and "2 errors in 2 of 3 case files" in err
    assert "good.yaml" not in out  # nothing was listed or run
    assert not (tmp_path / "reports").exists()


def test_a_missing_case_id_is_an_error(files, capsys):
    rc = cli.main(["list", f"{files['good']}::nope", f"{files['good']}::second"])
    assert rc == EXIT_USAGE
    assert "case 'nope': no such case in the file" in capsys.readouterr().err


# --------------------------------------------------------------------------
# A run that tested nothing exits 5


@no_cuda
def test_an_explicit_tier_that_cannot_run_exits_5(files, tmp_path, capsys):
    rc = cli.main([*run_args(tmp_path, "--tier", "cpu", "--tier", "gpu"), str(files["good"])])
    err = capsys.readouterr().err
    assert rc == EXIT_NO_TESTS
    assert "tier gpu needs a CUDA device" in err and "nothing was tested" in err


@no_cuda
def test_cases_of_tiers_this_machine_cannot_run_exit_5(files, tmp_path, capsys):
    rc = cli.main([*run_args(tmp_path), str(files["gpu"])])
    err = capsys.readouterr().err
    assert rc == EXIT_NO_TESTS
    assert "error: the 1 selected case cannot run here (tier gpu needs a CUDA device" in err
    assert "error: nothing was tested (exit 5)" in err


def test_every_case_skipped_exits_5(files, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    args = run_args(tmp_path, "-k", "tiny and vk")
    args[args.index("oracle")] = "fixtures_impls:decode_kv_only"
    rc = cli.main([*args, str(files["good"])])
    out, err = capsys.readouterr()
    assert rc == EXIT_NO_TESTS, out + err
    assert "0 passed, 0 failed, 2 skipped" in out
    assert "nothing was tested: all 2 selected cases were skipped" in err


def test_an_empty_selection_is_bad_usage(files, tmp_path, capsys):
    rc = cli.main([*run_args(tmp_path, "-k", "no_such_name"), str(files["good"])])
    assert rc == EXIT_USAGE
    assert "no cases selected" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Shards


def _ids(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if "::" in line]


def test_list_shards_partition_the_selection(capsys):
    assert cli.main(["list", "--tier", "all"]) == EXIT_OK
    everything = _ids(capsys.readouterr().out)
    for n in (1, 2, 3, 7):
        shards = []
        for k in range(1, n + 1):
            assert cli.main(["list", "--tier", "all", "--shard", f"{k}/{n}"]) == EXIT_OK
            shards.append(_ids(capsys.readouterr().out))
        assert sorted(i for s in shards for i in s) == sorted(everything)
        assert sum(len(s) for s in shards) == len(everything)  # disjoint
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert cli.main(["list", "--tier", "all", "--shard", "2/3"]) == EXIT_OK
    assert _ids(capsys.readouterr().out) == options.parse_shard("2/3").pick(everything)


def test_run_shards_together_run_the_unsharded_selection(files, tmp_path, capsys):
    def run(name: str, *extra: str) -> set[str]:
        args = run_args(tmp_path, *extra)
        args[args.index("r")] = name
        assert cli.main([*args, str(files["good"])]) == EXIT_OK
        lines = (tmp_path / "reports" / name / "results.jsonl").read_text().splitlines()
        return {json.loads(line)["id"] for line in lines}

    whole = run("whole")
    parts = [run(f"s{k}", "--shard", f"{k}/3") for k in (1, 2, 3)]
    assert set().union(*parts) == whole and sum(map(len, parts)) == len(whole) == 5
    assert "shard 3/3: 1 of the 5 selected cases" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_bad_usage(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["list", "--shard", bad])
    assert exc.value.code == EXIT_USAGE
    assert "K/N" in capsys.readouterr().err


def test_an_empty_shard_exits_5(files, tmp_path, capsys):
    rc = cli.main([*run_args(tmp_path, "-k", "second", "--shard", "2/2"), str(files["good"])])
    assert rc == EXIT_NO_TESTS
    assert "shard 2/2 of the 1 selected case is empty" in capsys.readouterr().err


# --------------------------------------------------------------------------
# --impl path/to/file.py:function


def test_impl_from_a_file_path(files, tmp_path, monkeypatch, capsys):
    write(
        tmp_path / "mine" / "kernel.py",
        """
        from harness.impls.oracle import oracle_decode


        def decode(*args, **kwargs):
            oracle_decode(*args, **kwargs)
        """,
    )
    monkeypatch.chdir(tmp_path)
    args = run_args(tmp_path, "-k", "second")
    args[args.index("oracle")] = "mine/kernel.py:decode"
    assert cli.main([*args, str(files["good"])]) == EXIT_OK
    assert "1 passed, 0 failed, 0 skipped" in capsys.readouterr().out
    args[args.index("mine/kernel.py:decode")] = "mine/nothing.py:decode"
    assert cli.main([*args, str(files["good"])]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: implementation 'mine/nothing.py:decode': no such file")
