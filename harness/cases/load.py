"""Loading case files: YAML text to validated, expanded ``CaseSpec`` objects.

The steps, each in its own module: parse with lines (``yamlfile``), check
the document against the schema (``schema``), merge ``defaults`` under each
case and expand its ``matrix`` (``matrix``), check each variant against the
case schema, build the ``CaseSpec`` and check the rules the schema cannot
express (``semantics``). Every mistake becomes a ``CaseFileError`` naming
the file, the case, the field and the YAML line. Loading never allocates
tensors: huge cases are refused from a size estimate.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from harness.cases.discover import display_path, iter_case_files
from harness.cases.errors import CaseFileError, DocProblem, StrPath
from harness.cases.limits import MAX_FILE_BYTES, TierLimits
from harness.cases.matrix import Variant, check_expanded_size, expand
from harness.cases.schema import SCALAR_FIELDS, SIZE_FIELDS, first, schema_errors
from harness.cases.semantics import nonfinite, semantic_problem
from harness.cases.yamlfile import (
    LineMap,
    LineSeq,
    clone,
    dotted,
    first_bad_key,
    get,
    line_at,
    merge,
    parse,
    walk_lines,
)
from harness.core.spec import CaseSpec, ExpectError, LayoutSpec, SlotSpec, Tolerance, ValueSpec


def _read(path: StrPath, file: str) -> str:
    """The file's text: at most ``MAX_FILE_BYTES`` of UTF-8 without control characters."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            size = max(os.path.getsize(path), len(data))
            mib = f"{size / (1 << 20):.1f} MiB"
            msg = f"is {mib}, over the {MAX_FILE_BYTES >> 20} MiB limit of a case file"
            raise CaseFileError(file, None, None, None, msg)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(file, None, None, None, f"cannot read: {exc}") from None
    bad = _NON_PRINTABLE.search(text)
    if bad:
        raise _control_character(file, text, bad.start())
    return text


# What YAML accepts as text (PyYAML's reader refuses the rest with a traceback).
_NON_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _control_character(file: str, text: str, at: int) -> CaseFileError:
    """The error for a control character at offset ``at``, located in the document."""
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    msg = f"control character U+{ord(text[at]):04X} at column {column} (case files are text)"
    try:
        doc = parse(_NON_PRINTABLE.sub("\ufffd", text), file)
    except CaseFileError:
        doc = None
    path = _path_on_line(doc, line)
    if path is None:
        return CaseFileError(file, None, None, line, msg)
    return _doc_error(file, doc, path, msg, line)


def _path_on_line(doc: Any, line: int) -> tuple | None:
    """The deepest key or item written on ``line``, if any."""
    if not isinstance(doc, LineMap):
        return None
    hits = [p for p, ln in walk_lines(doc) if ln == line]
    return max(hits, key=len) if hits else None


def _doc_error(file: str, doc: Any, path: tuple, message: str, line: int | None = None):
    """A CaseFileError for a path in the raw document (``('cases', 2, 'B')``)."""
    line = line if line is not None else line_at(doc, path)
    cases = doc.get("cases")
    if len(path) >= 2 and path[0] == "cases" and isinstance(cases, list):
        raw = cases[path[1]]
        case = raw.get("name") if isinstance(raw, dict) else None
        case = case if isinstance(case, str) else None
        field = dotted(path[2:]) or dotted(path)  # the item itself: 'cases[3]'
        return CaseFileError(file, case, field, line, message)
    return CaseFileError(file, None, dotted(path) or None, line, message)


def _check_document(doc: Any, file: str) -> None:
    """Structure of the whole file: a mapping with ``cases``, no duplicate keys, schema."""
    if not isinstance(doc, LineMap):
        what = "empty" if doc is None else "a list" if isinstance(doc, LineSeq) else repr(doc)
        line = getattr(doc, "line", 1)
        raise CaseFileError(file, None, None, line, f"must be a mapping with 'cases' (got {what})")
    dup = first_bad_key(doc)
    if dup:
        raise _doc_error(file, doc, dup[0], dup[1], dup[2])
    errors = schema_errors(doc, None)
    if errors:
        path, message, line = first(errors)
        raise _doc_error(file, doc, path, message, line)


def _floats(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
        for k, v in d.items()
    }


def _tolerance(d: Mapping[str, Any] | None) -> Tolerance:
    return Tolerance(**_floats(d or {}))


