"""Hypothesis strategies over broken case files, and what the loader must say.

Each draw is a file (bytes) together with the ``CaseFileError`` the loader
must raise for it: wrong types, missing and unknown fields, impossible sizes
and values, HV not a multiple of H, overlapping strides, slot indices past
the pool or repeated, non-finite numbers, YAML syntax errors, duplicate keys
and case names, broken document structure, and sizes no machine can hold.
Only the tests draw these (``tests/test_malformed_cases.py``), so they live
here rather than in ``harness.fuzz``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from harness.core.dtypes import ACT_DTYPES, STATE_DTYPES
from harness.core.layouts import LAYOUTS

ANY = object()  # an expectation that accepts any value (but a line must exist)


@dataclass(frozen=True)
class MalformedFile:
    """A broken case file and what the loader must say about it.

    ``case``/``field``/``line`` are the expected attributes of the
    ``CaseFileError`` (``ANY``: any value; for ``line`` it must still be a
    number). ``min_line`` bounds the reported line from below where the YAML
    parser may notice a syntax error later than where it was made.
    """

    kind: str
    content: bytes
    case: Any = None
    field: Any = None
    line: Any = None
    min_line: int = 1
    huge: bool = False
    description: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def write(self, directory: str | Path, name: str = "broken.yaml") -> Path:
        """Write the file into ``directory`` and return its path."""
        path = Path(directory) / name
        path.write_bytes(self.content)
        return path


@dataclass
class _Doc:
    """A valid document as nested dicts, before rendering."""

    cases: list[dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)

    def tree(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.defaults:
            out["defaults"] = self.defaults
        out["cases"] = self.cases
        return out


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    """YAML text of a scalar or flat list, read back as exactly that value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def render(tree: dict[str, Any]) -> tuple[list[str], dict[tuple, int]]:
    """Block-style YAML lines of ``tree`` and the 1-based line of every key path."""
    lines: list[str] = []
    where: dict[tuple, int] = {}
    _emit_map(tree, 0, (), lines, where, lead=None)
    return lines, where


def _emit_map(m: dict, indent: int, path: tuple, lines: list[str], where: dict, lead) -> None:
    for i, (key, value) in enumerate(m.items()):
        prefix = lead if (i == 0 and lead is not None) else " " * indent
        here = (*path, key)
        where[here] = len(lines) + 1
        if isinstance(value, dict) and value:
            lines.append(f"{prefix}{key}:")
            _emit_map(value, indent + 2, here, lines, where, None)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{prefix}{key}:")
            for j, item in enumerate(value):
                where[(*here, j)] = len(lines) + 1
                _emit_map(item, indent + 4, (*here, j), lines, where, " " * (indent + 2) + "- ")
        else:
            lines.append(f"{prefix}{key}: {_scalar(value)}")


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


