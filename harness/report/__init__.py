"""Stage 6: what a run leaves behind. results.jsonl, summaries, JUnit, HTML
and the console lines.

``log`` writes and reads results.jsonl; every other report is derived from
it (``summary`` writes them all: ``junit``, ``markdown``, ``html`` with its
``charts`` drawn with ``svg``); ``console`` is what a run prints per case.
"""

from harness.report.console import console_failure, console_line
from harness.report.html import write_html
from harness.report.junit import junit_xml
from harness.report.log import RESULTS, ResultLog, default_run_name, read_results
from harness.report.markdown import errors_markdown, summary_markdown
from harness.report.summary import summarize, write_summaries

__all__ = [
    "RESULTS",
    "ResultLog",
    "console_failure",
    "console_line",
    "default_run_name",
    "errors_markdown",
    "junit_xml",
    "read_results",
    "summarize",
    "summary_markdown",
    "write_html",
    "write_summaries",
]
