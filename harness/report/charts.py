"""The pictures of report.html, drawn from results.jsonl rows.

Where in (slot, head) a failing comparison went over its bound (heatmap), how
each head fared against it (bars), and how the carried state drifts over many
decode steps (curves). Sizes are capped so the worst run stays a file a
browser opens: heatmaps bin slots (and heads) beyond :data:`MAX_ROWS`
(:data:`MAX_COLS`), bars bin heads beyond :data:`MAX_BARS`, drift curves keep
at most :data:`MAX_POINTS` points per series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from harness.report import svg
from harness.report.svg import esc
from harness.report.text import fmt, sort_key

MAX_ROWS = 128  # heatmap rows (slots) before slots are binned
MAX_COLS = 64  # heatmap columns (heads) before heads are binned
MAX_BARS = 128  # head bars before heads are binned
MAX_POINTS = 400  # drift points per series before downsampling
NONFINITE = "#5a189a"  # Inf / NaN errors: off the scale, so off the colour map
NOT_OVER = "#eef0f3"  # heatmap background: no element of the cell over its bound


# --- heatmap of (slot, head) cells over their bound ---------------------------
def heads_of(row: dict, stat: dict) -> int:
    """Number of value heads: from the shape, or whatever the stats name."""
    named = [int(h) for h in stat.get("head_ratio", {})]
    named += [int(c[1]) for c in stat.get("cells", [])]
    return max([int(row.get("shape", {}).get("HV", 0)), *(h + 1 for h in named)])


def _grid(cells: list[list], heads: int) -> tuple[list[list[int]], list[list[int]], dict]:
    """Bin slots (rows) and heads (columns); each grid cell keeps the max ratio in it."""
    slots = sorted({int(c[0]) for c in cells})
    rows, cols = svg.bins(slots, MAX_ROWS), svg.bins(list(range(heads)), MAX_COLS)
    row_of = {s: i for i, g in enumerate(rows) for s in g}
    col_of = {h: j for j, g in enumerate(cols) for h in g}
    grid: dict[tuple[int, int], float] = {}
    for slot, head, ratio in cells:
        key = (row_of[int(slot)], col_of[int(head)])
        grid[key] = max(grid.get(key, 0.0), sort_key(ratio))
    return rows, cols, grid


def _top_exponent(values: Iterable[float]) -> int:
    """Top of the log colour scale: the decade of the largest finite ratio, at least 1."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return max(1, math.ceil(math.log10(max(finite)))) if finite else 1


def cell_colour(ratio: float, top: int) -> str:
    """Colour of a cell: log10(ratio) over 0..``top`` decades; Inf/NaN off the map."""
    if not math.isfinite(ratio):
        return NONFINITE
    return svg.heat(math.log10(max(ratio, 1.0)) / top)


def heatmap_svg(stat: dict, heads: int) -> str:
    """SVG grid: x = value head, y = slot, colour = log10(max |err| / bound) per cell.

    Only cells with an element over its bound are recorded (ErrorStats.cells),
    so rows are the slots that have one; beyond MAX_ROWS of them, consecutive
    slots share a row, which then shows the worst of its slots.
    """
    rows, cols, grid = _grid(stat.get("cells", []), heads)
    cw = min(max(560 / max(len(cols), 1), 6.0), 28.0)
    ch = min(max(448 / max(len(rows), 1), 3.5), 18.0)
    left, top = 78.0, 8.0
    gw, gh = cw * len(cols), ch * len(rows)
    width = max(left + gw + 12, 390.0)  # room for the legend
    exp = _top_exponent(grid.values())
    body = [svg.rect(left, top, gw, gh, NOT_OVER)]
    for (i, j), ratio in sorted(grid.items()):
        tip = f"slot {svg.span_label(rows[i])}, head {svg.span_label(cols[j])}: {fmt(ratio)}x bound"
        x0, x1 = (round(left + k * cw, 1) for k in (j, j + 1))  # shared edges: no seams
        y0, y1 = (round(top + k * ch, 1) for k in (i, i + 1))
        body.append(svg.rect(x0, y0, x1 - x0, y1 - y0, cell_colour(ratio, exp), tip, "cell"))
    body += _heat_axes(rows, cols, left, top, cw, ch)
    body += _heat_legend(10.0, top + gh + 44, exp)
    crisp = ' shape-rendering="crispEdges"'  # no seams between tiny cells
    return svg.svg(width, top + gh + 84, "heatmap", body, crisp)


