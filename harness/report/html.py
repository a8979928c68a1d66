"""A self-contained HTML page per run: ``reports/<run>/report.html``.

The numbers already live in results.jsonl and the markdown summaries; this
page adds the pictures that say more than numbers: where in (slot, head) a
failing comparison went over its bound, how each head fared against it, and
how the carried state drifts over many decode steps. It is hand-written HTML
with inline SVG and no scripts beyond expand/collapse, so a CI artifact opens
straight from disk. The page is also well-formed XML, which keeps it testable
with the standard library alone.

Sizes are capped so the worst run stays a file a browser opens: heatmaps bin
slots (and heads) beyond :data:`MAX_ROWS` (:data:`MAX_COLS`), drift curves
keep at most :data:`MAX_POINTS` points per series, and a page draws at most
:data:`MAX_HEATMAPS_PAGE` heatmaps.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

REPORT_HTML = "report.html"
STATUSES = ("failed", "crashed", "passed", "skipped")  # table order, as in harness.report.results
FAILING = ("failed", "crashed")
MAX_ROWS = 128  # heatmap rows (slots) before slots are binned
MAX_COLS = 64  # heatmap columns (heads) before heads are binned
MAX_BARS = 128  # head bars before heads are binned
MAX_POINTS = 400  # drift points per series before downsampling
MAX_HEATMAPS_CASE = 8
MAX_HEATMAPS_PAGE = 48
MAX_VIOLATIONS = 40  # listed per case; the rest are counted
OPEN_SECTIONS = 10  # failing cases shown expanded; later ones start collapsed
DASH = "\u2013"

# Sequential colour map for log10(|err| / bound) over 0..top: pale yellow to dark red.
_STOPS = ((1.0, 0.95, 0.69), (0.96, 0.64, 0.38), (0.84, 0.16, 0.16), (0.42, 0.02, 0.06))
NONFINITE = "#5a189a"  # Inf / NaN errors: off the scale, so off the colour map
NOT_OVER = "#eef0f3"  # heatmap background: no element of the cell over its bound
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px;
  padding: 0 1em; color: #1d2330; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #dde1e7; padding: 3px 6px; text-align: left;
  vertical-align: top; }
th { background: #f4f6f9; } td.num { text-align: right; white-space: nowrap; }
td.over { color: #b00020; font-weight: 600; }
code, pre { font: 12px/1.4 ui-monospace, monospace; }
pre { background: #f6f8fa; padding: .5em; overflow-x: auto; white-space: pre-wrap; }
.badge { display: inline-block; min-width: 4.5em; text-align: center; border-radius: 3px;
  color: #fff; font-size: 12px; padding: 0 4px; }
.passed { background: #2a9d55; } .failed { background: #d62828; }
.crashed { background: #7b2cbf; } .skipped { background: #8d99ae; }
details { border: 1px solid #dde1e7; border-radius: 4px; margin: .8em 0; padding: .3em .8em; }
summary { cursor: pointer; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
figure { margin: .6em 0; } figcaption { font-size: 12px; color: #4a5568; max-width: 900px; }
svg text { font: 10px system-ui, sans-serif; fill: #1d2330; }
.muted { color: #6b7280; }
"""

BUTTONS = (
    '<p><button type="button" onclick="setAll(true)">expand all</button> '
    '<button type="button" onclick="setAll(false)">collapse all</button></p>'
)
SCRIPT = (
    "function setAll(open) { document.querySelectorAll('details')"
    ".forEach(function (d) { d.open = open; }); }"
)


# --- small helpers -------------------------------------------------------------
def _e(x: object) -> str:
    """Escape any text for element content and attribute values alike."""
    return escape(str(x), quote=True)


