"""``junit.xml``: the run as one JUnit test suite, for CI test tabs."""

from __future__ import annotations

from collections import Counter
from xml.sax.saxutils import escape, quoteattr


def _violation_text(r: dict) -> str:
    lines = [
        f"[{v['check']}] {v['who']}"
        + (f" step {v['step']}" if v["step"] is not None else "")
        + f": {v['message']}"
        for v in r["violations"]
    ]
    return "\n".join([*lines, f"rerun: {r['rerun']}"])


def junit_xml(rows: list[dict]) -> str:
    counts = Counter(r["status"] for r in rows)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<testsuite name="gdn-harness" tests="{len(rows)}" failures="{counts["failed"]}" '
        f'errors="{counts["crashed"]}" skipped="{counts["skipped"]}">',
    ]
    for r in rows:
        attrs = (
            f"classname={quoteattr(r['file'])} name={quoteattr(r['name'])} "
            f'time="{r["duration_s"]}" file={quoteattr(r["file"])} line="{r["line"]}"'
        )
        out.append(f"  <testcase {attrs}>")
        text = escape(_violation_text(r))
        if r["status"] == "failed":
            first = r["violations"][0]["message"].splitlines()[0] if r["violations"] else ""
            out.append(f"    <failure message={quoteattr(first)}>{text}</failure>")
        elif r["status"] == "crashed":
            out.append(f"    <error message={quoteattr(r['reason'])}>{text}</error>")
        elif r["status"] == "skipped":
            out.append(f"    <skipped message={quoteattr(r['reason'])}/>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"