def _heat_axes(rows, cols, left: float, top: float, cw: float, ch: float) -> list[str]:
    """Slot labels on the left, head labels below, and the axis titles."""
    out = []
    for i in range(0, len(rows), svg.every(len(rows))):
        out.append(svg.text(left - 4, top + (i + 0.5) * ch + 3, svg.span_label(rows[i]), "end"))
    y = top + len(rows) * ch + 12
    for j in range(0, len(cols), svg.every(len(cols))):
        out.append(svg.text(left + (j + 0.5) * cw, y, svg.span_label(cols[j]), "middle"))
    gh = len(rows) * ch
    out.append(svg.text(left + len(cols) * cw / 2, top + gh + 26, "value head", "middle"))
    out.append(svg.vtext(12, top + gh / 2, "slot"))
    return out


def _heat_legend(x: float, y: float, exp: int) -> list[str]:
    """Colour bar from 1x to 10**exp x the bound, plus the two off-scale swatches."""
    out = [svg.text(x, y - 4, "max |err| / bound (log scale)")]
    n, w = 10, 18.0
    for i in range(n):
        out.append(svg.rect(x + i * w, y, w, 10, svg.heat((i + 0.5) / n)))
    out.append(svg.text(x, y + 22, "1", "middle"))
    out.append(svg.text(x + n * w, y + 22, f"{svg.pow10(exp)}+", "middle"))
    sx = x + n * w + 24
    out.append(svg.rect(sx, y, 10, 10, NOT_OVER) + svg.text(sx + 14, y + 9, "not over"))
    out.append(svg.rect(sx + 72, y, 10, 10, NONFINITE) + svg.text(sx + 86, y + 9, "Inf/NaN"))
    return out


# --- per-head bars ---------------------------------------------------------------
def _head_values(head_ratio: dict, heads: int) -> tuple[list[list[int]], list[float]]:
    groups = svg.bins(list(range(heads)), MAX_BARS)
    vals = [max(sort_key(head_ratio.get(str(h), 0.0)) for h in g) for g in groups]
    return groups, vals


def _log_range(vals: Sequence[float]) -> tuple[int, int]:
    """Decades shown for head ratios: the bound (10**0) always inside."""
    pos = [v for v in vals if math.isfinite(v) and v > 0]
    lo = min(-1, math.floor(math.log10(min(pos)))) if pos else -1
    return max(lo, -6), _top_exponent(vals)


def head_bars_svg(head_ratio: dict, heads: int) -> str:
    """Bar per value head of max |err| / bound on a log axis, with the bound marked.

    A mapping bug (wrong GQA head, wrong head offset) shows as a pattern over
    heads that a single worst number hides.
    """
    groups, vals = _head_values(head_ratio, heads)
    lo, hi = _log_range(vals)
    left, top, ph = 46.0, 8.0, 150.0
    bw = min(max(400 / max(len(groups), 1), 3.0), 24.0)

    def y(v: float) -> float:
        e = hi if not math.isfinite(v) else math.log10(v) if v > 0 else lo
        return top + ph * (hi - min(max(e, lo), hi)) / (hi - lo)

    body = []
    for j, (g, v) in enumerate(zip(groups, vals, strict=True)):
        fill = NONFINITE if not math.isfinite(v) else "#d62828" if v > 1 else "#2a9d8f"
        yv = y(v)
        tip = f"head {svg.span_label(g)}: {fmt(v)}x bound"
        x = left + j * bw + 0.5
        body.append(svg.rect(x, yv, max(bw - 1, 1), top + ph - yv, fill, tip, "bar"))
    body += _bar_axes(groups, lo, hi, left, top, ph, bw, y)
    return svg.svg(max(left + bw * len(groups) + 40, 260.0), top + ph + 36, "heads", body)