@st.composite
def _valid_case(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A small valid case as a plain dict, with some optional sections."""
    H = draw(st.integers(1, 3))
    case: dict[str, Any] = {"name": name, "B": draw(st.integers(1, 5)), "H": H}
    case["HV"] = H * draw(st.integers(1, 3))
    case["K"] = draw(st.integers(1, 24))
    case["V"] = draw(st.integers(1, 24))
    if draw(st.booleans()):
        case["pool"] = case["B"] + draw(st.integers(0, 3))
    if draw(st.booleans()):
        case["act_dtype"] = draw(st.sampled_from(ACT_DTYPES))
    case["layout"] = {
        "qkv_row_pad": draw(st.integers(0, 8)),
        "ab_packed": draw(st.booleans()),
        "state_layout": draw(st.sampled_from(LAYOUTS)),
        "state_slot_pad": draw(st.integers(0, 8)),
    }
    case["slots"] = {"padding": draw(st.sampled_from(("none", "alternate", "first")))}
    case["values"] = {"qkv_std": 1.0, "a_log_lo": -1.0, "a_log_hi": 1.0, "tiny_qk": False}
    case["steps"] = draw(st.integers(1, 3))
    case["seed"] = draw(st.integers(0, 1000))
    return case


@st.composite
def _valid_doc(draw: st.DrawFn) -> _Doc:
    n = draw(st.integers(1, 3))
    cases = [draw(_valid_case(f"case_{i}")) for i in range(n)]
    defaults = {}
    if draw(st.booleans()):
        defaults = {"tier": "cpu", "state_dtype": draw(st.sampled_from(STATE_DTYPES))}
    return _Doc(cases, defaults)


# Field paths of a case, by kind, with values of the wrong type for each kind.
_INT_FIELDS = ("B", "H", "HV", "K", "V", "steps", "seed", "layout.qkv_row_pad")
_ENUM_FIELDS = ("layout.state_layout", "slots.padding")
_BOOL_FIELDS = ("layout.ab_packed", "values.tiny_qk")
_NUM_FIELDS = ("values.qkv_std", "values.a_log_lo")
_MAP_FIELDS = ("layout", "slots", "values")
_WRONG: dict[str, tuple[Any, ...]] = {
    "int": ("two", 2.5, True, [1, 2], {"x": 1}, None, "0x10"),
    "enum": (3, "fp8", True, ["vk"], "VK", None),
    "bool": ("yes please", 1, 0.5, [True], None),
    "num": ("big", True, [1.0], {"a": 1}, None),
    "map": (3, "vk", [1, 2], True),
}
_UNKNOWN_KEYS = ("Bsize", "colour", "k", "num_heads", "state_dtypes", "padding")
_UNKNOWN_NESTED = (("layout", "row_pad"), ("slots", "pad"), ("values", "sigma"))


def _kind_of(path: str) -> str:
    for kind, fields in (
        ("int", _INT_FIELDS),
        ("enum", _ENUM_FIELDS),
        ("bool", _BOOL_FIELDS),
        ("num", _NUM_FIELDS),
        ("map", _MAP_FIELDS),
    ):
        if path in fields:
            return kind
    raise KeyError(path)


def _set(case: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = case
    for part in parents:
        node = node[part]
    node[last] = value


def _path(i: int, dotted: str) -> tuple:
    return ("cases", i, *dotted.split("."))


@dataclass
class _Fault:
    """One mutation of a valid document: how to apply it and what to expect."""

    kind: str
    field: Any
    description: str
    apply: Callable[[_Doc], None]
    # expected line: a key path of the rendered document, "case" (the case's
    # first line), None (no line) or ANY
    line_of: Any = "field"
    case: Any = "target"
    huge: bool = False


@st.composite
def _field_fault(draw: st.DrawFn, doc: _Doc, i: int) -> _Fault:
    """A wrong type, an unknown field, a missing field, or an impossible value."""
    case = doc.cases[i]
    choice = draw(st.sampled_from(("wrong_type", "unknown", "missing", "impossible")))
    if choice == "wrong_type":
        fields = (*_INT_FIELDS, *_ENUM_FIELDS, *_BOOL_FIELDS, *_NUM_FIELDS, *_MAP_FIELDS)
        dotted = draw(st.sampled_from(fields))
        value = draw(st.sampled_from(_WRONG[_kind_of(dotted)]))
        return _Fault(choice, dotted, f"{dotted}: {value!r}", lambda d: _set(case, dotted, value))
    if choice == "unknown":
        if draw(st.booleans()):
            key = draw(st.sampled_from(_UNKNOWN_KEYS))
            return _Fault(choice, key, f"unknown {key}", lambda d: case.__setitem__(key, 1))
        parent, key = draw(st.sampled_from(_UNKNOWN_NESTED))
        dotted = f"{parent}.{key}"
        return _Fault(choice, dotted, f"unknown {dotted}", lambda d: _set(case, dotted, 1))
    if choice == "missing":
        key = draw(st.sampled_from(("B", "H", "HV", "K", "V", "name")))
        target = ANY if key == "name" else "target"
        return _Fault(choice, key, f"no {key}", lambda d: case.pop(key), "case", target)
    return draw(_impossible(case))


_IMPOSSIBLE: tuple[tuple[str, Any], ...] = (
    ("B", 0),
    ("H", -1),
    ("K", 0),
    ("V", -7),
    ("steps", 0),
    ("pool", 0),
    ("seed", -1),
    ("seed", 2**64),
    ("layout.qkv_row_pad", -3),  # a row stride narrower than the row: rows overlap
    ("layout.state_slot_pad", -1),  # slots overlap
    ("values.qkv_std", -1.0),
    ("slots.padding", "sometimes"),
)


@st.composite
def _impossible(draw: st.DrawFn, case: dict) -> _Fault:
    """Values no case can have: schema-level bounds and the semantic rules."""
    rule = draw(st.sampled_from(("bound", "hv", "a_log", "pool", "indices", "nonfinite")))
    if rule == "bound":
        dotted, value = draw(st.sampled_from(_IMPOSSIBLE))
        return _Fault(
            "impossible", dotted, f"{dotted}: {value!r}", lambda d: _set(case, dotted, value)
        )
    if rule == "hv":
        H = draw(st.integers(2, 4))
        HV = H * draw(st.integers(1, 3)) + draw(st.integers(1, H - 1))

        def hv(d: _Doc) -> None:
            case["H"], case["HV"] = H, HV

        return _Fault("hv-not-multiple", "HV", f"H={H} HV={HV}", hv)
    if rule == "a_log":
        return _Fault(
            "impossible",
            "values.a_log_hi",
            "a_log_hi < a_log_lo",
            lambda d: _set(case, "values.a_log_hi", -2.0),
        )
    if rule == "pool":
        return draw(_small_pool(case))
    if rule == "indices":
        return draw(_bad_indices(case))
    dotted = draw(st.sampled_from(("values.qkv_std", "values.a_log_lo", "values.gate_mean")))
    value = draw(st.sampled_from((float("inf"), float("-inf"), float("nan"))))
    return _Fault("nonfinite", dotted, f"{dotted}: {value}", lambda d: _set(case, dotted, value))


@st.composite
def _small_pool(draw: st.DrawFn, case: dict) -> _Fault:
    """A pool that cannot hold the live rows (padding none)."""
    B = draw(st.integers(2, 6))

    def small(d: _Doc) -> None:
        case["B"], case["pool"] = B, B - 1
        case["slots"] = {"padding": "none"}

    return _Fault("impossible", "pool", f"B={B} pool={B - 1}", small)


@st.composite
def _bad_indices(draw: st.DrawFn, case: dict) -> _Fault:
    """Explicit indices of the wrong length, out of the pool, or naming a slot twice."""
    B = draw(st.integers(2, 5))
    how = draw(st.sampled_from(("length", "range", "duplicate")))
    indices = list(range(B))
    field_: str = "slots.indices"
    if how == "length":
        indices = indices[:-1] if draw(st.booleans()) else [*indices, B]
    elif how == "range":
        row = draw(st.integers(0, B - 1))
        indices[row] = B + draw(st.integers(0, 10**6))
        field_ = f"slots.indices[{row}]"
    else:
        row = draw(st.integers(1, B - 1))
        indices[row] = draw(st.integers(0, row - 1))
        field_ = f"slots.indices[{row}]"

    def apply(d: _Doc) -> None:
        case["B"], case["pool"] = B, B
        case["slots"] = {"indices": indices}

    return _Fault("bad-indices", field_, f"{how}: {indices}", apply, line_of="slots.indices")


# (changes, expected field): the estimate refuses them (field None), except a
# size past what any index dtype or tensor can address (2**63), refused first.
HUGE_CHANGES: tuple[tuple[tuple[tuple[str, Any], ...], str | None], ...] = (
    ((("B", 10**9),), None),
    ((("K", 10**6), ("V", 10**6)), None),
    ((("H", 1), ("HV", 10**9)), None),
    ((("B", 10**30),), "B"),
    ((("pool", 10**13), ("index_dtype", "int64")), None),
    ((("layout.state_slot_pad", 10**15),), None),  # a slot stride past any buffer
    ((("layout.qkv_row_pad", 10**15),), None),  # a row stride past any buffer
    ((("K", 4096), ("V", 4096), ("H", 1), ("HV", 64), ("B", 1024)), None),
)


@st.composite
def _huge(draw: st.DrawFn, doc: _Doc, i: int) -> _Fault:
    """Sizes too large for any machine's memory: refused from the estimate."""
    changes, expected = draw(st.sampled_from(HUGE_CHANGES))
    case = doc.cases[i]

    def apply(d: _Doc) -> None:
        if not any(k == "pool" for k, _ in changes):
            case.pop("pool", None)  # pool defaults to B: no 'pool too small' first
        for dotted, value in changes:
            _set(case, dotted, value)

    what = ", ".join(f"{k}={v}" for k, v in changes)
    line_of = "case" if expected is None else "field"
    return _Fault("huge", expected, what, apply, line_of=line_of, huge=True)


@st.composite
def _document_fault(draw: st.DrawFn, doc: _Doc, huge: bool) -> tuple[_Fault, int | None]:
    """A fault in a random case (or the defaults), and that case's index."""
    i = draw(st.integers(0, len(doc.cases) - 1))
    if huge:
        return draw(_huge(doc, i)), i
    if doc.defaults and draw(st.integers(0, 5)) == 0:
        key = draw(st.sampled_from(("colour", "name", "act_dtype")))
        value = "fp8" if key == "act_dtype" else "x"
        fault = _Fault(
            "defaults",
            f"defaults.{key}",
            f"defaults.{key}",
            lambda d: d.defaults.update({key: value}),
        )
        fault.case = None
        return fault, None
    if draw(st.integers(0, 6)) == 0:
        return draw(_huge(doc, i)), i
    return draw(_field_fault(doc, i)), i


def _expected_line(fault: _Fault, i: int | None, where: dict[tuple, int]) -> Any:
    if fault.line_of in (None, ANY):
        return fault.line_of
    if fault.line_of == "case":
        return where[("cases", i)]
    if i is None:
        return where[tuple(fault.field.split("."))]
    dotted = fault.field if fault.line_of == "field" else fault.line_of
    dotted = re.sub(r"\[\d+\]$", "", dotted)
    return where[_path(i, dotted)]


@st.composite
def _structured(draw: st.DrawFn, huge: bool = False) -> MalformedFile:
    """A valid document with one structured fault (``huge``: a size fault)."""
    doc = draw(_valid_doc())
    fault, i = draw(_document_fault(doc, huge))
    fault.apply(doc)
    lines, where = render(doc.tree())
    case = None if i is None else doc.cases[i].get("name")
    expect_case = case if fault.case == "target" else fault.case
    return MalformedFile(
        kind=fault.kind,
        content=_text(lines),
        case=expect_case,
        field=fault.field,
        line=_expected_line(fault, i, where),
        huge=fault.huge,
        description=fault.description,
    )


_SYNTAX = (
    "    B: [1, 2",  # unclosed flow sequence
    "\tB: 2",  # a tab cannot indent
    '    name: "unterminated',  # unclosed quote
    "    B: 2: 3",  # mapping values not allowed here
    "    K: *nowhere",  # undefined alias
    "   B: 2",  # misindented key
    "    - B: 2",  # a list item inside a mapping
    "    {B: 2",  # unclosed flow mapping
    "    @B: 2",  # reserved indicator
)


@st.composite
def _syntax_error(draw: st.DrawFn) -> MalformedFile:
    """A valid document with one line that breaks the YAML syntax."""
    doc = draw(_valid_doc())
    lines, _ = render(doc.tree())
    first_case = lines.index(next(ln for ln in lines if ln.startswith("  - ")))
    at = draw(st.integers(first_case + 1, len(lines)))  # 0-based insertion point
    bad = draw(st.sampled_from(_SYNTAX))
    lines.insert(at, bad)
    return MalformedFile(
        kind="yaml-syntax",
        content=_text(lines),
        case=ANY,  # a wrong nesting can still parse, and fail on the case it lands in
        field=ANY,
        line=ANY,
        # the parser may blame the key before the bad line (a valid but wrong nesting)
        min_line=max(1, at),
        description=f"line {at + 1}: {bad!r}",
    )


@st.composite
def _duplicate_key(draw: st.DrawFn) -> MalformedFile:
    """A key repeated inside one case (YAML would silently keep the last)."""
    doc = draw(_valid_doc())
    i = draw(st.integers(0, len(doc.cases) - 1))
    key = draw(st.sampled_from(("B", "K", "steps", "seed")))
    lines, where = render(doc.tree())
    line = where[("cases", i, key)]
    lines.insert(line, lines[line - 1].replace("- ", "  ", 1))  # same indent as the others
    return MalformedFile(
        kind="duplicate-key",
        content=_text(lines),
        case=doc.cases[i]["name"],
        field=key,
        line=line + 1,
        description=f"{key} twice",
    )


@st.composite
def _duplicate_name(draw: st.DrawFn) -> MalformedFile:
    doc = draw(_valid_doc())
    doc.cases.append(dict(doc.cases[0]))
    lines, where = render(doc.tree())
    i = len(doc.cases) - 1
    return MalformedFile(
        kind="duplicate-name",
        content=_text(lines),
        case=doc.cases[0]["name"],
        field="name",
        line=where[("cases", i, "name")],
        description="two cases with one name",
    )


_BOMB = (
    b'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + b"".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n".encode()
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + b"cases: *i\n"
)
_TOP_LEVEL: tuple[tuple[str, bytes, Any, Any], ...] = (
    # description, content, field, line
    ("empty file", b"", None, ANY),
    ("only a comment", b"# nothing here\n", None, ANY),
    ("a list", b"- name: a\n  B: 1\n", None, 1),
    ("a scalar", b"42\n", None, 1),
    ("no cases", b"defaults: {tier: cpu}\n", "cases", 1),
    ("empty cases", b"cases: []\n", "cases", 1),
    ("cases a mapping", b"cases: {name: a}\n", "cases", 1),
    ("cases of scalars", b"cases:\n  - 3\n", "cases[0]", 2),
    ("unknown top-level key", b"case:\n  - name: a\n", "case", 1),
    ("not UTF-8", b"cases:\n  - name: \xff\xfe\n", None, None),
    ("a NUL byte", b"# \x00\ncases: []\n", None, 1),
    ("a tag on a map", b"cases: !!set {a, b}\n", "cases", 1),
    ("nested too deep", b"cases: " + b"[" * 40 + b"]" * 40 + b"\n", None, 1),
    ("an alias bomb", _BOMB, ANY, ANY),
)


@st.composite
def _top_level(draw: st.DrawFn) -> MalformedFile:
    description, content, field_, line = draw(st.sampled_from(_TOP_LEVEL))
    return MalformedFile(
        kind="document", content=content, field=field_, line=line, description=description
    )


def malformed_case_files() -> st.SearchStrategy[MalformedFile]:
    """Broken case files and the ``CaseFileError`` each must produce.

    Wrong types, missing and unknown fields, impossible sizes and values, HV
    not a multiple of H, row and slot strides that overlap, slot indices that
    run past the pool or name a slot twice, non-finite numbers, YAML syntax
    errors, duplicate keys and case names, broken document structure, and
    sizes too large for any machine (``huge``). Use ``MalformedFile.write``
    to put one in a directory, then ``harness.cases.load_file``.
    """
    return _weighted_malformed()


# Most of the space is in the structured faults: half of the draws.
_KINDS = ((_structured, 5), (_syntax_error, 2), (_duplicate_key, 1), (_duplicate_name, 1))


@st.composite
def _weighted_malformed(draw: st.DrawFn) -> MalformedFile:
    """One kind of fault by weight (``one_of`` would weigh the kinds alike)."""
    pick = draw(st.integers(0, sum(w for _, w in _KINDS)))
    for make, weight in _KINDS:
        if pick < weight:
            return draw(make())
        pick -= weight
    return draw(_top_level())


def huge_case_files() -> st.SearchStrategy[MalformedFile]:
    """Valid files but for sizes too large for any machine (a subset of
    :func:`malformed_case_files`), for tests that loading them allocates nothing."""
    return _structured(huge=True)
