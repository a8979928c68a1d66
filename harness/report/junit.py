"""``junit.xml``: the run as one JUnit test suite, for CI test tabs."""

from __future__ import annotations

from collections import Counter

from harness.report.text import first_line, xml_attr, xml_text


def _violation_text(r: dict) -> str:
    lines = [
        f"[{v['check']}] {v['who']}"
        + (f" step {v['step']}" if v["step"] is not None else "")
        + f": {v['message']}"
        for v in r["violations"]
    ]
    return "\n".join([*lines, f"rerun: {r['rerun']}"])


def junit_xml(rows: list[dict], partial: bool = False) -> str:
    """One testsuite; a partial run says so in a suite property."""
    counts = Counter(r["status"] for r in rows)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<testsuite name="gdn-harness" tests="{len(rows)}" failures="{counts["failed"]}" '
        f'errors="{counts["crashed"]}" skipped="{counts["skipped"]}">',
    ]
    if partial:
        out += [
            "  <properties>",
            '    <property name="partial" value="true"/>',
            "  </properties>",
        ]
    for r in rows:
        attrs = (
            f"classname={xml_attr(r['file'])} name={xml_attr(r['name'])} "
            f'time="{r["duration_s"]}" file={xml_attr(r["file"])} line="{r["line"]}"'
        )
        out.append(f"  <testcase {attrs}>")
        text = xml_text(_violation_text(r))
        if r["status"] == "failed":
            first = first_line(r["violations"][0]["message"]) if r["violations"] else ""
            out.append(f"    <failure message={xml_attr(first)}>{text}</failure>")
        elif r["status"] == "crashed":
            out.append(f"    <error message={xml_attr(r['reason'])}>{text}</error>")
        elif r["status"] == "skipped":
            out.append(f"    <skipped message={xml_attr(r['reason'])}/>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"
