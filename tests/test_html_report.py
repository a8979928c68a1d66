"""Tests of the HTML run report (harness/report/html.py, charts.py, svg.py)."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report import charts, svg
from harness.report import html as html_report
from harness.report.html import write_html

VOID = {"meta", "br", "hr", "img", "input", "link"}


# --------------------------------------------------------------------------
# Synthetic rows shaped like CaseResult.to_dict()
# --------------------------------------------------------------------------


def make_row(name: str, status: str = "passed", **kw) -> dict:
    row = {
        "id": f"cases/cpu/t.yaml::{name}",
        "file": "cases/cpu/t.yaml",
        "line": 7,
        "name": name,
        "tier": "cpu",
        "impl": "packed",
        "baseline": "baseline",
        "status": status,
        "reason": "",
        "duration_s": 0.25,
        "device": "cpu",
        "shape": {"B": 4, "H": 2, "HV": 4, "K": 8, "V": 8, "pool": 6},
        "dtypes": {"act": "bf16", "state": "fp32", "param": "fp32", "index": "int32"},
        "layout": "vk",
        "steps": 1,
        "violations": [],
        "stats": [],
        "drift": [],
        "rerun": f"gdn-harness run 'cases/cpu/t.yaml::{name}' --impl packed --baseline baseline",
    }
    row.update(kw)
    return row


def make_stat(quantity="out", pair="packed vs oracle", step=0, cells=(), heads=4, **kw) -> dict:
    cells = [list(c) for c in cells]
    head_ratio = {str(h): 0.25 for h in range(heads)}
    for _, h, r in cells:
        head_ratio[str(h)] = max(head_ratio[str(h)], float(r))
    over = len(cells)
    worst = max((float(c[2]) for c in cells), default=0.5)
    stat = {
        "quantity": quantity,
        "pair": pair,
        "step": step,
        "tolerance": "|err| <= 1 ulp(bf16)",
        "checked": True,
        "n": 4 * heads * 8 * (8 if quantity == "state" else 1),
        "over": over,
        "nan": 0,
        "inf": 0,
        "max_abs": 0.5,
        "max_abs_at": "row 1 slot 1 head 0 v=0",
        "max_rel": 1.0,
        "max_rel_at": "row 0 slot 0 head 0 v=0",
        "worst_ratio": worst,
        "worst_at": "row 1 slot 1 head 0 v=0",
        "worst_value": [0.0, 0.61],
        "err_sq": 1.0,
        "ref_sq": 1.0,
        "head_ratio": head_ratio,
        "cells": cells,
        "rms_ratio": 1.0,
        "ok": over == 0,
    }
    stat.update(kw)
    return stat


FAIL_CELLS = [[0, 1, 12.0], [0, 2, 3.5e4], [2, 1, 1.5], [5, 3, 200.0], [5, 0, 2.0]]


def failing_row(name: str = "fail") -> dict:
    msg = "out packed vs oracle step 0:, 5/128 over tolerance\nsecond line"
    return make_row(
        name,
        "failed",
        violations=[{"check": "values", "who": "packed", "step": 0, "message": msg}],
        stats=[make_stat(cells=FAIL_CELLS), make_stat(quantity="state")],
    )


def drift_rows(steps: int, whos=("packed", "baseline", "oracle")) -> list[dict]:
    out = []
    for step in range(steps):
        for i, who in enumerate(whos):
            v = 0.0 if who == "oracle" else 1e-7 * (i + 1) * (step + 1)
            out.append(
                {
                    "who": who,
                    "step": step,
                    "state_max_abs": v,
                    "state_rel_rms": v,
                    "out_max_abs": v / 3,
                    "out_rel_rms": v,
                }
            )
    return out


def sample_rows() -> list[dict]:
    return [
        failing_row(),
        make_row("multi", steps=5, drift=drift_rows(5), stats=[make_stat()]),
        make_row("ok", stats=[make_stat()]),
        make_row("skip", "skipped", reason="tier gpu needs a CUDA device"),
    ]


# --------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------


def parse(path: Path) -> ET.Element:
    """The page as XML: it must be well-formed once the doctype is gone."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    return ET.fromstring(re.sub(r"^<!DOCTYPE html>\s*", "", text))


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        pass  # <x/>: closed where it opens (void elements, SVG shapes)

    def handle_endtag(self, tag) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def assert_balanced(path: Path) -> None:
    """The HTML parser (how a browser reads it) agrees on the nesting."""
    p = _Balance()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    assert p.stack == []


def svgs(root: ET.Element, cls: str) -> list[ET.Element]:
    return [s for s in root.iter("svg") if s.get("class") == cls]


def section(root: ET.Element, anchor: str) -> ET.Element:
    found = [d for d in root.iter("details") if d.get("id") == anchor]
    assert len(found) == 1, anchor
    return found[0]


def text_of(el: ET.Element) -> str:
    return "".join(el.itertext())


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------


@pytest.fixture
def page(tmp_path) -> tuple[Path, ET.Element]:
    meta = {"impl": "packed", "baseline": "baseline", "device": "cpu", "cuda_graph": False}
    path = write_html(tmp_path / "run-x", sample_rows(), meta)
    return path, parse(path)


