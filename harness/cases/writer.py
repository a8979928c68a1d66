"""Writing a ``CaseSpec`` back as a YAML case file (the fuzzer's regressions)."""

from __future__ import annotations

import re
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


def _changed(obj: Any, default: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if v != getattr(default, k)}


def case_to_yaml(spec: CaseSpec, comment: str = "") -> str:
    """YAML text of a one-case file that loads back to ``spec``.

    Every field is written out (not just non-defaults) so that a regression
    file keeps meaning the same case if a default changes later. A matrix
    variant's brackets are not valid in a name and become '_'.
    """
    name = spec.name
    if not re.fullmatch(NAME_RE, name):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).rstrip("_") or "case"
    case: dict[str, Any] = {"name": name}
    case.update({k: getattr(spec, k) for k in (*SIZE_FIELDS, "pool", *SCALAR_FIELDS)})
    case["layout"] = dict(vars(spec.layout))
    slots = dict(vars(spec.slots))
    if slots["indices"] is None:
        del slots["indices"]
    else:
        slots["indices"] = list(slots["indices"])
    case["slots"] = slots
    case["values"] = dict(vars(spec.values))
    if spec.scale is not None:
        case["scale"] = spec.scale
    case.update({k: getattr(spec, k) for k in TAIL_FIELDS})
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
    if spec.overrides:
        case["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.overrides}
    body = yaml.dump({"cases": [case]}, Dumper=_Dumper, sort_keys=False, allow_unicode=False)
    header = "".join(f"# {ln}".rstrip() + "\n" for ln in comment.splitlines())
    return header + body


def same_case(a: CaseSpec, b: CaseSpec) -> bool:
    """Equal as cases: ignores where they were written (file, line, field_lines)."""
    blank = {"file": "", "line": 0, "field_lines": ()}
    return replace(a, **blank) == replace(b, **blank)