def _bar_axes(groups, lo: int, hi: int, left, top, ph, bw, y) -> list[str]:
    width = bw * len(groups)
    out = [svg.line(left, top, left, top + ph), svg.line(left, top + ph, left + width, top + ph)]
    for k in range(lo, hi + 1, max(1, math.ceil((hi - lo) / 6))):
        out.append(svg.text(left - 4, y(10.0**k) + 3, svg.pow10(k), "end"))
    yb = y(1.0)
    out.append(svg.line(left, yb, left + width, yb, ' stroke-dasharray="4 3"'))
    out.append(svg.text(left + width + 3, yb + 3, "bound"))
    for j in range(0, len(groups), svg.every(len(groups))):
        label = svg.span_label(groups[j])
        out.append(svg.text(left + (j + 0.5) * bw, top + ph + 12, label, "middle"))
    out.append(svg.text(left + width / 2, top + ph + 28, "value head", "middle"))
    out.append(svg.vtext(10, top + ph / 2, "max |err| / bound"))
    return out


# --- drift curves ----------------------------------------------------------------
def _series(drift: list[dict], key: str) -> dict[str, list[tuple[int, float]]]:
    """Points (step, value) per implementation, in order of first appearance."""
    out: dict[str, list[tuple[int, float]]] = {}
    for d in drift:
        out.setdefault(str(d["who"]), []).append((int(d["step"]), sort_key(d.get(key))))
    return {who: _downsample(sorted(pts)) for who, pts in out.items()}


