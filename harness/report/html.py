"""A self-contained HTML page per run: ``reports/<run>/report.html``.

The numbers already live in results.jsonl and the markdown summaries; this
page adds the pictures that say more than numbers (:mod:`harness.report.charts`).
It is hand-written HTML with inline SVG and no scripts beyond
expand/collapse, so a CI artifact opens straight from disk. The page is also
well-formed XML, which keeps it testable with the standard library alone. At
most :data:`MAX_HEATMAPS_PAGE` heatmaps are drawn per page.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.report.charts import drift_block, pick_stats, stat_figure
from harness.report.failures import checks_failed, group_violations, worst_ratio
from harness.report.log import read_results
from harness.report.svg import esc
from harness.report.text import fmt, num

REPORT_HTML = "report.html"
STATUSES = ("failed", "crashed", "passed", "skipped")  # table order, as in the summaries
FAILING = ("failed", "crashed")
MAX_HEATMAPS_CASE = 8
MAX_HEATMAPS_PAGE = 48
MAX_VIOLATIONS = 40  # listed per case; the rest are counted
OPEN_SECTIONS = 10  # failing cases shown expanded; later ones start collapsed
PARTIAL_NOTE = (
    "<p class='partial'><strong>Partial run:</strong> it ended before every selected case "
    "ran; this page shows the {n} cases it recorded.</p>"
)

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
pre { background: #f6f8fa; padding: .5em; white-space: pre-wrap; overflow-wrap: anywhere; }
td.rerun, td.id { overflow-wrap: anywhere; } td.rerun { min-width: 24em; }
ul.groups > li { margin-bottom: .3em; }
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
.partial { background: #fff3cd; border: 1px solid #e0b100; padding: .4em .8em; }
"""

BUTTONS = (
    '<p><button type="button" onclick="setAll(true)">expand all</button> '
    '<button type="button" onclick="setAll(false)">collapse all</button></p>'
)
SCRIPT = (
    "function setAll(open) { document.querySelectorAll('details')"
    ".forEach(function (d) { d.open = open; }); }"
)


def _grouped(row: dict) -> str:
    """The violations grouped by check, implementation and quantity, each fact once."""
    multi = int(row.get("steps", 1) or 1) > 1
    items = []
    for group in group_violations(row):
        facts = []
        for f in group.facts:
            label = f"<b>{esc(f.label)}</b> " if f.label else ""
            more = ""
            if f.more and f.label:
                more = "".join(f"<br/><span class='muted'>{esc(m)}</span>" for m in f.more)
            elif f.more:
                more = f"<pre>{esc(chr(10).join(f.more))}</pre>"
            facts.append(f"<li>{label}{esc(f.when(multi))}{esc(f.text)}{more}</li>")
        if group.hidden:
            facts.append(f"<li class='muted'>... and {group.hidden} more distinct messages</li>")
        items.append(
            f"<li><code>[{esc(group.check)}]</code> {esc(group.who)}<ul>{''.join(facts)}</ul></li>"
        )
    return f"<ul class='groups'>{''.join(items)}</ul>" if items else ""


def _violations(row: dict) -> str:
    """Every violation as recorded, whole, collapsed under the grouped view."""
    items = []
    vs = row.get("violations", [])
    for v in vs[:MAX_VIOLATIONS]:
        step = f" step {v['step']}" if v.get("step") is not None else ""
        head, _, rest = str(v.get("message", "")).partition("\n")
        more = f"<pre>{esc(rest)}</pre>" if rest.strip() else ""
        items.append(
            f"<li><code>[{esc(v.get('check'))}]</code> {esc(v.get('who'))}{esc(step)}: "
            f"{esc(head)}{more}</li>"
        )
    if len(vs) > MAX_VIOLATIONS:
        items.append(
            f"<li class='muted'>... and {len(vs) - MAX_VIOLATIONS} more in results.jsonl</li>"
        )
    if not items:
        return ""
    return (
        f"<details class='all'><summary>every violation as recorded ({len(vs)})</summary>"
        f"<ul>{''.join(items)}</ul></details>"
    )


def _case_facts(row: dict) -> str:
    sh, dt = row.get("shape", {}), row.get("dtypes", {})
    shape = " ".join(f"{k}={v}" for k, v in sh.items())
    dtypes = "/".join(str(dt.get(k, "?")) for k in ("act", "state", "param", "index"))
    return (
        f"{shape}; dtypes act/state/param/index {dtypes}; layout {row.get('layout')}; "
        f"steps {row.get('steps')}; {fmt(row.get('duration_s', 0))} s on {row.get('device')}"
    )