def _num(x: object) -> float:
    """A float from a results.jsonl value: non-finite ones arrive as strings."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _fmt(x: object) -> str:
    v = _num(x)
    return f"{v:.3g}" if math.isfinite(v) else str(v)


def _sort_key(x: object) -> float:
    """Ratios ordered with NaN as bad as Inf: both mean a broken element."""
    v = _num(x)
    return math.inf if math.isnan(v) else v


def _c(v: float) -> str:
    """SVG coordinates: one decimal keeps big heatmaps small."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _heat(t: float) -> str:
    """Colour for ``t`` in [0, 1] on the sequential map."""
    t = min(max(t, 0.0), 1.0) * (len(_STOPS) - 1)
    i = min(int(t), len(_STOPS) - 2)
    f = t - i
    rgb = [a + (b - a) * f for a, b in zip(_STOPS[i], _STOPS[i + 1], strict=True)]
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def _bins(keys: Sequence[int], limit: int) -> list[list[int]]:
    """Consecutive groups of sorted keys, at most ``limit`` of them, near equal in size."""
    if len(keys) <= limit:
        return [[k] for k in keys]
    size = math.ceil(len(keys) / limit)
    return [list(keys[i : i + size]) for i in range(0, len(keys), size)]


def _label(group: Sequence[int]) -> str:
    return str(group[0]) if len(group) == 1 else f"{group[0]}{DASH}{group[-1]}"


def _every(n: int, most: int = 16) -> int:
    """Label every k-th tick so that at most about ``most`` labels show."""
    return 1 if n <= 2 * most else math.ceil(n / most)


