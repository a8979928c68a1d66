"""``summary.md`` (ready to append to a CI job summary) and ``errors.md``."""

from __future__ import annotations

from harness.report.failures import first_failure
from harness.report.text import md_code, md_text

FAILING = ("failed", "crashed")


def summary_markdown(rows: list[dict], summary: dict) -> str:
    c = summary["counts"]
    impl, base, device = (md_text(summary.get(k, "?")) for k in ("impl", "baseline", "device"))
    head = [
        f"## gdn-harness: {impl} (baseline: {base}) on {device}",
        "",
        *_partial_note(summary),
        f"**{c['passed']} passed, {c['failed']} failed, {c['crashed']} crashed, "
        f"{c['skipped']} skipped** of {summary['total']} cases "
        f"({summary['duration_s']:.1f} s in cases)",
        "",
    ]
    failing = [r for r in rows if r["status"] in FAILING]
    if failing:
        head += ["| case | status | first failure | rerun |", "|---|---|---|---|"]
        head += [_failure_row(r) for r in failing]
        head.append("")
    drift = [r for r in rows if r["drift"]]
    if drift:
        head += ["### Drift of the carried state (max abs vs exact float64 trajectory)", ""]
        head += [
            "| case | impl | steps | final state drift | final out drift |",
            "|---|---|---|---|---|",
        ]
        for r in drift:
            for who in dict.fromkeys(d["who"] for d in r["drift"]):
                last = [d for d in r["drift"] if d["who"] == who][-1]
                head.append(
                    f"| {md_code(r['id'])} | {md_text(who)} | {last['step'] + 1} | "
                    f"{_fmt(last['state_max_abs'])} | {_fmt(last['out_max_abs'])} |"
                )
        head.append("")
    return "\n".join(head)


def _failure_row(r: dict) -> str:
    """A failing case: full id and line, the checks that failed, its first fact whole
    (as the console says it: check, implementation, quantity, steps), the rerun command."""
    checks = ", ".join(dict.fromkeys(v["check"] for v in r["violations"]))
    status = f"{r['status']} ({md_text(checks)})" if checks else r["status"]
    return (
        f"| {md_code(r['id'])} (line {r['line']}) | {status} | {md_text(first_failure(r))} "
        f"| {md_code(r['rerun'])} |"
    )


def _partial_note(summary: dict) -> list[str]:
    if not summary.get("partial"):
        return []
    return [
        f"> **Partial run:** it ended before every selected case ran; these are the "
        f"{summary['total']} cases it recorded.",
        "",
    ]


def _fmt(x) -> str:
    return x if isinstance(x, str) else f"{x:.3g}"


def errors_markdown(rows: list[dict]) -> str:
    """Largest errors per failing case and pair (over all steps), worst element vs its
    bound; a pair that is only reported (implementation vs implementation) has no bound."""
    failing = [r for r in rows if r["status"] in FAILING]
    if not failing:
        return "### Largest errors per failing case\n\nNo case failed.\n"
    out = [
        "### Largest errors per failing case",
        "",
        "| case | pair | out max abs | out worst/bound | state max abs | state worst/bound |",
        "|---|---|---|---|---|---|",
    ]
    for r in failing:
        pairs = _largest(r.get("stats", []))
        if not pairs:
            out.append(f"| {md_code(r['id'])} | - | - | - | - | - |")
        for pair, q in pairs.items():
            o, s_ = q.get("out", {}), q.get("state", {})
            out.append(
                f"| {md_code(r['id'])} | {md_text(pair)} | {_fmt(o.get('max_abs', '-'))} | "
                f"{_ratio(o)} | {_fmt(s_.get('max_abs', '-'))} | {_ratio(s_)} |"
            )
    return "\n".join(out) + "\n"


def _largest(stats: list[dict]) -> dict[str, dict[str, dict]]:
    """Per pair and quantity, the step with the worst ratio (the largest error when
    the pair is only reported)."""
    pairs: dict[str, dict[str, dict]] = {}
    for st in stats:
        rank = "worst_ratio" if st.get("checked", True) else "max_abs"
        cur = pairs.setdefault(st["pair"], {}).get(st["quantity"])
        if cur is None or _key(st[rank]) > _key(cur[rank]):
            pairs[st["pair"]][st["quantity"]] = st
    return pairs


def _ratio(st: dict) -> str:
    return _fmt(st["worst_ratio"]) if st and st.get("checked", True) else "-"


def _key(x) -> float:
    return float(x) if not isinstance(x, str) else float("inf")
