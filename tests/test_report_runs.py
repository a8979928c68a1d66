"""A run folder: its name is a name, a new run never shows the last run's
reports, a run that ended early says so, and `gdn-harness report` rebuilds
the reports after a hard kill."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.report import (
    INCOMPLETE,
    ResultLog,
    ResultsError,
    RunNameError,
    check_run_name,
    load_results,
    read_results,
    run_dir,
    write_summaries,
)
from harness.report import command as report_command

ROOT = Path(__file__).resolve().parents[1]
DERIVED = ("summary.json", "junit.xml", "summary.md", "errors.md", "report.html")


def row(name: str, status: str = "passed") -> dict:
    return {
        "id": f"cases/t.yaml::{name}",
        "file": "cases/t.yaml",
        "line": 3,
        "name": name,
        "impl": "packed",
        "baseline": "baseline",
        "device": "cpu",
        "status": status,
        "reason": "",
        "duration_s": 0.5,
        "violations": (
            [{"check": "padding", "who": "packed", "step": 0, "message": "2 rows"}]
            if status == "failed"
            else []
        ),
        "stats": [],
        "drift": [],
        "rerun": f"gdn-harness run cases/t.yaml::{name}",
    }


def write_rows(folder: Path, rows: list[dict], tail: str = "") -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "results.jsonl").write_text(text + tail)


# --- run names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["..", ".", "../x", "x/..", "a/b", "/tmp/x", "a\\b", "C:x", "", "  ", "a\x00b", "a\nb"]
)
def test_a_run_name_that_is_a_path_is_refused(name, tmp_path):
    with pytest.raises(RunNameError, match="is not a name"):
        check_run_name(name)
    with pytest.raises(ValueError):
        run_dir(tmp_path / "reports", name or "..")


@pytest.mark.parametrize("name", ["nightly", "run-20240501-120000", "pr.123", "a b", "..x"])
def test_plain_names_are_run_names(name, tmp_path):
    assert check_run_name(name) == name
    assert run_dir(tmp_path, name) == tmp_path / name


def test_default_run_name_is_a_timestamped_folder(tmp_path):
    folder = run_dir(tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("run-")


# --- starting and finishing a run ------------------------------------------------


def test_a_new_run_removes_the_last_runs_reports_and_marks_itself(tmp_path):
    write_rows(tmp_path, [row("a"), row("b")])
    write_summaries(tmp_path)
    assert all((tmp_path / n).exists() for n in DERIVED)
    assert not (tmp_path / INCOMPLETE).exists()
    (tmp_path / "notes.txt").write_text("mine")

    ResultLog(tmp_path, fresh=True)
    assert not any((tmp_path / n).exists() for n in DERIVED)
    assert (tmp_path / INCOMPLETE).exists()
    assert read_results(tmp_path) == []
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only its own files go

    summary = write_summaries(tmp_path)
    assert summary["partial"] is False and not (tmp_path / INCOMPLETE).exists()


def test_partial_reports_say_so_in_every_format(tmp_path):
    ResultLog(tmp_path, fresh=True)
    write_rows(tmp_path, [row("a"), row("b", "failed")])
    summary = write_summaries(tmp_path, {"impl": "packed"}, partial=True)
    assert summary["partial"] is True and summary["total"] == 2
    assert json.loads((tmp_path / "summary.json").read_text())["partial"] is True
    assert "Partial run" in (tmp_path / "summary.md").read_text()
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.find("properties/property[@name='partial']").get("value") == "true"
    html = (tmp_path / "report.html").read_text()
    assert "(partial)</title>" in html and "Partial run" in html
    assert (tmp_path / INCOMPLETE).exists()  # still not a complete run


def test_complete_reports_do_not_say_partial(tmp_path):
    write_rows(tmp_path, [row("a")])
    write_summaries(tmp_path)
    assert "Partial" not in (tmp_path / "summary.md").read_text()
    assert ET.parse(tmp_path / "junit.xml").getroot().find("properties") is None
    assert "Partial run" not in (tmp_path / "report.html").read_text()


# --- reading a results.jsonl a kill cut short ------------------------------------


def test_a_torn_last_line_is_skipped(tmp_path):
    write_rows(tmp_path, [row("b"), row("a")], tail='{"id": "cases/t.yaml::c", "sta')
    loaded = load_results(tmp_path)
    assert [r["name"] for r in loaded.rows] == ["a", "b"]
    assert loaded.torn == '{"id": "cases/t.yaml::c", "sta'
    assert load_results(tmp_path / "none").rows == []


def test_a_bad_line_before_the_last_is_an_error(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(row("a")) + "\nnot json\n" + "{}\n")
    with pytest.raises(ResultsError, match=r"results\.jsonl:2"):
        load_results(tmp_path)


# --- gdn-harness report ------------------------------------------------------------


def report_main(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gdn-harness")
    report_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    return args.func(args)


def test_report_rebuilds_a_killed_runs_reports_marked_partial(tmp_path, capsys):
    ResultLog(tmp_path, fresh=True)
    write_rows(tmp_path, [row("a"), row("b", "failed")], tail='{"id": "x", "sta')
    assert report_main(str(tmp_path)) == 1  # a case failed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["partial"] is True and summary["total"] == 2
    assert summary["impl"] == "packed" and summary["device"] == "cpu"  # from the rows
    assert summary["counts"]["failed"] == 1
    out, err = capsys.readouterr()
    assert "1 passed, 1 failed, 0 skipped (partial run" in out
    assert "  FAILED  cases/t.yaml::b  (padding)" in out.splitlines()
    assert "cut short" in err
    ET.parse(tmp_path / "junit.xml")


def test_report_of_a_finished_run_is_complete(tmp_path):
    write_rows(tmp_path, [row("a")])
    assert report_main(str(tmp_path)) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["partial"] is False
    assert report_main(str(tmp_path), "--partial") == 0
    assert json.loads((tmp_path / "summary.json").read_text())["partial"] is True


def test_report_of_a_folder_without_results_is_bad_usage(tmp_path, capsys):
    assert report_main(str(tmp_path / "nothing")) == 2
    assert "holds no results.jsonl" in capsys.readouterr().err


# --- a real run killed in the middle ------------------------------------------------

CASES = """
cases:
  - {name: first, B: 2, H: 1, HV: 2, K: 16, V: 16}
  - {name: second, B: 2, H: 1, HV: 4, K: 16, V: 16}
