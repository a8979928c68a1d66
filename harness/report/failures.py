"""A failing case's violations, grouped so that each fact is said once.

A case records one violation per check, implementation and step: a 12-step
case with wrong values fails four checks at every step, 48 lines that repeat
the implementation, the step and the tolerance. Grouped, it is one heading
per (check, implementation) and one line per quantity, with the steps as
ranges, the first and the worst step, and the tolerance said once.

Works on results.jsonl rows (``CaseResult.to_dict()``): value violations are
read from the row's error statistics, drift violations from their message;
any other check groups identical messages over their steps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.report.text import fmt, sort_key

MAX_MESSAGES = 4  # distinct messages shown per group of another check; the rest counted
MAX_RANGES = 6  # step ranges written out before the list is summarised
_DRIFT = re.compile(r"^(out|state) drift (\S+) from the exact trajectory exceeds (.+)$")
_DRIFT_CLAUSE = re.compile(r";\s*drift <=[^;]*$")


@dataclass
class Fact:
    """One line: a quantity (or a message) of a check, over the steps it failed at."""

    label: str  # "out", "state", or "" for a message of another check
    steps: list[int]
    text: str
    more: list[str] = field(default_factory=list)  # continuation lines (tolerance, traceback)

    def when(self, multi: bool) -> str:
        """``steps 0-11: `` in a multi-step case; nothing where every step is step 0."""
        if not multi or not self.steps:
            return ""
        word = "step" if len(set(self.steps)) == 1 else "steps"
        return f"{word} {step_ranges(self.steps)}: "


@dataclass
class Group:
    """Every violation of one check by one implementation (or pair)."""

    check: str
    who: str
    facts: list[Fact] = field(default_factory=list)
    hidden: int = 0  # distinct messages not shown

    @property
    def title(self) -> str:
        return f"[{self.check}] {self.who}"


def step_ranges(steps: Iterable[int]) -> str:
    """``0-11``, ``0-3, 5, 7-9``; a long scattered list ends with its count."""
    ordered = sorted(set(steps))
    ranges: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        ranges.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    if len(ranges) > MAX_RANGES:
        ranges = [*ranges[: MAX_RANGES - 1], f"... ({len(ordered)} steps up to {ordered[-1]})"]
    return ", ".join(ranges)


def tolerance_text(tol: object) -> str:
    """The element tolerance of a value check, without the drift budget's clause."""
    return _DRIFT_CLAUSE.sub("", str(tol))


def _failing_stats(row: dict) -> dict[str, dict]:
    """Failing checked stats by the message prefix their violation starts with."""
    out = {}
    for s in row.get("stats", []):
        if not s.get("ok", True):
            out[f"{s.get('quantity')} {s.get('pair')} step {s.get('step')}: "] = s
    return out


def _stat_of(message: str, stats: dict[str, dict]) -> dict | None:
    head = message.split(": ", 1)[0] + ": "
    return stats.get(head)


def _value_fact(quantity: str, stats: list[dict], multi: bool) -> Fact:
    """Over-tolerance counts at the first failing step, the worst element over all."""
    stats = sorted(stats, key=lambda s: int(s.get("step", 0)))
    first = stats[0]
    worst = max(stats, key=lambda s: sort_key(s.get("worst_ratio")))
    count = f"{first.get('over')}/{first.get('n')} over tolerance"
    if first.get("nan") or first.get("inf"):
        count += f" ({first.get('nan')} NaN, {first.get('inf')} Inf)"
    text = f"{count} at step {first.get('step')}" if multi and len(stats) > 1 else count
    where = f"at step {worst.get('step')}, " if multi and len(stats) > 1 else "at "
    text += f"; worst {fmt(worst.get('worst_ratio'))}x bound {where}{worst.get('worst_at')}"
    if worst.get("worst_value"):
        got, want = worst["worst_value"]
        text += f" (got {fmt(got)}, want {fmt(want)})"
    more = [f"tol {tolerance_text(first.get('tolerance'))}"]
    return Fact(quantity, [int(s.get("step", 0)) for s in stats], text, more)


