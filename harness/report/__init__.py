"""Stage 6: what a run leaves behind. results.jsonl, summaries, JUnit, HTML
and the console lines.

``log`` writes and reads results.jsonl and owns the run folder (its name, its
INCOMPLETE marker); every other report is derived from results.jsonl
(``summary`` writes them all: ``junit``, ``markdown``, ``html`` with its
``charts`` drawn with ``svg``); ``console`` is what a run prints; ``text``
escapes for each format; ``command`` is ``gdn-harness report``.
"""

from harness.report.console import console_failure, console_line, failure_list
from harness.report.html import write_html
from harness.report.junit import junit_xml
from harness.report.log import (
    INCOMPLETE,
    RESULTS,
    LoadedResults,
    ResultLog,
    ResultsError,
    RunNameError,
    check_run_name,
    default_run_name,
    incomplete,
    load_results,
    read_results,
    run_dir,
    start_run,
)
from harness.report.markdown import errors_markdown, summary_markdown
from harness.report.summary import summarize, write_summaries

__all__ = [
    "INCOMPLETE",
    "RESULTS",
    "LoadedResults",
    "ResultLog",
    "ResultsError",
    "RunNameError",
    "check_run_name",
    "console_failure",
    "console_line",
    "default_run_name",
    "errors_markdown",
    "failure_list",
    "incomplete",
    "junit_xml",
    "load_results",
    "read_results",
    "run_dir",
    "start_run",
    "summarize",
    "summary_markdown",
    "write_html",
    "write_summaries",
]
