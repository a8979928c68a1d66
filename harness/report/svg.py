"""A small toolkit for hand-written inline SVG: shapes, text, axes helpers and a
sequential colour map.

Every function returns markup as a string, escaped and well-formed XML, so a
page built from them opens straight from disk and parses with the standard
library. Coordinates are written with one decimal, which keeps large charts
small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

from harness.report.text import printable

DASH = "\u2013"
AXIS = "#4a5568"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
# Sequential colour map over 0..1: pale yellow to dark red.
HEAT_STOPS = ((1.0, 0.95, 0.69), (0.96, 0.64, 0.38), (0.84, 0.16, 0.16), (0.42, 0.02, 0.06))


def esc(x: object) -> str:
    """Escape any text for element content and attribute values alike; control
    characters show as escapes, so the markup stays well-formed XML."""
    return escape(printable(x), quote=True)


def coord(v: float) -> str:
    """An SVG coordinate with at most one decimal."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def heat(t: float, stops: Sequence[tuple[float, float, float]] = HEAT_STOPS) -> str:
    """Colour for ``t`` in [0, 1] on a sequential map through ``stops`` (RGB in 0..1)."""
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    rgb = [a + (b - a) * f for a, b in zip(stops[i], stops[i + 1], strict=True)]
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def bins(keys: Sequence[int], limit: int) -> list[list[int]]:
    """Consecutive groups of sorted keys, at most ``limit`` of them, near equal in size."""
    if len(keys) <= limit:
        return [[k] for k in keys]
    size = math.ceil(len(keys) / limit)
    return [list(keys[i : i + size]) for i in range(0, len(keys), size)]


def span_label(group: Sequence[int]) -> str:
    """``3`` for one key, ``0`` dash ``7`` for a group of them."""
    return str(group[0]) if len(group) == 1 else f"{group[0]}{DASH}{group[-1]}"


def every(n: int, most: int = 16) -> int:
    """Label every k-th tick so that at most about ``most`` labels show."""
    return 1 if n <= 2 * most else math.ceil(n / most)


def ticks(hi: float, n: int = 5) -> list[float]:
    """Round tick values from 0 to ``hi``."""
    if hi <= 0:
        return [0.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(hi // step) + 1)]


def pow10(k: int) -> str:
    """A decade's axis label: ``1``, ``1e-3``, ``1e4``."""
    return "1" if k == 0 else f"1e{k}"


def svg(width: float, height: float, cls: str, body: Iterable[str], extra: str = "") -> str:
    return (
        f'<svg class="{esc(cls)}" width="{coord(width)}" height="{coord(height)}" '
        f'viewBox="0 0 {coord(width)} {coord(height)}" role="img"{extra}>'
        + "".join(body)
        + "</svg>"
    )


def text(x: float, y: float, s: object, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{coord(x)}" y="{coord(y)}" text-anchor="{anchor}"{extra}>{esc(s)}</text>'


def vtext(x: float, y: float, s: object) -> str:
    """A vertical axis label, read bottom to top."""
    return text(x, y, s, "middle", f' transform="rotate(-90 {coord(x)} {coord(y)})"')


def line(x1: float, y1: float, x2: float, y2: float, extra: str = "", stroke: str = "") -> str:
    return (
        f'<line x1="{coord(x1)}" y1="{coord(y1)}" x2="{coord(x2)}" y2="{coord(y2)}" '
        f'stroke="{stroke or AXIS}"{extra}/>'
    )


def rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "", cls: str = "") -> str:
    """A rectangle; ``tip`` shows on hover."""
    c = f' class="{esc(cls)}"' if cls else ""
    title = f"<title>{esc(tip)}</title></rect>" if tip else "</rect>"
    return (
        f'<rect{c} x="{coord(x)}" y="{coord(y)}" width="{coord(w)}" height="{coord(h)}" '
        f'fill="{fill}">' + title
    )


def polyline(points: Sequence[tuple[float, float]], colour: str, tip: str, dots: int = 30) -> str:
    """A series line; with at most ``dots`` points each is marked, so one point still shows."""
    pts = " ".join(f"{coord(x)},{coord(y)}" for x, y in points)
    marks = ""
    if len(points) <= dots:
        marks = "".join(
            f'<circle cx="{coord(x)}" cy="{coord(y)}" r="2" fill="{colour}"/>' for x, y in points
        )
    return (
        f'<polyline class="series" points="{pts}" fill="none" stroke="{colour}" '
        f'stroke-width="1.6"><title>{esc(tip)}</title></polyline>' + marks
    )