def _drift_fact(quantity: str, found: list[tuple[int, re.Match[str]]], multi: bool) -> Fact:
    """The first step's drift against its budget, and the largest drift."""
    step0, first = found[0]
    at = f" at step {step0}" if multi and len(found) > 1 else ""
    text = f"{first.group(2)}{at}, over {first.group(3)}"
    stepw, worst = max(found, key=lambda f: sort_key(f[1].group(2)))
    if stepw != step0:
        text += f"; largest {worst.group(2)} at step {stepw}"
    return Fact(quantity, [s for s, _ in found], text)


def _message_facts(group: Group, violations: list[dict]) -> None:
    """Identical messages over their steps; at most MAX_MESSAGES distinct ones."""
    by_text: dict[str, list[int]] = {}
    for v in violations:
        steps = by_text.setdefault(str(v.get("message", "")), [])
        if v.get("step") is not None:
            steps.append(int(v["step"]))
    for i, (message, steps) in enumerate(by_text.items()):
        if i == MAX_MESSAGES:
            group.hidden = len(by_text) - MAX_MESSAGES
            break
        head, *rest = message.split("\n")
        group.facts.append(Fact("", steps, head, rest))


def group_violations(row: dict) -> list[Group]:
    """The row's violations as groups, in the order each (check, who) first failed."""
    multi = int(row.get("steps", 1) or 1) > 1
    stats = _failing_stats(row)
    buckets: dict[tuple[str, str], list[dict]] = {}
    for v in row.get("violations", []):
        buckets.setdefault((str(v.get("check")), str(v.get("who"))), []).append(v)
    groups = []
    for (check, who), vs in buckets.items():
        group = Group(check, who)
        rest = vs
        if check == "values":
            rest = _values_into(group, vs, stats, multi)
        elif check == "drift":
            rest = _drift_into(group, vs, multi)
        _message_facts(group, rest)
        groups.append(group)
    return groups


def _values_into(group: Group, vs: list[dict], stats: dict[str, dict], multi: bool) -> list[dict]:
    """Facts from the stats behind value violations; the violations without one."""
    per: dict[str, list[dict]] = {}
    pairs, rest = set(), []
    for v in vs:
        s = _stat_of(str(v.get("message", "")), stats)
        if s is None:
            rest.append(v)
            continue
        per.setdefault(str(s.get("quantity")), []).append(s)
        pairs.add(str(s.get("pair")))
    group.facts += [_value_fact(q, ss, multi) for q, ss in per.items()]
    if pairs == {f"{group.who} vs oracle"}:
        group.who = f"{group.who} vs oracle"
    return rest


def _drift_into(group: Group, vs: list[dict], multi: bool) -> list[dict]:
    per: dict[str, list[tuple[int, re.Match[str]]]] = {}
    rest = []
    for v in vs:
        m = _DRIFT.match(str(v.get("message", "")))
        if m is None or v.get("step") is None:
            rest.append(v)
            continue
        per.setdefault(m.group(1), []).append((int(v["step"]), m))
    group.facts += [_drift_fact(q, found, multi) for q, found in per.items()]
    if per:
        group.who += ", from the exact trajectory"
    return rest


def first_failure(row: dict) -> str:
    """One line for a summary table beside the checks that failed: a crash's reason,
    else the first grouped fact (``impl vs oracle: out steps 0-11: 128/128 over ...``)."""
    if row.get("status") == "crashed" and row.get("reason"):
        return str(row["reason"]).split("\n", 1)[0]
    groups = group_violations(row)
    if not groups or not groups[0].facts:
        return ""
    multi = int(row.get("steps", 1) or 1) > 1
    fact = groups[0].facts[0]
    label = f"{fact.label} " if fact.label else ""
    return f"{groups[0].who}: {label}{fact.when(multi)}{fact.text}"


def checks_failed(row: dict) -> str:
    """The checks that failed, in order, the value check with its worst ratio:
    ``values 9.7e+04x bound, drift`` or ``padding``."""
    names = list(dict.fromkeys(str(v.get("check")) for v in row.get("violations", [])))
    worst = max(
        (sort_key(s.get("worst_ratio")) for s in _failing_stats(row).values()), default=None
    )
    return ", ".join(
        f"{c} {fmt(worst)}x bound" if c == "values" and worst is not None else c for c in names
    )


def worst_ratio(row: dict) -> float:
    """The largest element error over its bound among the checked comparisons."""
    vals = [sort_key(s.get("worst_ratio")) for s in row.get("stats", []) if s.get("checked", True)]
    return max(vals, default=0.0)
