"""Writing a ``CaseSpec`` back as a YAML case file (the fuzzer's regressions)."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from typing import Any

import yaml

from harness.cases.schema import NAME_RE, SCALAR_FIELDS, SIZE_FIELDS, TAIL_FIELDS
from harness.cases.yamlfile import yaml12_floats
from harness.core.spec import CaseSpec, Tolerance


class _Dumper(yaml.SafeDumper):
    """Quotes strings that the loader would read back as something else."""

    def represent_list(self, data: list) -> yaml.Node:
        flow = all(not isinstance(x, (dict, list)) for x in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


yaml12_floats(_Dumper)
_Dumper.add_representer(list, _Dumper.represent_list)


COMMENT_WIDTH = 88  # columns of a header comment line, "# " included


def _changed(obj: Any, default: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if v != getattr(default, k)}


def _fields(obj: Any, default: Any, full: bool) -> dict[str, Any]:
    return dict(vars(obj)) if full else _changed(obj, default)


def case_to_yaml(spec: CaseSpec, comment: str = "", *, full: bool = False) -> str:
    """YAML text of a one-case file that loads back to ``spec``.

    Only what differs from the defaults is written (the name and the sizes
    always), so that a saved case reads as what it is about; ``full=True``
    writes every field, for a text that keeps its meaning whatever the
    defaults. ``comment`` becomes the header, each line wrapped at word
    boundaries (never cut). A matrix variant's brackets are not valid in a
    name and become '_'.
    """
    name = spec.name
    if not re.fullmatch(NAME_RE, name):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).rstrip("_") or "case"
    default = CaseSpec(file="", name="", line=0, B=spec.B, H=1, HV=1, K=1, V=1, pool=spec.B)
    case: dict[str, Any] = {"name": name, **{k: getattr(spec, k) for k in SIZE_FIELDS}}
    case.update(_top(spec, default, ("pool", *SCALAR_FIELDS), full))
    nested = (("layout", spec.layout, default.layout), ("slots", spec.slots, default.slots))
    for key, obj, base in (*nested, ("values", spec.values, default.values)):
        fields = _fields(obj, base, full)
        if key == "slots" and "indices" in fields:
            indices = fields.pop("indices")
            fields = {"indices": list(indices), **fields} if indices is not None else fields
        if fields or full:
            case[key] = fields
    if spec.scale is not None:
        case["scale"] = spec.scale
    case.update(_top(spec, default, TAIL_FIELDS, full))
    tol = {
        k: _changed(t, Tolerance()) for k, t in (("out", spec.tol_out), ("state", spec.tol_state))
    }
    tol = {k: v for k, v in tol.items() if v}
    if tol:
        case["tolerance"] = tol
    if spec.expect is not None:
        case["expect"] = {"error": spec.expect.match}
        if spec.expect.exception != "ValueError":
            case["expect"]["exception"] = spec.expect.exception
    if spec.conventions:
        case["conventions"] = dict(spec.conventions)
    if spec.overrides:
        case["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.overrides}
    body = yaml.dump({"cases": [case]}, Dumper=_Dumper, sort_keys=False, allow_unicode=False)
    return comment_lines(comment) + body


def _top(spec: CaseSpec, default: CaseSpec, keys: tuple[str, ...], full: bool) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in keys if full or getattr(spec, k) != getattr(default, k)}


def comment_lines(text: str, width: int = COMMENT_WIDTH) -> str:
    """``text`` as YAML comment lines, each wrapped at word boundaries to ``width``
    columns; continuation lines are indented two more than the line they continue."""
    out = []
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        wrapped = textwrap.wrap(
            line.strip(),
            width=max(20, width - 2),
            initial_indent=indent,
            subsequent_indent=indent + "  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        out += [f"# {w}".rstrip() for w in wrapped or [""]]
    return "".join(f"{ln}\n" for ln in out)


def same_case(a: CaseSpec, b: CaseSpec) -> bool:
    """Equal as cases: ignores where they were written (file, line, field_lines)."""
    blank = {"file": "", "line": 0, "field_lines": ()}
    return replace(a, **blank) == replace(b, **blank)
