"""Failures on one screen: a case's violations grouped by check, implementation
and quantity, each fact said once; the headline names the check that failed;
the run ends with the failed ids; the reports put failures first, whole."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from factories import spec

from harness.impls.registry import Implementation, load_implementation
from harness.report import console_failure, console_line, errors_markdown, write_summaries
from harness.report.console import failure_list
from harness.report.failures import group_violations, step_ranges
from harness.report.log import ResultLog
from harness.run.result import CaseResult, Violation
from harness.run.runner import run_case

IMPL = "fixtures_impls:decode_zero"


def zero_run(steps: int = 10) -> CaseResult:
    """A real multi-step case an implementation that writes zeros fails at every step."""
    from fixtures_impls import decode_zero

    case = spec(name="zeros", B=2, H=1, HV=2, K=8, V=8, pool=4, steps=steps)
    impl = Implementation(IMPL, decode_zero, builtin=False)
    result = run_case(case, impl, load_implementation("oracle"), "cpu")
    checks = [v.check for v in result.violations]
    assert result.status == "failed" and checks.count("values") == 2 * steps
    # its state never moves, so from step 1 on it has carried in drift as well
    assert checks.count("drift") >= (steps - 1 if steps > 1 else 0)
    return result


def test_a_ten_step_failure_fits_on_a_screen_saying_each_fact_once():
    result = zero_run(10)
    text = console_failure(result)
    lines = text.splitlines()
    assert len(lines) <= 14, text
    assert max(map(len, lines)) <= 220, text
    # the implementation is named once per group heading (and in the rerun command)
    named = [ln for ln in lines if IMPL in ln and not ln.lstrip().startswith("rerun:")]
    assert named == [f"  [values] {IMPL} vs oracle", f"  [drift] {IMPL}, from the exact trajectory"]
    assert "steps 0-9:" in text and "step 0:" not in text  # steps as a range, said once
    values = [ln for ln in lines if ln.lstrip().startswith(("out ", "state "))]
    assert values and not any(
        "drift <=" in ln for ln in values + [ln for ln in lines if "tol" in ln]
    )
    assert sum("tol |err| <=" in ln for ln in lines) == 2  # once per quantity
    assert f"[values] {IMPL}" in text  # the check and the implementation, as before


def test_value_lines_carry_the_worst_element_and_first_step():
    row = zero_run(3).to_dict()
    (values,) = (g for g in group_violations(row) if g.check == "values")
    out = next(f for f in values.facts if f.label == "out")
    assert out.steps == [0, 1, 2]
    assert re.search(r"over tolerance at step 0; worst \S+x bound at step \d, row", out.text)
    assert "(got 0, want " in out.text


def test_a_one_step_case_names_no_step():
    text = console_failure(zero_run(1))
    assert "step" not in text.replace("steps=", "")


def padding_only(step_count: int = 1) -> CaseResult:
    case = spec(name="pad", steps=step_count)
    result = CaseResult(case, "pkg:fn", "baseline", status="failed")
    result.violations = [
        Violation("padding", "pkg:fn", s, "2 padding rows not exactly zero (rows [0, 3])")
        for s in range(step_count)
    ]
    return result


def test_the_headline_names_the_check_that_failed():
    line = console_line(padding_only())
    assert line.startswith("FAIL  t.yaml::pad") and line.endswith("; padding)"), line
    assert "worst" not in line and "tol" not in line
    assert "padding" in console_failure(padding_only()).splitlines()[0]
    result = zero_run(2)
    assert re.search(r"; values \S+x bound, drift\)$", console_line(result))


def test_identical_messages_over_steps_are_said_once():
    text = console_failure(padding_only(6))
    assert text.count("padding rows not exactly zero") == 1
    assert "steps 0-5: 2 padding rows" in text


def test_step_ranges():
    assert step_ranges([3]) == "3"
    assert step_ranges([0, 1, 2, 5, 7, 8, 9]) == "0-2, 5, 7-9"
    assert step_ranges(range(0, 40, 2)).endswith("... (20 steps up to 38)")


def test_a_crash_keeps_its_whole_traceback():
    case = spec(name="boom")
    trace = "Traceback (most recent call last):\n  File x\nRuntimeError: boom"
    result = CaseResult(case, "pkg:fn", None, status="crashed", reason="RuntimeError: boom")
    result.violations = [Violation("crash", "harness", None, trace)]
    text = console_failure(result)
    assert "crash: RuntimeError: boom" in text.splitlines()[0]
    assert "  File x" in text and "RuntimeError: boom" in text.splitlines()[-2]


def test_failure_list_names_every_failed_id():
    passed = CaseResult(spec(name="ok"), "pkg:fn", None)
    crashed = CaseResult(spec(name="boom"), "pkg:fn", None, status="crashed", reason="E: x")
    text = failure_list([passed, padding_only(), crashed])
    assert text.splitlines() == [
        "2 failing cases:",
        "  FAILED  t.yaml::pad  (padding)",
        "  CRASHED t.yaml::boom  (E: x)",
    ]
    assert failure_list([passed]) == ""
    assert failure_list([padding_only().to_dict()]).startswith("1 failing case:")


# --- the reports -------------------------------------------------------------------


def long_failure() -> CaseResult:
    case = spec(file="cases/cpu/deep/x.yaml", name="long")
    words = " ".join(f"word{i}" for i in range(80))  # about 560 characters
    result = CaseResult(case, "pkg:fn", "baseline", status="failed")
    result.violations = [Violation("padding", "pkg:fn", 0, words + " END\nnext line")]
    return result


def test_summary_md_keeps_the_first_violation_whole(tmp_path):
    log = ResultLog(tmp_path, fresh=True)
    log.append(long_failure())
    write_summaries(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    (line,) = [ln for ln in md.splitlines() if "word0" in ln]
    assert "word79 END |" in line and "next line" not in line
    assert "`cases/cpu/deep/x.yaml::long` (line 1) | failed (padding) |" in line


def test_errors_md_lists_failing_cases_only_with_full_ids(tmp_path):
    passed = CaseResult(spec(file="cases/a.yaml", name="ok"), "pkg:fn", None)
    zeros = zero_run(2)
    rows = [passed.to_dict(), zeros.to_dict(), long_failure().to_dict()]
    rows[0]["stats"] = zeros.to_dict()["stats"]  # a passing case with numbers is still left out
    lines = errors_markdown(rows).splitlines()
    body = [ln for ln in lines if ln.startswith("| `")]
    assert {ln.split(" | ")[0] for ln in body} == {
        "| `t.yaml::zeros`",
        "| `cases/cpu/deep/x.yaml::long`",
    }
    assert not any("ok" in ln for ln in body)
    assert errors_markdown([passed.to_dict()]).endswith("No case failed.\n")


def test_report_html_puts_failures_first_whole_with_full_ids(tmp_path):
    log = ResultLog(tmp_path, fresh=True)
    log.append(CaseResult(spec(file="cases/a.yaml", name="ok"), "pkg:fn", None))
    log.append(long_failure())
    log.append(zero_run(3))
    write_summaries(tmp_path)
    text = (tmp_path / "report.html").read_text()
    root = ET.fromstring(re.sub(r"^<!DOCTYPE html>\s*", "", text))
    body = root.find("body")
    kinds = [(el.tag, el.get("id", "")) for el in body if el.tag in ("details", "table", "h2")]
    first_table = next(i for i, k in enumerate(kinds) if k[0] == "table" and i > 0)
    first_case = next(i for i, k in enumerate(kinds) if k[1].startswith("case-"))
    assert first_case < first_table, kinds
    assert "word79 END" in text and "cases/cpu/deep/x.yaml::long" in text
    assert "steps 0-2: " in text and f"[values]</code> {IMPL} vs oracle" in text
    reruns = [td for td in root.iter("td") if td.get("class") == "rerun"]
    assert reruns and "td.rerun, td.id { overflow-wrap: anywhere; }" in text


def test_a_result_and_its_results_jsonl_row_print_the_same():
    for result in (zero_run(3), padding_only(2), long_failure()):
        row = result.to_dict()
        assert console_line(result) == console_line(row)
        assert console_failure(result) == console_failure(row)
