"""Every report stays well-formed, and inert, whatever text an implementation
or a case file puts in it: control characters, markup, Markdown syntax."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from factories import spec

from harness.report import console_failure, console_line, junit_xml, write_summaries
from harness.report.log import ResultLog
from harness.report.text import md_code, md_text, printable
from harness.run.result import CaseResult, Violation

CONTROL = "nul\x00 soh\x01 esc\x1b[31m bell\x07 cr\r ff\x0c del\x7f c1\x85 end"
MARKUP = "a | b <script>alert(1)</script> **bold** _it_ [link](http://x) `tick` \\ & ~~s~~"


def nasty_result(status: str = "failed") -> CaseResult:
    case = spec(file="cases/we|ird `x`.yaml", name="c<script>**\x1b")
    result = CaseResult(case, "pkg:fn\x01", "baseline", status=status, reason=CONTROL)
    result.violations = [
        Violation("values", "pkg:fn\x01", 0, f"{CONTROL}\nsecond {MARKUP}"),
        Violation("padding", "pkg:fn", 1, MARKUP),
    ]
    return result


def write_run(tmp_path, *results: CaseResult):
    log = ResultLog(tmp_path, fresh=True)
    for r in results:
        log.append(r)
    return write_summaries(tmp_path, {"impl": "pkg:fn\x01", "baseline": "a|b", "device": "cpu"})


def test_printable_escapes_control_characters_and_keeps_tab_and_newline():
    out = printable(CONTROL + "\ud800\ttab\nline")
    assert "\\x00" in out and "\\x1b[31m" in out and "\\r" not in out and "\\x0d" in out
    assert "\\x85" in out and "\\ud800" in out and "\ttab\nline" in out
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", out)


def test_junit_is_well_formed_with_control_characters(tmp_path):
    write_run(tmp_path, nasty_result("failed"), nasty_result("crashed"))
    raw = (tmp_path / "junit.xml").read_bytes()
    root = ET.fromstring(raw)  # ill-formed XML raises here
    failure = root.find("testcase/failure")
    assert failure is not None and "\\x1b[31m" in failure.get("message")
    assert "<script>alert(1)</script>" in failure.text  # escaped in the file, text when parsed
    assert b"<script>" not in raw


def test_reports_of_a_message_with_a_lone_surrogate_encode(tmp_path):
    result = nasty_result()
    result.violations[0].message += "\ud800"  # json.loads gives these back from "\\ud800"
    ET.fromstring(junit_xml([result.to_dict()]).encode("utf-8"))
    write_run(tmp_path, result)
    assert "\\ud800" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_report_html_is_well_formed_with_control_characters(tmp_path):
    write_run(tmp_path, nasty_result("failed"), nasty_result("crashed"))
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    ET.fromstring(re.sub(r"^<!DOCTYPE html>\s*", "", text))
    assert "\x1b" not in text and "\x00" not in text and "<script>alert" not in text


def _table_cells(line: str) -> list[str]:
    """Cells of a GFM table row: split on pipes that are neither escaped nor in code."""
    cells, cur, fence, i = [], "", "", 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur += line[i : i + 2]
            i += 2
            continue
        if ch == "`":
            run = re.match("`+", line[i:]).group()
            fence = "" if run == fence else (fence or run)
            cur += run
            i += len(run)
            continue
        if ch == "|" and not fence:
            cells.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    return [*cells, cur][1:-1]


def _outside_code(cell: str) -> str:
    return re.sub(r"(`+)(?:(?!\1).)*?\1", "", cell)


def test_summary_md_escapes_messages_and_file_names(tmp_path):
    write_run(tmp_path, nasty_result("failed"))
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "nul" in ln]
    assert rows, md
    for line in rows:
        cells = _table_cells(line)
        assert len(cells) == 4, cells  # case, status, first violation, rerun
        for cell in cells:
            plain = _outside_code(cell)
            assert "<" not in plain and "**" not in plain and "\x1b" not in cell
            unescaped = r"(?<!\\)[*`\[\]]|(?<![\w\\])_|(?<!\\)_(?!\w)"  # intraword _ is inert
            assert not re.search(unescaped, plain.replace("\\\\", "")), plain
    assert "\x00" not in md and "\x1b" not in md
    assert "## gdn-harness: pkg:fn\\\\x01 (baseline: a\\|b) on cpu" in md


def test_markdown_helpers():
    assert md_text("a|b <i>**x**</i> & _y_") == (
        "a\\|b &lt;i&gt;\\*\\*x\\*\\*&lt;/i&gt; &amp; \\_y\\_"
    )
    assert md_text("fixtures_impls:decode_zero __init__") == (
        "fixtures_impls:decode_zero \\_\\_init\\_\\_"
    )
    assert md_code("a|b") == "`a\\|b`"
    assert md_code("x `y` z") == "``x `y` z``"
    assert md_code("`x") == "`` `x ``"
    assert md_code("line\nnext") == "`line\\nnext`"


def test_console_lines_escape_control_characters():
    result = nasty_result()
    for text in (console_line(result), console_failure(result)):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), text
        assert "\\x1b" in text
    assert "\n" not in console_line(result)