def _downsample(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """At most MAX_POINTS points: the largest of each run, so spikes survive."""
    if len(points) <= MAX_POINTS:
        return points
    size = math.ceil(len(points) / MAX_POINTS)
    chunks = (points[i : i + size] for i in range(0, len(points), size))
    return [max(c, key=lambda p: p[1]) for c in chunks]


def _drift_range(series: dict[str, list[tuple[int, float]]]) -> tuple[int, int, bool]:
    """Decades shown; exact zeros (bit-exact runs) sit one decade below the least value."""
    vals = [v for pts in series.values() for _, v in pts]
    pos = [v for v in vals if math.isfinite(v) and v > 0]
    zeros = any(v <= 0 for v in vals)
    if not pos:
        return -13, -12, zeros
    lo = math.floor(math.log10(min(pos))) - (1 if zeros else 0)
    hi = math.ceil(math.log10(max(pos)))
    return lo, max(hi, lo + 1), zeros


def drift_svg(drift: list[dict], key: str, title: str, colours: dict[str, str]) -> str:
    """Polyline per implementation of log10(``key``) against the step.

    Shows whether the carried state's error against the exact float64
    trajectory grows with every step (a rounding bug) or stays flat.
    """
    series = _series(drift, key)
    lo, hi, zeros = _drift_range(series)
    last = max((p[0] for pts in series.values() for p in pts), default=0)
    left, top, pw, ph = 52.0, 22.0, 380.0, 170.0

    def xy(step: int, v: float) -> tuple[float, float]:
        e = hi if not math.isfinite(v) else math.log10(v) if v > 0 else lo
        x = left + pw * (step / last if last else 0.5)
        return x, top + ph * (hi - min(max(e, lo), hi)) / (hi - lo)

    body = [svg.text(left, 12, title)]
    body += _drift_axes(lo, hi, last, zeros, left, top, pw, ph, xy)
    for who, pts in series.items():
        body.append(svg.polyline([xy(s, v) for s, v in pts], colours[who], who))
    body += _drift_legend(list(series), colours, left, top + ph + 40)
    return svg.svg(left + pw + 20, top + ph + 48 + 14 * len(series), "drift", body)


def _drift_axes(lo, hi, last, zeros, left, top, pw, ph, xy) -> list[str]:
    out = [svg.line(left, top, left, top + ph), svg.line(left, top + ph, left + pw, top + ph)]
    for k in range(lo, hi + 1, max(1, math.ceil((hi - lo) / 6))):
        label = "0" if zeros and k == lo else svg.pow10(k)
        out.append(svg.text(left - 4, xy(0, 10.0**k)[1] + 3, label, "end"))
    for t in svg.ticks(last) if last else [0]:
        x = xy(int(t), 1.0)[0]
        tick = svg.line(x, top + ph, x, top + ph + 3)
        out.append(tick + svg.text(x, top + ph + 14, int(t), "middle"))
    out.append(svg.text(left + pw / 2, top + ph + 28, "decode step", "middle"))
    out.append(svg.vtext(12, top + ph / 2, "max abs error"))
    return out


def _drift_legend(whos: list[str], colours: dict[str, str], x: float, y: float) -> list[str]:
    out = []
    for i, who in enumerate(whos):
        yy = y + 14 * i
        out.append(svg.line(x, yy - 4, x + 18, yy - 4, ' stroke-width="2"', colours[who]))
        out.append(svg.text(x + 24, yy, who))
    return out


def drift_block(row: dict) -> str:
    """Both drift curves of a multi-step case, and the final values per implementation."""
    drift = row.get("drift") or []
    whos = list(dict.fromkeys(str(d["who"]) for d in drift))
    colours = {w: svg.PALETTE[i % len(svg.PALETTE)] for i, w in enumerate(whos)}
    charts = [
        drift_svg(drift, "state_max_abs", "carried state: max |S - S_exact|", colours),
        drift_svg(drift, "out_max_abs", "output: max |out - out_exact|", colours),
    ]
    lines = []
    for who in whos:
        d = [x for x in drift if str(x["who"]) == who][-1]
        lines.append(
            f"<tr><td>{esc(who)}</td><td class='num'>{esc(int(d['step']) + 1)}</td>"
            f"<td class='num'>{esc(fmt(d.get('state_max_abs')))}</td>"
            f"<td class='num'>{esc(fmt(d.get('out_max_abs')))}</td></tr>"
        )
    table = (
        "<table><tr><th>implementation</th><th>steps</th><th>final state drift</th>"
        "<th>final out drift</th></tr>" + "".join(lines) + "</table>"
    )
    caption = "Drift against the exact float64 trajectory (log scale)"
    return (
        f"<figure><figcaption>{caption}</figcaption>"
        f'<div class="charts">{"".join(charts)}</div>{table}</figure>'
    )


# --- one failing comparison ------------------------------------------------------
def stat_failed(s: dict) -> bool:
    if "ok" in s:
        return not s["ok"]
    return bool(s.get("checked", True) and (s.get("over") or s.get("nan") or s.get("inf")))


def pick_stats(stats: list[dict]) -> list[dict]:
    """Failing stats worth a picture: per (quantity, pair), the first and the worst step.

    A 1000-step case can fail at every step; the first failure shows where it
    starts and the worst shows how bad it gets.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in stats:
        if stat_failed(s):
            groups.setdefault((str(s.get("quantity")), str(s.get("pair"))), []).append(s)
    picked = []
    for group in groups.values():
        first = min(group, key=lambda s: int(s.get("step", 0)))
        worst = max(group, key=lambda s: sort_key(s.get("worst_ratio")))
        picked += [first] if worst is first else [first, worst]
    return picked


def _live_count(row: dict, stat: dict) -> int | None:
    """Live rows behind a stat: its element count over the elements per row."""
    sh = row.get("shape", {})
    per = int(sh.get("HV", 0)) * int(sh.get("V", 0))
    per *= int(sh.get("K", 0)) if stat.get("quantity") == "state" else 1
    n = int(stat.get("n", 0))
    return n // per if per and n % per == 0 else None


def _stat_caption(row: dict, s: dict) -> str:
    slots = len({int(c[0]) for c in s.get("cells", [])})
    live = _live_count(row, s)
    of = f" of {live} live" if live is not None else ""
    parts = [f"{s.get('over')}/{s.get('n')} elements over bound"]
    if s.get("nan") or s.get("inf"):
        parts.append(f"{s.get('nan')} NaN, {s.get('inf')} Inf")
    parts.append(f"worst {fmt(s.get('worst_ratio'))}x bound at {s.get('worst_at')}")
    if s.get("worst_value"):
        got, want = s["worst_value"]
        parts.append(f"(got {fmt(got)}, want {fmt(want)})")
    parts.append(f"slots with an element over bound: {slots}{of}")
    parts.append(f"tol: {s.get('tolerance')}")
    return f"{s.get('quantity')} | {s.get('pair')} | step {s.get('step')}: " + ", ".join(parts)


def stat_figure(row: dict, s: dict) -> str:
    """Heatmap and per-head bars of one failing comparison, with its numbers."""
    heads = heads_of(row, s)
    heat = heatmap_svg(s, heads) if s.get("cells") else "<p class='muted'>no cell data</p>"
    bars = head_bars_svg(s.get("head_ratio", {}), heads)
    return (
        f"<figure><figcaption>{esc(_stat_caption(row, s))}</figcaption>"
        f'<div class="charts">{heat}{bars}</div></figure>'
    )