def test_writes_well_formed_page(page):
    path, root = page
    assert path.name == "report.html" and path.parent.name == "run-x"
    assert_balanced(path)
    text = text_of(root)
    for fact in ("packed", "baseline", "cpu", "1 failed", "2 passed", "1 skipped", "0 crashed"):
        assert fact in text
    assert "of 4 cases, 1.0 s in cases" in text
    assert "cuda_graph" in text
    assert "<script src" not in path.read_text() and "http" not in path.read_text()


def test_case_table_lists_every_case_failures_first(page):
    _, root = page
    table = next(t for t in root.iter("table") if "rerun / reason" in text_of(t))
    rows = table.findall("tr")[1:]
    assert [text_of(r.findall("td")[0]) for r in rows] == ["failed", "passed", "passed", "skipped"]
    first = rows[0].findall("td")
    assert first[1].find("a").get("href") == "#case-0"
    assert text_of(first[2]) == "cases/cpu/t.yaml:7"
    assert text_of(first[3]) == "0.25 s"
    assert text_of(first[4]) == "3.5e+04" and "over" in first[4].get("class")
    assert "gdn-harness run 'cases/cpu/t.yaml::fail'" in text_of(first[5])
    assert "needs a CUDA device" in text_of(rows[3])


def test_failing_case_section(page):
    _, root = page
    sec = section(root, "case-0")
    text = text_of(sec)
    assert "[values]" in text and "5/128 over tolerance" in text and "second line" in text
    assert "gdn-harness run 'cases/cpu/t.yaml::fail' --impl packed" in text
    (heat,) = svgs(sec, "heatmap")  # only the failing stat is drawn
    cells = heat.findall("rect[@class='cell']")
    assert len(cells) == len(FAIL_CELLS)
    tips = sorted(text_of(c.find("title")) for c in cells)
    assert "slot 0, head 2: 3.5e+04x bound" in tips
    labels = [text_of(t) for t in heat.iter("text")]
    assert {"value head", "slot", "not over", "Inf/NaN"} <= set(labels)
    assert {"0", "2", "5"} <= set(labels)  # slot rows: only slots with a cell over bound
    assert "slots with an element over bound: 3 of 4 live" in text


def test_heatmap_colours_follow_the_ratio(page):
    _, root = page
    (heat,) = svgs(section(root, "case-0"), "heatmap")
    fill = {text_of(c.find("title")).split(":")[0]: c.get("fill") for c in heat.iter("rect")
            if c.get("class") == "cell"}  # fmt: skip
    assert fill["slot 2, head 1"] == svg.heat(math.log10(1.5) / 5)
    assert fill["slot 0, head 2"] != fill["slot 2, head 1"]


def test_head_bars(page):
    _, root = page
    (bars,) = svgs(section(root, "case-0"), "heads")
    rects = bars.findall("rect[@class='bar']")
    assert len(rects) == 4  # HV heads
    tips = [text_of(r.find("title")) for r in rects]
    assert tips[2] == "head 2: 3.5e+04x bound" and tips[0] == "head 0: 2x bound"
    assert "bound" in [text_of(t) for t in bars.iter("text")]
    red = [r for r in rects if r.get("fill") == "#d62828"]
    assert len(red) == 4  # every head has a cell over bound in FAIL_CELLS


def test_drift_polylines_per_implementation(page):
    _, root = page
    sec = section(root, "drift-1")
    charts = svgs(sec, "drift")
    assert len(charts) == 2  # state and out
    for chart in charts:
        lines = chart.findall("polyline")
        assert [text_of(p.find("title")) for p in lines] == ["packed", "baseline", "oracle"]
        for p in lines:
            assert len(p.get("points").split()) == 5
        labels = [text_of(t) for t in chart.iter("text")]
        assert "decode step" in labels and "0" in labels  # oracle's exact zeros at the floor
    assert "final state drift" in text_of(sec)


def test_escaping(tmp_path):
    nasty = 'evil <b>&amp;</b> "q" <&>'
    row = failing_row(nasty)
    row["violations"][0]["who"] = "<script>alert(1)</script>"
    row["drift"] = drift_rows(2, whos=("<x&y>",))
    path = write_html(tmp_path, [row], {"impl": "a<b", "baseline": None})
    raw = path.read_text()
    assert "<script>alert" not in raw and "<b>&amp;</b>" not in raw and "<x&y>" not in raw
    root = parse(path)
    assert_balanced(path)
    text = text_of(root)
    assert nasty in text and "<script>alert(1)</script>" in text and "a<b" in text
    polys = svgs(root, "drift")[0].findall("polyline")
    assert text_of(polys[0].find("title")) == "<x&y>"
    assert "none" in text  # baseline None


def test_empty_results(tmp_path):
    path = write_html(tmp_path / "empty", [])
    root = parse(path)
    assert "No cases ran." in text_of(root) and "of 0 cases" in text_of(root)
    assert list(root.iter("svg")) == []
    # rows=None reads results.jsonl, which does not exist here
    assert "No cases ran." in text_of(parse(write_html(tmp_path / "none")))