"""


def decode_dies_on_four_heads(mixed_qkv, a, b, A_log, dt_bias, state, idx, out, **kw) -> None:
    """Correct on the first case; takes the whole process down on the second."""
    if a.shape[-1] == 4:
        os._exit(77)
    from harness.impls.oracle import oracle_decode

    oracle_decode(mixed_qkv, a, b, A_log, dt_bias, state, idx, out, **kw)


def harness_run(tmp_path: Path, impl: str) -> subprocess.CompletedProcess:
    """In this process (--no-isolate): an implementation that ends the process
    ends the run, a stand-in for a hard kill of the run itself."""
    cmd = [sys.executable, "-m", "harness", "run", str(tmp_path / "c.yaml"), "--impl", impl]
    cmd += ["--no-isolate"]
    cmd += ["--baseline", "none", "--report-dir", str(tmp_path / "r"), "--run-name", "x"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_killed_run_leaves_no_stale_summary_and_can_be_reported(tmp_path):
    (tmp_path / "c.yaml").write_text(CASES)
    done = harness_run(tmp_path, "oracle")
    folder = tmp_path / "r" / "x"
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((folder / "summary.json").read_text())["counts"]["passed"] == 2

    killed = harness_run(tmp_path, "test_report_runs:decode_dies_on_four_heads")
    assert killed.returncode == 77, killed.stdout + killed.stderr
    assert not any((folder / n).exists() for n in DERIVED)  # nothing from the last run
    assert (folder / INCOMPLETE).exists()
    assert [r["name"] for r in read_results(folder)] == ["first"]

    assert report_main(str(folder)) == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["partial"] is True and summary["total"] == 1
    assert summary["impl"] == "test_report_runs:decode_dies_on_four_heads"