def _build(file: str, v: Variant) -> CaseSpec:
    """A CaseSpec from a schema-valid variant tree (types normalised for equality)."""
    t = v.tree
    slots = dict(t.get("slots", {}))
    if slots.get("indices") is not None:
        slots["indices"] = tuple(int(i) for i in slots["indices"])
    if "pad_seed" in slots:
        slots["pad_seed"] = int(slots["pad_seed"])
    if "pad_fraction" in slots:
        slots["pad_fraction"] = float(slots["pad_fraction"])
    layout = {
        k: (val if isinstance(val, (bool, str)) else int(val))
        for k, val in t.get("layout", {}).items()
    }
    tol = t.get("tolerance", {})
    expect = t.get("expect")
    sizes = {k: int(t[k]) for k in SIZE_FIELDS}
    return CaseSpec(
        file=file,
        name=v.name,
        line=v.line,
        **sizes,
        pool=int(t.get("pool", sizes["B"])),
        **{k: t[k] for k in SCALAR_FIELDS if k in t},
        layout=LayoutSpec(**layout),
        slots=SlotSpec(**slots),
        values=ValueSpec(**_floats(t.get("values", {}))),
        scale=None if t.get("scale") is None else float(t["scale"]),
        steps=int(t.get("steps", 1)),
        seed=int(t.get("seed", 0)),
        tier=t.get("tier", "cpu"),
        tol_out=_tolerance(tol.get("out")),
        tol_state=_tolerance(tol.get("state")),
        expect=None if expect is None else ExpectError(**_expect_args(expect)),
        overrides=tuple(sorted(_overrides(t.get("overrides", {})))),
        field_lines=tuple(sorted((dotted(p), ln) for p, ln in walk_lines(t))),
    )


def _overrides(d: Mapping[str, Any]) -> Iterator[tuple[str, object]]:
    """Override items, lists made tuples so that the frozen CaseSpec stays hashable."""
    for key, value in d.items():
        yield key, tuple(value) if isinstance(value, list) else value


def _expect_args(expect: Mapping[str, Any]) -> dict[str, str]:
    args = {"match": expect["error"]}
    if "exception" in expect:
        args["exception"] = expect["exception"]
    return args


def _variant_spec(file: str, v: Variant, limits: TierLimits) -> CaseSpec:
    """Validate one variant against the case schema and the semantic rules."""
    case = v.name
    errors = schema_errors(v.tree, "case")
    if errors:
        path, message, line = first(errors)
        raise CaseFileError(file, case, dotted(path) or None, line, message)
    bad = nonfinite(v.tree)
    if bad is not None:
        value = get(v.tree, bad)
        raise CaseFileError(
            file, case, dotted(bad), line_at(v.tree, bad), f"must be finite (got {value})"
        )
    spec = _build(file, v)
    problem = semantic_problem(spec, limits)
    if problem:
        field, message = problem
        line = spec.line if field is None else spec.line_of(field)
        raise CaseFileError(file, case, field, line, message)
    return spec


def load_file(
    path: StrPath,
    *,
    memory_limits: Mapping[str, int] | None = None,
    work_limits: Mapping[str, int] | None = None,
) -> list[CaseSpec]:
    """All cases of one YAML file, expanded and validated; CaseFileError on any problem.

    ``memory_limits`` and ``work_limits`` replace the default limits of the
    tiers they name (``harness.cases.limits``).
    """
    file = display_path(path)
    limits = TierLimits.with_changes(memory_limits, work_limits)
    doc = parse(_read(path, file), file)
    _check_document(doc, file)
    defaults = doc.get("defaults", LineMap(doc.line))
    try:
        check_expanded_size(doc["cases"], defaults)
    except DocProblem as exc:
        raise _doc_error(file, doc, exc.path, exc.message) from None
    specs: list[CaseSpec] = []
    first_line: dict[str, int] = {}
    for index, raw in enumerate(doc["cases"]):
        name = raw.get("name")
        if isinstance(name, str) and name in first_line:
            msg = f"duplicate case name (first on line {first_line[name]})"
            raise _doc_error(file, doc, ("cases", index, "name"), msg)
        if isinstance(name, str):
            first_line[name] = raw.key_lines["name"]
        body = clone(raw)
        body.pop("matrix", None)
        base = merge(defaults, body)
        try:
            variants = expand(raw, index, base)
        except DocProblem as exc:
            raise _doc_error(file, doc, exc.path, exc.message) from None
        for variant in variants:
            specs.append(_variant_spec(file, variant, limits))
    return specs


def load_paths(
    paths: Sequence[StrPath],
    *,
    memory_limits: Mapping[str, int] | None = None,
    work_limits: Mapping[str, int] | None = None,
) -> list[CaseSpec]:
    """Cases of every file under ``paths``, in deterministic order."""
    out: list[CaseSpec] = []
    for file in iter_case_files(paths):
        out.extend(load_file(file, memory_limits=memory_limits, work_limits=work_limits))
    return out