def test_reads_results_jsonl(tmp_path):
    rows = sample_rows()
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    root = parse(write_html(tmp_path))
    assert len(svgs(root, "heatmap")) == 1 and len(svgs(root, "drift")) == 2
    assert "packed" in text_of(root)  # impl taken from the rows without meta


def test_large_heatmap_is_binned(tmp_path):
    cells = [[s, h, 1.0 + s + h] for s in range(1024) for h in range(64)]
    stat = make_stat(cells=cells, heads=64)
    row = make_row("big", "failed", stats=[stat])
    row["shape"].update(HV=64, pool=1024, B=1024)
    path = write_html(tmp_path, [row])
    (heat,) = svgs(parse(path), "heatmap")
    rects = heat.findall("rect[@class='cell']")
    assert len(rects) == charts.MAX_ROWS * 64
    assert text_of(rects[0].find("title")) == "slot 0\u20137, head 0: 8x bound"
    assert float(heat.get("height")) < 700
    assert path.stat().st_size < 2_000_000


def test_nonfinite_values(tmp_path):
    stat = make_stat(cells=[[1, 0, "inf"], [1, 1, 3.0]], worst_ratio="inf", nan=2)
    drift = drift_rows(3)
    drift[4]["state_max_abs"] = "nan"
    row = make_row("nan", "failed", stats=[stat], drift=drift, steps=3)
    root = parse(write_html(tmp_path, [row]))
    heat = svgs(root, "heatmap")[0]
    fills = {c.get("fill") for c in heat.findall("rect[@class='cell']")}
    assert charts.NONFINITE in fills
    assert "2 NaN" in text_of(root)
    assert len(svgs(root, "drift")) == 2


def test_long_runs_are_downsampled(tmp_path):
    row = make_row("long", steps=3000, drift=drift_rows(3000, whos=("packed", "baseline")))
    root = parse(write_html(tmp_path, [row]))
    for chart in svgs(root, "drift"):
        for p in chart.findall("polyline"):
            assert 100 < len(p.get("points").split()) <= charts.MAX_POINTS
        labels = [text_of(t) for t in chart.iter("text")]
        assert {"0", "1000", "2000", "decode step"} <= set(labels)


def test_crashed_case(tmp_path):
    trace = "Traceback (most recent call last):\n  File <x>\nRuntimeError: boom"
    row = make_row(
        "crash",
        "crashed",
        reason="RuntimeError: boom",
        violations=[{"check": "crash", "who": "packed", "step": None, "message": trace}],
    )
    path = write_html(tmp_path, [row])
    sec = section(parse(path), "case-0")
    text = text_of(sec)
    assert "RuntimeError: boom" in text and "File <x>" in text and "gdn-harness run" in text
    assert svgs(sec, "heatmap") == []


def test_picks_first_and_worst_step():
    stats = [make_stat(step=s, cells=[[0, 0, r]]) for s, r in enumerate([5.0, 50.0, 7.0, 0.5])] + [
        make_stat(step=0)
    ]
    stats[3]["ok"] = True
    picked = charts.pick_stats(stats)
    assert [s["step"] for s in picked] == [0, 1]


def test_heatmap_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(html_report, "MAX_HEATMAPS_PAGE", 1)
    root = parse(write_html(tmp_path, [failing_row("a"), failing_row("b")]))
    assert len(svgs(root, "heatmap")) == 1
    assert "not drawn" in text_of(section(root, "case-1"))


# --------------------------------------------------------------------------
# A real case through the runner
# --------------------------------------------------------------------------


def decode_zero_out(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw) -> None:
    """A broken implementation: writes zeros to out and leaves the state as it was."""
    out.zero_()


def test_real_broken_case(tmp_path):
    from harness.core.spec import CaseSpec
    from harness.impls.registry import Implementation, load_implementation
    from harness.report import ResultLog
    from harness.run.runner import run_case

    spec = CaseSpec(
        file="t.yaml", name="zeros<1>", line=3, B=3, H=1, HV=2, K=4, V=4, pool=5,
        act_dtype="fp32", steps=3,
    )  # fmt: skip
    impl = Implementation("test:decode_zero_out", decode_zero_out, builtin=False)
    result = run_case(spec, impl, load_implementation("oracle"), "cpu")
    assert result.status == "failed"
    ResultLog(tmp_path).append(result)
    path = write_html(tmp_path, meta={"impl": impl.spec, "baseline": "oracle", "device": "cpu"})
    root = parse(path)
    assert_balanced(path)
    sec = section(root, "case-0")
    assert "t.yaml::zeros<1>" in text_of(sec)
    heats = svgs(sec, "heatmap")
    assert heats
    out_vs_oracle = next(
        s for s in result.stats if s.quantity == "out" and s.pair == f"{impl.spec} vs oracle"
    )
    assert len(heats[0].findall("rect[@class='cell']")) == len(out_vs_oracle.cells) == 3 * 2
    for chart in svgs(sec, "drift"):
        whos = [text_of(p.find("title")) for p in chart.findall("polyline")]
        assert whos == [impl.spec, "oracle"]