def failure_section(i: int, row: dict, budget: list[int], opened: bool = True) -> str:
    """Everything about one failing case; ``budget`` holds the page's heatmaps left."""
    picked = pick_stats(row.get("stats", []))
    shown = picked[: min(MAX_HEATMAPS_CASE, budget[0])]
    budget[0] -= len(shown)
    parts = [
        f"<p class='muted'>{esc(row.get('file'))}:{esc(row.get('line'))}; "
        f"{esc(_case_facts(row))}</p>",
        f"<pre class='reason'>{esc(row['reason'])}</pre>" if row.get("reason") else "",
        f"<pre>{esc(row.get('rerun', ''))}</pre>",
        _grouped(row),
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
        f'<details id="case-{i}"{attr}><summary>{_badge(row)} {esc(row.get("id"))} '
        f"<span class='muted'>{esc(checks_failed(row))}</span></summary>"
        + "".join(parts)
        + "</details>"
    )


# --- the page --------------------------------------------------------------------
def _badge(row: dict) -> str:
    status = str(row.get("status", "?"))
    return f'<span class="badge {esc(status)}">{esc(status)}</span>'


def _meta_value(meta: dict, rows: list[dict], key: str) -> str:
    """A header value: from meta when given (None means none), else from the rows."""
    if key in meta:
        return "none" if meta[key] is None else str(meta[key])
    vals = dict.fromkeys("none" if r.get(key) is None else str(r.get(key)) for r in rows)
    return ", ".join(vals) or "?"


def header(rows: list[dict], meta: dict, run: str, partial: bool = False) -> str:
    counts = Counter(str(r.get("status")) for r in rows)
    total = sum(num(r.get("duration_s", 0)) for r in rows)
    facts = [(k, _meta_value(meta, rows, k)) for k in ("impl", "baseline", "device")]
    facts += [(k, str(v)) for k, v in meta.items() if k not in ("impl", "baseline", "device")]
    dl = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    tally = ", ".join(f'<span class="badge {s}">{counts.get(s, 0)} {s}</span>' for s in STATUSES)
    title = f"gdn-harness report {run}" + (" (partial)" if partial else "")
    note = PARTIAL_NOTE.format(n=len(rows)) if partial else ""
    return (
        f"<h1>{esc(title)}</h1>{note}"
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
    name = esc(row.get("id"))
    if anchor:
        name = f'<a href="#{anchor}">{name}</a>'
    worst = worst_ratio(row)
    cls = "num over" if worst > 1 else "num"
    shown = fmt(worst) if row.get("stats") else "-"
    last = row.get("rerun", "") if row.get("status") in FAILING else row.get("reason", "")
    code = f"<code>{esc(last)}</code>" if row.get("status") in FAILING else esc(last)
    return (
        f"<tr><td>{_badge(row)}</td><td class='id'>{name}</td>"
        f"<td class='id'>{esc(row.get('file'))}:{esc(row.get('line'))}</td>"
        f"<td class='num'>{num(row.get('duration_s', 0)):.2f} s</td>"
        f"<td class='{cls}'>{esc(shown)}</td><td class='rerun'>{code}</td></tr>"
    )


def drift_section(rows: list[dict], indices: list[int]) -> str:
    """Drift curves of multi-step cases that did not fail (failures carry their own)."""
    if not indices:
        return ""
    blocks = [
        f'<details id="drift-{i}"><summary>{_badge(rows[i])} {esc(rows[i].get("id"))}</summary>'
        f"{drift_block(rows[i])}</details>"
        for i in indices
    ]
    return "<h2>Drift of multi-step cases</h2>" + "".join(blocks)


def render(rows: list[dict], meta: dict | None = None, run: str = "", partial: bool = False) -> str:
    """The whole page as a string (well-formed XML after the doctype)."""
    meta = meta or {}
    failing = [i for i, r in enumerate(rows) if r.get("status") in FAILING]
    failed = set(failing)
    drifting = [i for i, r in enumerate(rows) if r.get("drift") and i not in failed]
    anchors = {i: f"case-{i}" for i in failing} | {i: f"drift-{i}" for i in drifting}
    budget = [MAX_HEATMAPS_PAGE]
    sections = [header(rows, meta, run, partial), BUTTONS]
    if failing:  # failures and their details first: they are what the reader came for
        sections.append("<h2>Failing cases</h2>")
        sections += [
            failure_section(i, rows[i], budget, n < OPEN_SECTIONS) for n, i in enumerate(failing)
        ]
    sections += [case_table(rows, anchors), drift_section(rows, drifting)]
    return _page(run + (" (partial)" if partial else ""), "".join(sections))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>gdn-harness {esc(title)}</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head>"
        f"<body>{body}</body></html>\n"
    )


def write_html(
    report_dir: str | Path,
    rows: list[dict] | None = None,
    meta: dict | None = None,
    partial: bool = False,
) -> Path:
    """Write ``report_dir/report.html`` from ``rows`` (default: its results.jsonl)."""
    report_dir = Path(report_dir)
    if rows is None:
        rows = read_results(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / REPORT_HTML
    path.write_text(render(rows, meta, report_dir.name, partial), encoding="utf-8")
    return path
