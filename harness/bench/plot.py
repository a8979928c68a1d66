"""bench.svg: % of floor and time per call against B, one line per implementation.

Hand-written SVG, so the plot exists on machines without matplotlib: per
shape, one panel per metric with B on a log2 axis (solid lines: vk, dashed:
kv), plus the baseline_recurrent / FLA time ratio when it was measured.
"""

from __future__ import annotations

import math

from harness.bench.rows import Report
from harness.bench.targets import RECURRENT_MAX_RATIO

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_DASH = {"vk": "", "kv": "6,3"}


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _panel(x0, y0, w, h, title, series, *, ylog, xs_all, colors, ref=None, zero=False) -> list[str]:
    """One line chart: x is log2(B); series maps (name, layout) to [(B, y)]; ``zero``
    starts the y axis at 0."""
    out = [
        f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
        f'<text x="{x0 + w / 2}" y="{y0 - 6}" text-anchor="middle" font-size="12">'
        f"{_esc(title)}</text>",
    ]
    pts = [y for s in series.values() for _, y in s if y is not None and (y > 0 or not ylog)]
    if not pts or not xs_all:
        out.append(
            f'<text x="{x0 + w / 2}" y="{y0 + h / 2}" text-anchor="middle" '
            'font-size="11">no data</text>'
        )
        return out
    fy = (lambda y: math.log10(y)) if ylog else (lambda y: y)
    lo, hi = min(map(fy, pts)), max(map(fy, pts))
    if ref is not None:
        hi = max(hi, fy(ref))
    if zero:
        lo = min(0.0, lo)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    pad = 0.05 * (hi - lo)
    lo, hi = lo - (pad if ylog else 0), hi + pad
    xl, xh = math.log2(min(xs_all)), math.log2(max(xs_all))
    xh = xh if xh > xl else xl + 1

    def px(b):
        return x0 + 40 + (math.log2(b) - xl) / (xh - xl) * (w - 50)

    def py(y):
        return y0 + h - 20 - (fy(y) - lo) / (hi - lo) * (h - 30)

    for b in sorted(set(xs_all)):
        out.append(
            f'<text x="{px(b):.1f}" y="{y0 + h - 6}" text-anchor="middle" font-size="9">{b}</text>'
        )
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        label = f"{10**v:.3g}" if ylog else f"{v:.3g}"
        yy = y0 + h - 20 - (v - lo) / (hi - lo) * (h - 30)
        out.append(
            f'<line x1="{x0 + 38}" x2="{x0 + w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{x0 + 35}" y="{yy + 3:.1f}" text-anchor="end" font-size="9">{label}</text>'
        )
    if ref is not None:
        out.append(
            f'<line x1="{x0 + 38}" x2="{x0 + w}" y1="{py(ref):.1f}" y2="{py(ref):.1f}" '
            'stroke="#555" stroke-dasharray="2,2"/>'
        )
    for (name, layout), s in series.items():
        good = [(b, y) for b, y in sorted(s) if y is not None and (y > 0 or not ylog)]
        if not good:
            continue
        d = " ".join(f"{px(b):.1f},{py(y):.1f}" for b, y in good)
        dash = _DASH.get(layout, "")
        out.append(
            f'<polyline points="{d}" fill="none" stroke="{colors[name]}" stroke-width="1.5"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
        )
        out.extend(
            f'<circle cx="{px(b):.1f}" cy="{py(y):.1f}" r="2" fill="{colors[name]}"/>'
            for b, y in good
        )
    return out


def render_svg(report: Report) -> str:
    """Per shape: % of floor and time per call vs B (log2), one line per impl and layout;
    plus baseline_recurrent / FLA time ratios when measured. Hand-written SVG, so the
    plot exists on machines without matplotlib."""
    rows = report.rows or []
    rec = report.recurrent.rows if report.recurrent else []
    shapes = list(dict.fromkeys([r.shape for r in rows] + [r.shape for r in rec]))
    impls = [*dict.fromkeys(r.impl for r in rows), "base/fla"]
    colors = {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(impls)}
    w, h, gap = 360, 220, 40
    metrics = []
    if rows:
        metrics += [
            ("% of floor", "pct_floor", False, 100.0),
            ("time per call (us)", "time_us", True, None),
        ]
    if any(r.ratio for r in rec):
        metrics.append(("recurrent: baseline / FLA time", "ratio", False, RECURRENT_MAX_RATIO))
    n_cols, n_rows = max(1, len(shapes)), max(1, len(metrics))
    width, height = n_cols * (w + gap) + gap, n_rows * (h + gap) + 70 + 20 * len(impls)
    dev = report.device.get("name", "?")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{gap}" y="20" font-size="14">gdn-harness bench on {_esc(dev)} '
        f"({_esc(report.created)})</text>",
    ]
    for ci, shape in enumerate(shapes):
        for mi, (title, key, ylog, ref) in enumerate(metrics):
            x0, y0 = gap + ci * (w + gap), 50 + mi * (h + gap)
            series: dict[tuple[str, str], list] = {}
            source = rec if key == "ratio" else rows
            for r in source:
                if r.shape != shape:
                    continue
                name = "base/fla" if key == "ratio" else r.impl
                series.setdefault((name, r.layout), []).append((r.B, getattr(r, key)))
            xs = [r.B for r in source if r.shape == shape]
            out += _panel(
                x0,
                y0,
                w,
                h,
                f"H/HV {shape}: {title}",
                series,
                ylog=ylog,
                xs_all=xs,
                colors=colors,
                ref=ref,
                zero=key == "pct_floor",
            )
    if not metrics:
        out.append(f'<text x="{gap}" y="60" font-size="12">no timed rows</text>')
    ly = 50 + n_rows * (h + gap)
    for i, name in enumerate(impls):
        y = ly + 20 * i
        c = colors[name]
        out.append(
            f'<line x1="{gap}" x2="{gap + 30}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="2"/>'
        )
        out.append(
            f'<text x="{gap + 36}" y="{y + 4}" font-size="11">{_esc(name)} '
            "(solid: vk, dashed: kv)</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
