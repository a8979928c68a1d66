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
from dataclasses import dataclass, field
from typing import Any

from harness.cases.discover import display_path, iter_case_files
from harness.cases.errors import CaseFileError, DocProblem, StrPath
from harness.cases.limits import MAX_FILE_BYTES, TierLimits
from harness.cases.matrix import Variant, check_expanded_size, expand
from harness.cases.schema import SCALAR_FIELDS, SIZE_FIELDS, first, problem_order, schema_errors
from harness.cases.semantics import nonfinite, semantic_problem
from harness.cases.yamlfile import (
    LineMap,
    LineSeq,
    bad_keys,
    clone,
    dotted,
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


def _check_structure(doc: Any, file: str) -> LineMap:
    """The whole file must be a mapping (with ``cases``: the schema says so)."""
    if not isinstance(doc, LineMap):
        what = "empty" if doc is None else "a list" if isinstance(doc, LineSeq) else repr(doc)
        line = getattr(doc, "line", 1)
        raise CaseFileError(file, None, None, line, f"must be a mapping with 'cases' (got {what})")
    return doc


def _document_errors(doc: LineMap, file: str) -> list[tuple[tuple, CaseFileError]]:
    """Every repeated or non-string key and every schema error of the whole file,
    with its path; repeated keys first (YAML silently keeps the last of them)."""
    found = [(path, _doc_error(file, doc, path, msg, ln)) for path, msg, ln in bad_keys(doc)]
    for path, message, line in sorted(schema_errors(doc, None), key=problem_order):
        found.append((path, _doc_error(file, doc, path, message, line)))
    return found


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
        conventions=tuple(sorted(t.get("conventions", {}).items())),
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


@dataclass
class Collected:
    """What loading files found: the valid cases, and every error (none: all valid)."""

    specs: list[CaseSpec] = field(default_factory=list)
    errors: list[CaseFileError] = field(default_factory=list)

    @property
    def bad_files(self) -> list[str]:
        """The files with at least one error, in the order their errors come."""
        return list(dict.fromkeys(e.file for e in self.errors))

    def add(self, other: Collected) -> None:
        self.specs.extend(other.specs)
        self.errors.extend(other.errors)


def collect_file(
    path: StrPath,
    *,
    memory_limits: Mapping[str, int] | None = None,
    work_limits: Mapping[str, int] | None = None,
) -> Collected:
    """Every valid case of one file, and every error in it, in file order.

    A file that cannot be read or parsed, or whose top level or defaults are
    wrong, has one error (or its top-level errors) and no cases. Otherwise
    each bad case contributes its first error (a case's matrix variants
    share their fields) and the other cases are loaded. ``memory_limits``
    and ``work_limits`` replace the default limits of the tiers they name
    (``harness.cases.limits``).
    """
    file = display_path(path)
    try:
        doc = _check_structure(parse(_read(path, file), file), file)
    except CaseFileError as exc:
        return Collected([], [exc])
    found = _document_errors(doc, file)
    if any(not _in_a_case(p) for p, _ in found):
        return Collected([], [e for _, e in found])
    defaults = doc.get("defaults", LineMap(doc.line))
    try:
        check_expanded_size(doc["cases"], defaults)
    except DocProblem as exc:
        return Collected([], [_doc_error(file, doc, exc.path, exc.message)])
    limits = TierLimits.with_changes(memory_limits, work_limits)
    out = Collected([], [e for _, e in found])
    bad = {p[1] for p, _ in found}
    first_line: dict[str, int] = {}
    for index in range(len(doc["cases"])):
        try:
            _check_name(file, doc, index, first_line)
            if index not in bad:
                out.specs.extend(_case_specs(file, doc, index, defaults, limits))
        except CaseFileError as exc:
            out.errors.append(exc)
    out.errors.sort(key=lambda e: e.line or 0)
    return out


def _in_a_case(path: tuple) -> bool:
    return len(path) >= 2 and path[0] == "cases" and isinstance(path[1], int)


def _check_name(file: str, doc: LineMap, index: int, first_line: dict[str, int]) -> None:
    """Case names are unique in a file: the second use is the error."""
    raw = doc["cases"][index]
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and name in first_line:
        msg = f"duplicate case name (first on line {first_line[name]})"
        raise _doc_error(file, doc, ("cases", index, "name"), msg)
    if isinstance(name, str):
        first_line[name] = raw.key_lines["name"]


def _case_specs(
    file: str, doc: LineMap, index: int, defaults: LineMap, limits: TierLimits
) -> list[CaseSpec]:
    """The validated variants of one case (CaseFileError for the first bad one)."""
    raw = doc["cases"][index]
    body = clone(raw)
    body.pop("matrix", None)
    try:
        variants = expand(raw, index, merge(defaults, body))
    except DocProblem as exc:
        raise _doc_error(file, doc, exc.path, exc.message) from None
    return [_variant_spec(file, variant, limits) for variant in variants]


def load_file(
    path: StrPath,
    *,
    memory_limits: Mapping[str, int] | None = None,
    work_limits: Mapping[str, int] | None = None,
) -> list[CaseSpec]:
    """All cases of one YAML file, expanded and validated; the file's first
    CaseFileError if anything is wrong, its ``errors`` holding all of them
    (``collect_file`` returns them without raising)."""
    got = collect_file(path, memory_limits=memory_limits, work_limits=work_limits)
    if got.errors:
        first = got.errors[0]
        first.errors = tuple(got.errors)
        raise first
    return got.specs


def load_paths(
    paths: Sequence[StrPath],
    *,
    memory_limits: Mapping[str, int] | None = None,
    work_limits: Mapping[str, int] | None = None,
) -> list[CaseSpec]:
    """Cases of every file under ``paths``, in deterministic order; the first
    CaseFileError if anything is wrong (``collect_paths`` gives them all)."""
    out: list[CaseSpec] = []
    for file in iter_case_files(paths):
        out.extend(load_file(file, memory_limits=memory_limits, work_limits=work_limits))
    return out


def collect_paths(
    paths: Sequence[StrPath],
    *,
    memory_limits: Mapping[str, int] | None = None,
    work_limits: Mapping[str, int] | None = None,
) -> Collected:
    """Every valid case and every error of every file under ``paths`` (a path
    that does not exist is an error too), for a command that lists them all."""
    out = Collected()
    for file in iter_case_files(paths, missing=out.errors):
        out.add(collect_file(file, memory_limits=memory_limits, work_limits=work_limits))
    return out