def _ticks(hi: float, n: int = 5) -> list[float]:
    """Round tick values from 0 to ``hi``."""
    if hi <= 0:
        return [0.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(hi // step) + 1)]


def _pow10(k: int) -> str:
    return "1" if k == 0 else f"1e{k}"


def _svg(width: float, height: float, cls: str, body: Iterable[str], extra: str = "") -> str:
    return (
        f'<svg class="{cls}" width="{_c(width)}" height="{_c(height)}" '
        f'viewBox="0 0 {_c(width)} {_c(height)}" role="img"{extra}>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, s: object, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}"{extra}>{_e(s)}</text>'


def _vtext(x: float, y: float, s: object) -> str:
    """A vertical axis label, read bottom to top."""
    return _text(x, y, s, "middle", f' transform="rotate(-90 {_c(x)} {_c(y)})"')


def _line(x1: float, y1: float, x2: float, y2: float, extra: str = "", stroke: str = "") -> str:
    return (
        f'<line x1="{_c(x1)}" y1="{_c(y1)}" x2="{_c(x2)}" y2="{_c(y2)}" '
        f'stroke="{stroke or "#4a5568"}"{extra}/>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    title = f"<title>{_e(tip)}</title></rect>" if tip else "</rect>"
    return (
        f'<rect{c} x="{_c(x)}" y="{_c(y)}" width="{_c(w)}" height="{_c(h)}" fill="{fill}">' + title
    )


# --- heatmap of (slot, head) cells over their bound ---------------------------
def _heads(row: dict, stat: dict) -> int:
    """Number of value heads: from the shape, or whatever the stats name."""
    named = [int(h) for h in stat.get("head_ratio", {})]
    named += [int(c[1]) for c in stat.get("cells", [])]
    return max([int(row.get("shape", {}).get("HV", 0)), *(h + 1 for h in named)])


def _grid(cells: list[list], heads: int) -> tuple[list[list[int]], list[list[int]], dict]:
    """Bin slots (rows) and heads (columns); each grid cell keeps the max ratio in it."""
    slots = sorted({int(c[0]) for c in cells})
    rows, cols = _bins(slots, MAX_ROWS), _bins(list(range(heads)), MAX_COLS)
    row_of = {s: i for i, g in enumerate(rows) for s in g}
    col_of = {h: j for j, g in enumerate(cols) for h in g}
    grid: dict[tuple[int, int], float] = {}
    for slot, head, ratio in cells:
        key = (row_of[int(slot)], col_of[int(head)])
        grid[key] = max(grid.get(key, 0.0), _sort_key(ratio))
    return rows, cols, grid


def _top_exponent(values: Iterable[float]) -> int:
    """Top of the log colour scale: the decade of the largest finite ratio, at least 1."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return max(1, math.ceil(math.log10(max(finite)))) if finite else 1


def _cell_colour(ratio: float, top: int) -> str:
    if not math.isfinite(ratio):
        return NONFINITE
    return _heat(math.log10(max(ratio, 1.0)) / top)


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
    body = [_rect(left, top, gw, gh, NOT_OVER)]
    for (i, j), ratio in sorted(grid.items()):
        tip = f"slot {_label(rows[i])}, head {_label(cols[j])}: {_fmt(ratio)}x bound"
        x0, x1 = (round(left + k * cw, 1) for k in (j, j + 1))  # shared edges: no seams
        y0, y1 = (round(top + k * ch, 1) for k in (i, i + 1))
        body.append(_rect(x0, y0, x1 - x0, y1 - y0, _cell_colour(ratio, exp), tip, "cell"))
    body += _heat_axes(rows, cols, left, top, cw, ch)
    body += _heat_legend(10.0, top + gh + 44, exp)
    crisp = ' shape-rendering="crispEdges"'  # no seams between tiny cells
    return _svg(width, top + gh + 84, "heatmap", body, crisp)


def _heat_axes(rows, cols, left: float, top: float, cw: float, ch: float) -> list[str]:
    """Slot labels on the left, head labels below, and the axis titles."""
    out = []
    step = _every(len(rows))
    for i in range(0, len(rows), step):
        out.append(_text(left - 4, top + (i + 0.5) * ch + 3, _label(rows[i]), "end"))
    step = _every(len(cols))
    for j in range(0, len(cols), step):
        out.append(
            _text(left + (j + 0.5) * cw, top + len(rows) * ch + 12, _label(cols[j]), "middle")
        )
    gh = len(rows) * ch
    out.append(_text(left + len(cols) * cw / 2, top + gh + 26, "value head", "middle"))
    out.append(_vtext(12, top + gh / 2, "slot"))
    return out


def _heat_legend(x: float, y: float, exp: int) -> list[str]:
    """Colour bar from 1x to 10**exp x the bound, plus the two off-scale swatches."""
    out = [_text(x, y - 4, "max |err| / bound (log scale)")]
    n, w = 10, 18.0
    for i in range(n):
        out.append(_rect(x + i * w, y, w, 10, _heat((i + 0.5) / n)))
    out.append(_text(x, y + 22, "1", "middle"))
    out.append(_text(x + n * w, y + 22, f"{_pow10(exp)}+", "middle"))
    sx = x + n * w + 24
    out.append(_rect(sx, y, 10, 10, NOT_OVER) + _text(sx + 14, y + 9, "not over"))
    out.append(_rect(sx + 72, y, 10, 10, NONFINITE) + _text(sx + 86, y + 9, "Inf/NaN"))
    return out


# --- per-head bars ---------------------------------------------------------------
def _head_values(head_ratio: dict, heads: int) -> tuple[list[list[int]], list[float]]:
    groups = _bins(list(range(heads)), MAX_BARS)
    vals = [max(_sort_key(head_ratio.get(str(h), 0.0)) for h in g) for g in groups]
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
        tip = f"head {_label(g)}: {_fmt(v)}x bound"
        body.append(_rect(left + j * bw + 0.5, yv, max(bw - 1, 1), top + ph - yv, fill, tip, "bar"))
    body += _bar_axes(groups, lo, hi, left, top, ph, bw, y)
    return _svg(max(left + bw * len(groups) + 40, 260.0), top + ph + 36, "heads", body)


def _bar_axes(groups, lo: int, hi: int, left, top, ph, bw, y) -> list[str]:
    width = bw * len(groups)
    out = [_line(left, top, left, top + ph), _line(left, top + ph, left + width, top + ph)]
    step = max(1, math.ceil((hi - lo) / 6))
    for k in range(lo, hi + 1, step):
        out.append(_text(left - 4, y(10.0**k) + 3, _pow10(k), "end"))
    yb = y(1.0)
    out.append(_line(left, yb, left + width, yb, ' stroke-dasharray="4 3"'))
    out.append(_text(left + width + 3, yb + 3, "bound"))
    every = _every(len(groups))
    for j in range(0, len(groups), every):
        out.append(_text(left + (j + 0.5) * bw, top + ph + 12, _label(groups[j]), "middle"))
    out.append(_text(left + width / 2, top + ph + 28, "value head", "middle"))
    out.append(_vtext(10, top + ph / 2, "max |err| / bound"))
    return out


# --- drift curves ----------------------------------------------------------------
def _series(drift: list[dict], key: str) -> dict[str, list[tuple[int, float]]]:
    """Points (step, value) per implementation, in order of first appearance."""
    out: dict[str, list[tuple[int, float]]] = {}
    for d in drift:
        out.setdefault(str(d["who"]), []).append((int(d["step"]), _sort_key(d.get(key))))
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

    body = [_text(left, 12, title)]
    body += _drift_axes(lo, hi, last, zeros, left, top, pw, ph, xy)
    for who, pts in series.items():
        body.append(_polyline([xy(s, v) for s, v in pts], colours[who], who))
    body += _drift_legend(list(series), colours, left, top + ph + 40)
    return _svg(left + pw + 20, top + ph + 48 + 14 * len(series), "drift", body)


def _polyline(points: list[tuple[float, float]], colour: str, who: str) -> str:
    pts = " ".join(f"{_c(x)},{_c(y)}" for x, y in points)
    dots = ""
    if len(points) <= 30:  # short runs: mark each step so one-point series still show
        dots = "".join(
            f'<circle cx="{_c(x)}" cy="{_c(y)}" r="2" fill="{colour}"/>' for x, y in points
        )
    return (
        f'<polyline class="series" points="{pts}" fill="none" stroke="{colour}" '
        f'stroke-width="1.6"><title>{_e(who)}</title></polyline>' + dots
    )


def _drift_axes(lo, hi, last, zeros, left, top, pw, ph, xy) -> list[str]:
    out = [_line(left, top, left, top + ph), _line(left, top + ph, left + pw, top + ph)]
    step = max(1, math.ceil((hi - lo) / 6))
    for k in range(lo, hi + 1, step):
        label = "0" if zeros and k == lo else _pow10(k)
        out.append(_text(left - 4, xy(0, 10.0**k)[1] + 3, label, "end"))
    for t in _ticks(last) if last else [0]:
        x = xy(int(t), 1.0)[0]
        out.append(_line(x, top + ph, x, top + ph + 3) + _text(x, top + ph + 14, int(t), "middle"))
    out.append(_text(left + pw / 2, top + ph + 28, "decode step", "middle"))
    out.append(_vtext(12, top + ph / 2, "max abs error"))
    return out


def _drift_legend(whos: list[str], colours: dict[str, str], x: float, y: float) -> list[str]:
    out = []
    for i, who in enumerate(whos):
        yy = y + 14 * i
        out.append(_line(x, yy - 4, x + 18, yy - 4, ' stroke-width="2"', colours[who]))
        out.append(_text(x + 24, yy, who))
    return out


def drift_block(row: dict) -> str:
    """Both drift curves of a multi-step case, and the final values per implementation."""
    drift = row.get("drift") or []
    whos = list(dict.fromkeys(str(d["who"]) for d in drift))
    colours = {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(whos)}
    charts = [
        drift_svg(drift, "state_max_abs", "carried state: max |S - S_exact|", colours),
        drift_svg(drift, "out_max_abs", "output: max |out - out_exact|", colours),
    ]
    lines = []
    for who in whos:
        d = [x for x in drift if str(x["who"]) == who][-1]
        lines.append(
            f"<tr><td>{_e(who)}</td><td class='num'>{_e(int(d['step']) + 1)}</td>"
            f"<td class='num'>{_e(_fmt(d.get('state_max_abs')))}</td>"
            f"<td class='num'>{_e(_fmt(d.get('out_max_abs')))}</td></tr>"
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


# --- failing cases ---------------------------------------------------------------
def _stat_failed(s: dict) -> bool:
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
        if _stat_failed(s):
            groups.setdefault((str(s.get("quantity")), str(s.get("pair"))), []).append(s)
    picked = []
    for group in groups.values():
        first = min(group, key=lambda s: int(s.get("step", 0)))
        worst = max(group, key=lambda s: _sort_key(s.get("worst_ratio")))
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
    parts.append(f"worst {_fmt(s.get('worst_ratio'))}x bound at {s.get('worst_at')}")
    if s.get("worst_value"):
        got, want = s["worst_value"]
        parts.append(f"(got {_fmt(got)}, want {_fmt(want)})")
    parts.append(f"slots with an element over bound: {slots}{of}")
    parts.append(f"tol: {s.get('tolerance')}")
    return f"{s.get('quantity')} | {s.get('pair')} | step {s.get('step')}: " + ", ".join(parts)


def stat_figure(row: dict, s: dict) -> str:
    """Heatmap and per-head bars of one failing comparison, with its numbers."""
    heads = _heads(row, s)
    heat = heatmap_svg(s, heads) if s.get("cells") else "<p class='muted'>no cell data</p>"
    bars = head_bars_svg(s.get("head_ratio", {}), heads)
    return (
        f"<figure><figcaption>{_e(_stat_caption(row, s))}</figcaption>"
        f'<div class="charts">{heat}{bars}</div></figure>'
    )


def _violations(row: dict) -> str:
    items = []
    vs = row.get("violations", [])
    for v in vs[:MAX_VIOLATIONS]:
        step = f" step {v['step']}" if v.get("step") is not None else ""
        head, _, rest = str(v.get("message", "")).partition("\n")
        more = f"<pre>{_e(rest)}</pre>" if rest.strip() else ""
        items.append(
            f"<li><code>[{_e(v.get('check'))}]</code> {_e(v.get('who'))}{_e(step)}: "
            f"{_e(head)}{more}</li>"
        )
    if len(vs) > MAX_VIOLATIONS:
        items.append(f"<li class='muted'>... and {len(vs) - MAX_VIOLATIONS} more</li>")
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _case_facts(row: dict) -> str:
    sh, dt = row.get("shape", {}), row.get("dtypes", {})
    shape = " ".join(f"{k}={v}" for k, v in sh.items())
    dtypes = "/".join(str(dt.get(k, "?")) for k in ("act", "state", "param", "index"))
    return (
        f"{shape}; dtypes act/state/param/index {dtypes}; layout {row.get('layout')}; "
        f"steps {row.get('steps')}; {_fmt(row.get('duration_s', 0))} s on {row.get('device')}"
    )


def failure_section(i: int, row: dict, budget: list[int], opened: bool = True) -> str:
    """Everything about one failing case; ``budget`` holds the page's heatmaps left."""
    picked = pick_stats(row.get("stats", []))
    shown = picked[: min(MAX_HEATMAPS_CASE, budget[0])]
    budget[0] -= len(shown)
    parts = [
        f"<p class='muted'>{_e(row.get('file'))}:{_e(row.get('line'))}; {_e(_case_facts(row))}</p>",
        f"<p>{_e(row['reason'])}</p>" if row.get("reason") else "",
        f"<pre>{_e(row.get('rerun', ''))}</pre>",
        _violations(row),
        *(stat_figure(row, s) for s in shown),
    ]
    if len(shown) < len(picked):
        parts.append(
            f"<p class='muted'>{len(picked) - len(shown)} more failing comparisons not drawn "
            "(size cap); their numbers are in results.jsonl.</p>"
        )
    if row.get("drift"):
        parts.append(drift_block(row))
    attr = " open=''" if opened else ""
    return (
        f'<details id="case-{i}"{attr}><summary>{_badge(row)} {_e(row.get("id"))}</summary>'
        + "".join(parts)
        + "</details>"
    )


# --- the page --------------------------------------------------------------------
def _badge(row: dict) -> str:
    status = str(row.get("status", "?"))
    return f'<span class="badge {_e(status)}">{_e(status)}</span>'


def _worst(row: dict) -> float:
    vals = [_sort_key(s.get("worst_ratio")) for s in row.get("stats", []) if s.get("checked", True)]
    return max(vals, default=0.0)


def _meta_value(meta: dict, rows: list[dict], key: str) -> str:
    """A header value: from meta when given (None means none), else from the rows."""
    if key in meta:
        return "none" if meta[key] is None else str(meta[key])
    vals = dict.fromkeys("none" if r.get(key) is None else str(r.get(key)) for r in rows)
    return ", ".join(vals) or "?"


def header(rows: list[dict], meta: dict, run: str) -> str:
    counts = Counter(str(r.get("status")) for r in rows)
    total = sum(_num(r.get("duration_s", 0)) for r in rows)
    facts = [(k, _meta_value(meta, rows, k)) for k in ("impl", "baseline", "device")]
    facts += [(k, str(v)) for k, v in meta.items() if k not in ("impl", "baseline", "device")]
    dl = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    tally = ", ".join(f'<span class="badge {s}">{counts.get(s, 0)} {s}</span>' for s in STATUSES)
    return (
        f"<h1>gdn-harness report {_e(run)}</h1>"
        f"<table style='width:auto'>{dl}</table>"
        f"<p>{tally} of {len(rows)} cases, {total:.1f} s in cases</p>"
    )


def case_table(rows: list[dict], anchors: dict[int, str]) -> str:
    """Every case, failures first, with the command that reruns each failure."""
    if not rows:
        return "<h2>Cases</h2><p class='muted'>No cases ran.</p>"
    order = sorted(range(len(rows)), key=lambda i: _status_rank(rows[i]))
    body = "".join(_table_row(i, rows[i], anchors.get(i)) for i in order)
    head = (
        "<tr><th>status</th><th>case</th><th>file:line</th><th>time</th>"
        "<th>worst / bound</th><th>rerun / reason</th></tr>"
    )
    return f"<h2>Cases</h2><table>{head}{body}</table>"


def _status_rank(row: dict) -> int:
    status = row.get("status")
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)


def _table_row(i: int, row: dict, anchor: str | None) -> str:
    name = _e(row.get("id"))
    if anchor:
        name = f'<a href="#{anchor}">{name}</a>'
    worst = _worst(row)
    cls = "num over" if worst > 1 else "num"
    shown = _fmt(worst) if row.get("stats") else "-"
    last = row.get("rerun", "") if row.get("status") in FAILING else row.get("reason", "")
    code = f"<code>{_e(last)}</code>" if row.get("status") in FAILING else _e(last)
    return (
        f"<tr><td>{_badge(row)}</td><td>{name}</td>"
        f"<td>{_e(row.get('file'))}:{_e(row.get('line'))}</td>"
        f"<td class='num'>{_num(row.get('duration_s', 0)):.2f} s</td>"
        f"<td class='{cls}'>{_e(shown)}</td><td>{code}</td></tr>"
    )


def drift_section(rows: list[dict], indices: list[int]) -> str:
    """Drift curves of multi-step cases that did not fail (failures carry their own)."""
    if not indices:
        return ""
    blocks = [
        f'<details id="drift-{i}"><summary>{_badge(rows[i])} {_e(rows[i].get("id"))}</summary>'
        f"{drift_block(rows[i])}</details>"
        for i in indices
    ]
    return "<h2>Drift of multi-step cases</h2>" + "".join(blocks)


def render(rows: list[dict], meta: dict | None = None, run: str = "") -> str:
    """The whole page as a string (well-formed XML after the doctype)."""
    meta = meta or {}
    failing = [i for i, r in enumerate(rows) if r.get("status") in FAILING]
    failed = set(failing)
    drifting = [i for i, r in enumerate(rows) if r.get("drift") and i not in failed]
    anchors = {i: f"case-{i}" for i in failing} | {i: f"drift-{i}" for i in drifting}
    budget = [MAX_HEATMAPS_PAGE]
    sections = [header(rows, meta, run), BUTTONS, case_table(rows, anchors)]
    if failing:
        sections.append("<h2>Failing cases</h2>")
        sections += [
            failure_section(i, rows[i], budget, n < OPEN_SECTIONS) for n, i in enumerate(failing)
        ]
    sections.append(drift_section(rows, drifting))
    return _page(run, "".join(sections))


def _page(run: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>gdn-harness {_e(run)}</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head>"
        f"<body>{body}</body></html>\n"
    )


def write_html(
    report_dir: str | Path, rows: list[dict] | None = None, meta: dict | None = None
) -> Path:
    """Write ``report_dir/report.html`` from ``rows`` (default: its results.jsonl)."""
    report_dir = Path(report_dir)
    if rows is None:
        from harness.report.results import (
            read_results,  # here: harness.report.results imports this module
        )

        rows = read_results(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / REPORT_HTML
    path.write_text(render(rows, meta, report_dir.name), encoding="utf-8")
    return path
