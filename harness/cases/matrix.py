"""Matrix expansion: one case with ``matrix:`` becomes the product of its values.

Each key of ``matrix`` is a field (dotted keys reach into nested maps), each
value a list; every combination is a variant named ``name[v1-v2]``. Ids use
the values themselves where they are unique and readable, ``key=value``
where values of different keys collide, and ``key<i>`` for lists and maps.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from harness.cases.errors import DocProblem, shown
from harness.cases.limits import MAX_VALUES, MAX_VARIANTS
from harness.cases.yamlfile import LineMap, clone, count_values, merge


@dataclass
class Variant:
    """One expanded case before it becomes a CaseSpec."""

    name: str | None  # None when the case has no (valid) name: the schema reports it
    line: int
    tree: LineMap


def _value_label(value: Any) -> str | None:
    """Readable id part for a scalar matrix value (None for lists and maps)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return None
    label = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(value))
    return label or "empty"


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that is unique among the keys."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if sum(k == short or k.endswith("." + short) for k in keys) == 1:
                break
        out[key] = short
    return out


def _matrix_labels(matrix: LineMap) -> dict[str, list[str]]:
    """Id parts for every matrix value; ``key=value`` where values collide across keys."""
    keys = list(matrix)
    short = _short_keys(keys)
    labels = {}
    for key in keys:
        raw = [_value_label(v) for v in matrix[key]]
        labels[key] = [f"{short[key]}{i}" if lab is None else lab for i, lab in enumerate(raw)]
    clashing = [
        key
        for key in keys
        if set(labels[key]) & {lab for k in keys if k != key for lab in labels[k]}
    ]
    for key in clashing:
        labels[key] = [f"{short[key]}={lab}" for lab in labels[key]]
    return labels


def _set_path(tree: LineMap, parts: list[str], value: Any, line: int) -> str | None:
    """Apply one matrix value; returns an error message or None."""
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = LineMap(line)
            node[part], node.key_lines[part] = child, line
        elif not isinstance(child, LineMap):
            return f"'{'.'.join(parts[: i + 1])}' is not a mapping"
        node = child
    last = parts[-1]
    if isinstance(value, LineMap) and isinstance(node.get(last), LineMap):
        node[last] = merge(node[last], value)
    else:
        node[last] = clone(value)
    node.key_lines[last] = line
    return None


def expand(raw: LineMap, index: int, base: LineMap) -> list[Variant]:
    """The variants of case ``index`` (``raw`` as written, ``base`` merged over
    the defaults): the case itself, or its matrix product. DocProblem on error."""
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    matrix = raw.get("matrix")
    if matrix is None:
        return [Variant(name, raw.line, base)]
    for key in matrix:
        if key.split(".")[0] in ("name", "matrix"):
            raise DocProblem(("cases", index, "matrix", key), f"the matrix cannot vary '{key}'")
    labels = _matrix_labels(matrix)
    _check_labels(matrix, index, labels)
    ranges = [range(len(values)) for values in matrix.values()]
    if math.prod(map(len, ranges)) > MAX_VARIANTS:
        count = " x ".join(str(len(r)) for r in ranges)
        msg = f"expands to {count} variants, more than {MAX_VARIANTS}"
        raise DocProblem(("cases", index, "matrix"), msg)
    combos = [dict(zip(matrix, c, strict=True)) for c in itertools.product(*ranges)]
    ids = _variant_ids(combos, labels, keyed=False)
    if len(set(ids)) < len(ids):  # e.g. '-' inside values: fall back to key=value
        ids = _variant_ids(combos, labels, keyed=True)
    variants = []
    for combo, vid in zip(combos, ids, strict=True):
        tree = clone(base)
        for key, i in combo.items():
            msg = _set_path(tree, key.split("."), matrix[key][i], matrix[key].item_lines[i])
            if msg:
                raise DocProblem(("cases", index, "matrix", key), msg)
        variants.append(Variant(None if name is None else f"{name}[{vid}]", raw.line, tree))
    return variants


def variant_count(raw: LineMap) -> int:
    """How many variants a case as written expands to."""
    matrix = raw.get("matrix")
    if not isinstance(matrix, dict):
        return 1
    return math.prod(len(v) if isinstance(v, list) else 1 for v in matrix.values())


def check_expanded_size(cases: list, defaults: LineMap) -> None:
    """DocProblem where the variants of all cases, each with the defaults
    merged in, would hold more than ``MAX_VALUES``: counted before any is built."""
    total, under_defaults = 0, count_values(defaults)
    for index, raw in enumerate(cases):
        matrix = raw.get("matrix") if isinstance(raw, dict) else None
        count = variant_count(raw) if isinstance(raw, dict) else 1
        size = under_defaults + count_values(raw)
        if isinstance(matrix, dict):  # each variant holds one value of each key
            size += len(matrix) - count_values(matrix)
        total += count * size
        if total > MAX_VALUES:
            where = ("cases", index, "matrix") if count > 1 else ("cases", index)
            what = f"{count} variants of about {size} values" if count > 1 else f"{size} values"
            limit = f"the {MAX_VALUES} values a case file may hold"
            raise DocProblem(where, f"expands to {what}, which takes the file past {limit}")


def _variant_ids(combos: list[dict[str, int]], labels: dict[str, list[str]], keyed: bool):
    short = _short_keys(list(labels))
    return [
        "-".join(
            f"{short[k]}={labels[k][i]}" if keyed and "=" not in labels[k][i] else labels[k][i]
            for k, i in combo.items()
        )
        for combo in combos
    ]


def _check_labels(matrix: LineMap, index: int, labels: dict[str, list[str]]) -> None:
    for key, labs in labels.items():
        for i, lab in enumerate(labs):
            if lab in labs[:i]:
                path = ("cases", index, "matrix", key, i)
                msg = f"repeats the value {shown(matrix[key][i])} (variant ids must be unique)"
                raise DocProblem(path, msg)
